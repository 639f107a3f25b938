"""The interface every basis family implements."""
from __future__ import annotations

import abc
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


class Basis(nn.Module, abc.ABC):
    """A family of ``num_functions`` 1-D functions evaluated on each of ``in_features`` inputs.

    Subclasses keep grid state (knots, centres, normalisation) in buffers so it moves with
    ``.to(device)`` and is saved in the state dict, and they must be constructible as
    ``cls(in_features, **config())`` so a saved model can be rebuilt from its JSON config.

    Args:
        in_features: Number of inputs; each may have its own grid.
    """

    def __init__(self, in_features: int):
        super().__init__()
        if not isinstance(in_features, int) or isinstance(in_features, bool) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        self.in_features = in_features

    @property
    @abc.abstractmethod
    def num_functions(self) -> int:
        """Number of basis functions per input (the ``n`` of ``forward``'s output)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate every basis function on every input.

        Args:
            x: (batch, in_features).

        Returns:
            (batch, in_features, num_functions); finite for every finite input.
        """

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments (everything but ``in_features``)."""

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Contract the basis values with per-edge coefficients: ``sum_{p,i} w[q,p,i] B_i(x_p)``.

        The default evaluates :meth:`forward` once and does one matmul; bases with a faster or
        leaner fused form override it.

        Args:
            x: (batch, in_features).
            weight: (out_features, in_features, num_functions).

        Returns:
            (batch, out_features).
        """
        feats = self(x)  # (batch, in, n)
        # (batch, in*n) @ (in*n, out) -> (batch, out)
        return feats.reshape(feats.shape[0], -1) @ weight.reshape(weight.shape[0], -1).t()

    def extra_repr(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"in_features={self.in_features}, {cfg}"


@runtime_checkable
class SupportsGridUpdate(Protocol):
    """A basis that can move its grid to follow a sample of its inputs."""

    def update_grid(self, x: torch.Tensor, **kwargs: Any) -> None: ...


@runtime_checkable
class SupportsRefine(Protocol):
    """A basis that can produce a finer copy of itself (more intervals or a higher degree)."""

    def refine(self, size: int) -> "Basis": ...
