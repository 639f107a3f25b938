"""pykan's pruning rule: drop weak hidden nodes, then weak edges, by attribution score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk.plugins import hookimpl
from kantk.pruners import PruneDecision, check_number, kept_indices, live_masks, require_scores
from kantk.types import PrunerSpec

if TYPE_CHECKING:
    from kantk.attribution import Attribution
    from kantk.model import KAN


class ThresholdPruner:
    """pykan's ``prune(node_th, edge_th)`` on :func:`kantk.attribution` scores.

    A hidden node goes when both its outgoing score (``scores.node_scores``) and its incoming
    score (``scores.in_scores``) are below ``node_th``; an edge goes when its score is below
    ``edge_th``, except that a node of several sub-nodes that stays (a multiplication node) and
    keeps an edge into one of its factors keeps the best-scoring live edge into each of the others
    (a factor's edges score by their spread, and a nearly constant factor, which scales the
    product, scored near 0: the node was then 0); with input pruning, a feature goes when its
    score is below ``input_th``.
    Scores are computed once, on the unpruned model (pykan recomputes them after removing the
    nodes; that moves the other scores only by the removed nodes' below-threshold share).

    Args:
        node_th: Node threshold (pykan's ``node_th``, 1e-2).
        edge_th: Edge threshold (pykan's ``edge_th``, 3e-2).
        input_th: Input feature threshold for ``prune_inputs=True`` (default: ``node_th``, as
            pykan's ``prune_input``).
        threshold: One threshold for nodes, edges and inputs at once
            (``kantk.prune(model, x, threshold=1e-2)``); cannot be combined with the others.
    """

    needs_data = True

    def __init__(
        self,
        node_th: float = 1e-2,
        edge_th: float = 3e-2,
        input_th: float | None = None,
        threshold: float | None = None,
    ):
        if threshold is not None:
            if (node_th, edge_th, input_th) != (1e-2, 3e-2, None):
                raise ValueError(
                    "threshold pruner: give threshold alone, or node_th/edge_th/input_th, not both"
                )
            node_th = edge_th = input_th = threshold
        self.node_th = check_number("threshold pruner", "node_th", node_th)
        self.edge_th = check_number("threshold pruner", "edge_th", edge_th)
        self.input_th = (
            self.node_th if input_th is None else check_number("threshold pruner", "input_th", input_th)
        )

    @torch.no_grad()
    def __call__(self, model: KAN, x: torch.Tensor | None, scores: Attribution | None) -> PruneDecision:
        """Returns the kept edges (out, in) per layer, hidden nodes and input features."""
        scores = require_scores("threshold", x, scores)
        hidden = tuple(
            kept_indices(torch.maximum(scores.node_scores[l], scores.in_scores[l]) >= self.node_th)
            for l in range(1, len(model.widths) - 1)
        )
        live = live_masks(model)
        edges = [alive & (score >= self.edge_th) for alive, score in zip(live, scores.edge_scores)]
        for l, layer in enumerate(model.layers):
            layout = layer.nodes
            if layout is None:
                continue
            kept = hidden[l].tolist() if l < len(hidden) else range(layout.n_nodes)  # outputs stay
            for j in kept:
                subs = layout.subnodes(j)
                if len(subs) < 2 or not bool(edges[l][list(subs)].any()):
                    continue  # a sum node; or every factor lost its edges, as a sum node's can
                for sub in subs:
                    # a factor scores by its spread: a nearly constant one scores near 0, yet it
                    # scales the product; without any edge in, the node would be 0 while its
                    # other factors keep theirs
                    if bool(live[l][sub].any()) and not bool(edges[l][sub].any()):
                        best = torch.where(live[l][sub], scores.edge_scores[l][sub], -torch.inf).argmax()
                        edges[l][sub, best] = True
        return PruneDecision(tuple(edges), hidden, kept_indices(scores.feature_scores >= self.input_th))

    def __repr__(self) -> str:
        return (
            f"ThresholdPruner(node_th={self.node_th:g}, edge_th={self.edge_th:g}, input_th={self.input_th:g})"
        )


@hookimpl
def kantk_pruners():
    yield PrunerSpec(
        "threshold",
        ThresholdPruner,
        "pykan's rule: drop nodes below node_th, then edges below edge_th (needs data)",
    )
