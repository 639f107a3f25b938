"""Pruner plugins and the protocol they follow. Each module ends with its ``kantk_pruners`` hook.

A pruner is built by its record's ``factory(**options)`` and called as
``pruner(model, x, scores)``:

- ``model``: the :class:`kantk.KAN` to prune (a pruner must not change it);
- ``x``: (batch, widths[0]) samples, or ``None`` when the user gave no data;
- ``scores``: the :class:`kantk.attribution.Attribution` of ``model`` on ``x`` (``None`` when
  ``x`` is ``None``), computed once by :func:`kantk.prune` so that pruners need not recompute it.

It returns a :class:`PruneDecision`, or simply a sequence of per-layer edge masks (out, in) (then
no node is removed on purpose: only nodes that lose every outgoing edge go). A pruner that can
decide without data sets the class attribute ``needs_data = False``; otherwise
:func:`kantk.prune` refuses ``x=None`` with an error before calling it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from kantk._validation import check_number as _check_number

if TYPE_CHECKING:  # the attribution module is a higher layer; pruners only receive its result
    from kantk.attribution import Attribution
    from kantk.model import KAN


@dataclass(frozen=True)
class PruneDecision:
    """What a pruner wants to keep.

    Attributes:
        edge_masks: One bool tensor per layer, (out_l, in_l), True for an edge to keep. Edges
            the model has already masked stay removed whatever this says.
        hidden_nodes: One int64 tensor per hidden node layer (``len(widths) - 2`` of them) with
            the indices of the nodes to keep, or ``None`` to keep every hidden node that still
            has a live outgoing edge.
        input_nodes: Indices of the input features to keep, or ``None`` (no opinion). Used
            only when the user asks for input pruning (``kantk.prune(..., prune_inputs=True)``);
            without an opinion, inputs that lose every outgoing edge go.
    """

    edge_masks: tuple[torch.Tensor, ...]
    hidden_nodes: tuple[torch.Tensor, ...] | None = None
    input_nodes: torch.Tensor | None = None


@runtime_checkable
class Pruner(Protocol):
    """The call every pruner implements (see the module docstring)."""

    def __call__(
        self, model: KAN, x: torch.Tensor | None, scores: Attribution | None
    ) -> PruneDecision | Sequence[torch.Tensor]: ...


def kept_indices(keep: torch.Tensor) -> torch.Tensor:
    """Sorted int64 indices of the True entries of a 1-D bool tensor."""
    return torch.nonzero(keep, as_tuple=False).flatten().to(torch.int64)


def live_masks(model: KAN) -> list[torch.Tensor]:
    """The model's live edges as bool tensors, (out, in) per layer.

    An edge is live when its numeric branch is unmasked or it carries a symbolic function
    (:meth:`kantk.KANLayer.live_edges`).
    """
    return [layer.live_edges().detach() for layer in model.layers]


def connected_masks(model: KAN) -> list[torch.Tensor]:
    """The live edges on a path from an input to an output, (out, in) bool per layer: a live edge
    into a hidden node (or a product node's sub-node) none of whose paths onwards is live adds
    nothing to any output (a product node whose output edge was masked), and a live edge out of a
    node that no input reaches carries a constant (a node without live incoming edges, or a
    product node one of whose factors has none, which is 0 whatever its other factors); diagrams
    leave both out."""
    live = _fed_masks(model)
    out: list[torch.Tensor] = [torch.zeros(0)] * len(live)
    reaches = torch.ones(model.widths[-1], dtype=torch.bool, device=live[-1].device)  # the outputs
    for l in reversed(range(len(live))):
        nodes = model.layers[l].nodes
        rows = (
            reaches
            if nodes is None
            else reaches[torch.as_tensor(nodes.node_of_subnode(), device=reaches.device)]
        )
        out[l] = live[l] & rows.unsqueeze(1)
        reaches = out[l].any(dim=0)
    return out


def _fed_masks(model: KAN) -> list[torch.Tensor]:
    """The live edges whose source depends on the inputs (see :func:`fed_nodes`)."""
    live = live_masks(model)
    fed = fed_nodes(model, live)
    return [edges & source.unsqueeze(0) for edges, source in zip(live, fed)]


def fed_nodes(model: KAN, live: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per node layer, (widths[l],) bool: the nodes whose value depends on the inputs when only the
    edges ``live`` ((out, in) bool per layer) are kept. Every input does; a node does when a live
    edge from such a source feeds it and, for a node operation, its value still varies with the
    sub-nodes so fed while those fed by nothing are 0, their value (a "mult" node one of whose
    factors has no such edge is 0). A node that no input reaches holds a constant."""
    source = torch.ones(model.widths[0], dtype=torch.bool, device=live[0].device)  # the inputs
    fed = [source]
    for l, layer in enumerate(model.layers):
        sub = (live[l] & source.unsqueeze(0)).any(dim=1)  # (out,) sub-nodes (nodes without operations)
        if layer.nodes is None:
            source = sub
            fed.append(source)
            continue
        nodes = layer.nodes
        empty = ~live[l].any(dim=1)  # sub-nodes with no live edge at all: exactly 0
        # each node's value on random values of its sub-nodes, those fed by nothing at 0: a node
        # whose value does not vary is constant ("mult" with a factor of 0)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            trial = torch.randn(16, sub.numel(), generator=gen, dtype=torch.float64)
            trial[:, empty.cpu()] = 0.0
            values = nodes(trial)  # (16, nodes)
        # over the finite trials (an operation such as sqrt of a product is NaN on some); a node
        # with none is kept: in doubt, drawn
        finite = torch.isfinite(values)
        high = torch.where(finite, values, -torch.inf).amax(dim=0)
        low = torch.where(finite, values, torch.inf).amin(dim=0)
        size = torch.where(finite, values.abs(), 0.0).amax(dim=0)
        varies = ~finite.any(dim=0) | ((high - low) > 1e-12 * (1.0 + size))
        any_fed = nodes.reduce_sum(sub.to(torch.float64)) > 0  # (nodes,)
        source = (any_fed & varies.to(any_fed.device)).to(live[l].device)
        fed.append(source)
    return fed


def symbolic_masks(model: KAN) -> list[torch.Tensor]:
    """Per layer, (out, in) bool: the edges fixed to a symbolic function (all False without any)."""
    return [
        (layer.symbolic_mask != 0).detach()
        if layer.has_symbolic
        else torch.zeros_like(layer.mask, dtype=torch.bool)
        for layer in model.layers
    ]


def require_scores(who: str, x: Any, scores: Attribution | None) -> Attribution:
    """The attribution, or a clear error for a data-driven pruner called without data."""
    if x is None or scores is None:
        raise ValueError(
            f"the {who!r} pruner scores edges on data: pass samples, kantk.prune(model, x, pruner={who!r}); "
            "the 'magnitude' pruner works without data"
        )
    return scores


def check_number(who: str, name: str, value: Any, minimum: float = 0.0) -> float:
    """``value`` as a float when it is a number >= ``minimum`` (not a bool, not NaN), for a pruner's
    options.

    Raises:
        ValueError: ``"{who} option {name} must be a number >= {minimum}, got {value!r}"``.
    """
    return _check_number(f"{who} option {name}", value, minimum)


__all__ = [
    "PruneDecision",
    "Pruner",
    "check_number",
    "connected_masks",
    "fed_nodes",
    "kept_indices",
    "live_masks",
    "require_scores",
    "symbolic_masks",
]
