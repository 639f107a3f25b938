"""Drop edges whose weights are small: needs no data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk.plugins import hookimpl
from kantk.pruners import PruneDecision, check_number, live_masks, symbolic_masks
from kantk.types import PrunerSpec

if TYPE_CHECKING:
    from kantk.attribution import Attribution
    from kantk.model import KAN


class MagnitudePruner:
    """Keep edge ``p -> q`` when its weight magnitude reaches ``threshold``.

    The magnitude is ``sqrt(mean_i (w_s c_i)^2 + w_b^2)``: the root-mean-square of the edge's
    effective basis coefficients, together with its base weight when the layer has a base branch
    (``base_activation`` other than ``"zero"``). It looks at the weights only, so it needs no
    data (and ignores ``x`` when given); it suits bases whose functions are of order one, as
    B-splines (a partition of unity), Chebyshev polynomials and Gaussian bumps are. Edges fixed
    to a symbolic function have no coefficients to judge and are kept.

    Args:
        threshold: Smallest magnitude kept (>= 0).
    """

    needs_data = False

    def __init__(self, threshold: float = 1e-2):
        self.threshold = check_number("magnitude pruner", "threshold", threshold)

    @torch.no_grad()
    def __call__(
        self, model: KAN, x: torch.Tensor | None = None, scores: Attribution | None = None
    ) -> PruneDecision:
        """Returns the kept edges, (out, in) per layer."""
        keep = [
            live & ((m >= self.threshold) | symbolic)
            for live, m, symbolic in zip(live_masks(model), edge_magnitudes(model), symbolic_masks(model))
        ]
        return PruneDecision(tuple(keep))

    def __repr__(self) -> str:
        return f"MagnitudePruner(threshold={self.threshold:g})"


@torch.no_grad()
def edge_magnitudes(model: KAN) -> list[torch.Tensor]:
    """Per layer, (out, in) weight magnitude of every numeric edge (0 for masked and symbolic ones)."""
    out = []
    for layer in model.layers:
        sq = layer.spline_weight().pow(2).mean(dim=-1)  # (out, in)
        if layer.base_activation != "zero":
            sq = sq + layer.base_weight().pow(2)
        out.append(sq.sqrt())
    return out


@hookimpl
def kantk_pruners():
    yield PrunerSpec("magnitude", MagnitudePruner, "drop edges with small coefficients (no data needed)")
