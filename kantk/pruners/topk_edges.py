"""Keep the k most important incoming edges of every node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk._validation import check_int
from kantk.plugins import hookimpl
from kantk.pruners import PruneDecision, live_masks, require_scores
from kantk.types import PrunerSpec

if TYPE_CHECKING:
    from kantk.attribution import Attribution
    from kantk.model import KAN


class TopKEdgesPruner:
    """Per node of every layer, keep its ``k`` incoming edges with the highest attribution score.

    Edges already masked never come back; ties go to the lower input index. Hidden nodes left
    without an outgoing edge are then removed by :func:`kantk.prune`.

    Args:
        k: Incoming edges to keep per node (>= 1). ``k >= in_features`` keeps every live edge.
    """

    needs_data = True

    def __init__(self, k: int = 2):
        self.k = check_int("topk_edges option k", k, 1)

    @torch.no_grad()
    def __call__(self, model: KAN, x: torch.Tensor | None, scores: Attribution | None) -> PruneDecision:
        """Returns the kept edges, (out, in) per layer."""
        scores = require_scores("topk_edges", x, scores)
        masks = []
        for live, score in zip(live_masks(model), scores.edge_scores):
            k = min(self.k, score.shape[1])
            # masked edges rank last; a stable sort keeps ties in input order
            ranked = torch.where(live, score, torch.full_like(score, -1.0))
            order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :k]  # (out, k)
            keep = torch.zeros_like(live).scatter_(1, order, True)
            masks.append(keep & live)
        return PruneDecision(tuple(masks))

    def __repr__(self) -> str:
        return f"TopKEdgesPruner(k={self.k})"


@hookimpl
def kantk_pruners():
    yield PrunerSpec(
        "topk_edges", TopKEdgesPruner, "keep the k highest-scoring incoming edges per node (needs data)"
    )
