"""pykan's pruning rule: drop weak hidden nodes, then weak edges, by attribution score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk.nodes import ProductNode
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
    ``edge_th``, except that a multiplication node that stays and keeps an edge (from a kept
    node) into one of its factors keeps the best-scoring live edge into each of the others, and
    that edge's source (a factor's edges score by their spread, and a nearly constant factor,
    which scales the product, scored near 0: the node was then 0); with input pruning, a feature goes when its
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
        # kept nodes per node layer: the inputs (used with prune_inputs), the hidden layers
        keep = [scores.feature_scores >= self.input_th] + [
            torch.maximum(scores.node_scores[l], scores.in_scores[l]) >= self.node_th
            for l in range(1, len(model.widths) - 1)
        ]
        live = live_masks(model)
        edges = [alive & (score >= self.edge_th) for alive, score in zip(live, scores.edge_scores)]
        # nodes kept only to feed a factor (below): each needs an edge in from a kept source too
        forced: list[set[int]] = [set() for _ in model.widths]  # per node layer, outputs too
        for l in reversed(range(len(model.layers))):  # a source kept here may be a product node below
            layout = model.layers[l].nodes
            sources = keep[l] if l > 0 else torch.ones_like(keep[0])  # inputs stay unless pruned
            kept = (
                keep[l + 1].nonzero().flatten().tolist() if l + 1 < len(keep) else range(model.widths[l + 1])
            )
            for j in kept:
                subs = [j] if layout is None else list(layout.subnodes(j))
                product = layout is not None and isinstance(layout.operation(layout.ops[j]), ProductNode)
                if j not in forced[l + 1]:
                    if not product or not bool((edges[l][subs] & sources.unsqueeze(0)).any()):
                        continue  # a sum node; or every factor lost its edges, as a sum node's can
                for sub in subs:
                    # a factor scores by its spread: a nearly constant one scores near 0, yet it
                    # scales the product; without any edge in, the node would be 0 while its
                    # other factors keep theirs. Its best edge stays, and so does that edge's
                    # source, and down from it a path of best edges to the inputs (a node kept
                    # without any edge in would be 0, not the value the factor had)
                    if bool(live[l][sub].any()) and not bool((edges[l][sub] & sources).any()):
                        best = int(torch.where(live[l][sub], scores.edge_scores[l][sub], -torch.inf).argmax())
                        edges[l][sub, best] = True
                        if l > 0 and not bool(keep[l][best]):
                            forced[l].add(best)
                        keep[l][best] = True
                    if l == 0:  # a factor's inputs stay with input pruning too
                        keep[0] |= edges[0][sub]
        hidden = tuple(kept_indices(k) for k in keep[1:])
        return PruneDecision(tuple(edges), hidden, kept_indices(keep[0]))

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
