"""The ``fourier`` basis and the hook that hands it to kantk."""

from __future__ import annotations

import math
from typing import Any

import torch

import kantk
from kantk.bases import Basis


class FourierBasis(Basis):
    """Sines and cosines ``sin(k pi x), cos(k pi x)`` for ``k = 1..K`` on every input.

    The functions have period 2, so they suit inputs scaled to about ``[-1, 1]``. Inputs are
    folded into ``[-1, 1)`` before the product with the frequencies, so values and gradients
    are finite for every finite input, however large.

    Args:
        in_features: Number of inputs.
        num_frequencies: K, the number of frequencies (>= 1); gives 2K functions, all sines first.

    Buffers:
        harmonics: (K,) the integers ``1..K`` as floats, so ``module.to(dtype)`` and
            ``module.to(device)`` move them. Integers are exact in every float dtype; ``pi`` is
            applied in the input's dtype, so float64 keeps full precision.
    """

    def __init__(self, in_features: int, num_frequencies: int = 4):
        super().__init__(in_features)
        if not isinstance(num_frequencies, int) or isinstance(num_frequencies, bool) or num_frequencies < 1:
            raise ValueError(f"fourier num_frequencies must be an int >= 1, got {num_frequencies!r}")
        self.num_frequencies = num_frequencies
        harmonics = torch.arange(1, num_frequencies + 1, dtype=torch.get_default_dtype())  # (K,)
        self.register_buffer("harmonics", harmonics)

    @property
    def num_functions(self) -> int:
        return 2 * self.num_frequencies

    def config(self) -> dict[str, Any]:
        return {"num_frequencies": self.num_frequencies}

    def range_ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """One period, ``[-1, 1]``, for every input (``kantk.bases.SupportsInputRange``)."""
        ones = torch.ones(self.in_features, dtype=dtype, device=self.harmonics.device)
        return -ones, ones

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (batch, in). Returns: (batch, in, 2K), sines then cosines."""
        # Every function has period 2, so fold x into [-1, 1) first: k * pi * x would overflow to
        # inf (and sin(inf) is NaN) for huge float32 inputs. remainder's gradient is 1, so the
        # derivative is unchanged.
        x = torch.remainder(x + 1.0, 2.0) - 1.0  # (batch, in)
        freqs = self.harmonics.to(x.dtype) * math.pi  # (K,)
        z = x.unsqueeze(-1) * freqs  # (batch, in, 1) * (K,) -> (batch, in, K)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


@kantk.hookimpl
def kantk_bases():
    yield kantk.BasisSpec("fourier", FourierBasis, "sines and cosines sin(k pi x), cos(k pi x), k = 1..K")
