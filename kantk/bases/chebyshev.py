"""Chebyshev polynomial basis on tanh-squashed inputs."""

from __future__ import annotations

from typing import Any

import torch

from kantk._validation import check_int
from kantk.bases import gpu
from kantk.bases.base import (
    Basis,
    EdgeWeights,
    check_refine_coef,
    check_refine_size,
    data_range,
    edge_sum,
    edge_values,
    refit_with_buffers,
)
from kantk.plugins import hookimpl
from kantk.types import BasisSpec


def chebyshev_polynomials(z: torch.Tensor, degree: int) -> torch.Tensor:
    """T_0..T_degree of ``z`` by the three-term recurrence ``T_{n+1} = 2 z T_n - T_{n-1}``.

    Args:
        z: (batch, in), in [-1, 1].

    Returns:
        (batch, in, degree + 1).
    """
    polys = [torch.ones_like(z)]
    if degree >= 1:
        polys.append(z)
    for _ in range(2, degree + 1):
        polys.append(2 * z * polys[-1] - polys[-2])
    return torch.stack(polys, dim=-1)


class ChebyshevBasis(Basis):
    """Chebyshev polynomials T_0..T_d of ``z = tanh((x - center) / halfwidth)``.

    The polynomials are built by the three-term recurrence ``T_{n+1} = 2 z T_n - T_{n-1}``, not
    by ``cos(n acos z)``: ``acos`` has an infinite derivative at ``|z| = 1``, which is where tanh
    sends every input with ``|x| >= 10`` in float32 (ChebyKAN's NaN gradients). The recurrence is a
    polynomial, so values and gradients are finite for every finite input.

    Args:
        in_features: Number of inputs.
        degree: Highest polynomial degree d (>= 0); gives d + 1 functions.

    Buffers:
        center, halfwidth: (in_features,) input normalisation (0 and 1 until a grid update).
    """

    center: torch.Tensor  # buffers, declared for type checkers (nn.Module.__getattr__ is untyped)
    halfwidth: torch.Tensor

    def __init__(self, in_features: int, degree: int = 5):
        super().__init__(in_features)
        self.degree = check_int("chebyshev degree", degree, 0)
        self.register_buffer("center", torch.zeros(in_features))
        self.register_buffer("halfwidth", torch.ones(in_features))

    @property
    def num_functions(self) -> int:
        return self.degree + 1

    def range_ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``center -+ halfwidth`` per input, two (in,) tensors of ``dtype`` (the inputs that
        ``tanh`` maps nearly linearly: :class:`~kantk.bases.SupportsInputRange`)."""
        return (self.center - self.halfwidth).to(dtype), (self.center + self.halfwidth).to(dtype)

    def config(self) -> dict[str, Any]:
        return {"degree": self.degree}

    def squash(self, x: torch.Tensor) -> torch.Tensor:
        """``tanh((x - center) / halfwidth)``, (batch, in): what the polynomials are evaluated at."""
        return torch.tanh((x - self.center.to(x.dtype)) / self.halfwidth.to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return chebyshev_polynomials(self.squash(x), self.degree)  # (batch, in, d + 1)

    def fused_edges(self, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
        """The layer's edge sum: fused Triton kernels on CUDA (float32, autocast too), else
        :func:`~kantk.bases.base.edge_sum`."""
        if gpu.available(x, weights.coef):
            return gpu.chebyshev(self, x, weights)
        return edge_sum(self, x, weights)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, coef: torch.Tensor, grid_eps: float = 0.02) -> torch.Tensor:
        """Centre the normalisation on the samples' range; returns refitted coef (out, in, n).

        ``grid_eps`` is accepted for interface symmetry; the normalisation uses min and max.
        """
        target = edge_values(self(x), coef)  # (batch, out, in)
        lo, hi = data_range(x.to(torch.float64))
        return refit_with_buffers(self, x, target, center=(lo + hi) / 2, halfwidth=(hi - lo) / 2)

    @torch.no_grad()
    def refine(self, size: int, coef: torch.Tensor) -> tuple[ChebyshevBasis, torch.Tensor]:
        """Degree elevation: a copy of degree ``size`` whose new coefficients are zero (exact).

        Args:
            size: The new ``degree``; an int >= the current one.
            coef: (out, in, degree + 1) coefficients on this basis.

        Returns:
            The basis of degree ``size`` (same normalisation, dtype and device) and its
            coefficients (out, in, size + 1): the old ones followed by zeros.

        Raises:
            ValueError: ``size`` is not an int >= ``degree``, or ``coef`` has the wrong shape.
        """
        size = check_refine_size(size, self.degree, "degree", "chebyshev")
        check_refine_coef(self, coef)
        finer = ChebyshevBasis(self.in_features, degree=size)
        finer.center = self.center.clone()  # same dtype and device as this basis
        finer.halfwidth = self.halfwidth.clone()
        return finer, torch.nn.functional.pad(coef, (0, size - self.degree))


@hookimpl
def kantk_bases():
    yield BasisSpec("chebyshev", ChebyshevBasis, "Chebyshev polynomials of tanh-squashed inputs (ChebyKAN)")
