"""``kantk.prune``: ask a pruner plugin what to keep, then build a new, physically smaller KAN.

Pruning goes in three steps, each available on its own:

1. :func:`plan_pruning` computes the attribution (when data is given), calls the pruner and
   turns its answer into a consistent :class:`PrunePlan`: the kept nodes of every node layer and
   the kept edges between them;
2. :func:`apply_masks` is the reference: a same-size copy of the model with every removed edge
   (including every edge of a removed node) masked;
3. :func:`shrink` builds the smaller model: the kept rows and columns of every layer's tensors and
   the kept inputs' rows of every per-input basis buffer. On any input it computes exactly what
   :func:`apply_masks`'s copy computes (up to float rounding).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kantk._warnings import warn_at_user
from kantk.attribution import Attribution, attribution, check_finite_through, check_samples
from kantk.model import KAN, default_dtype
from kantk.nodes import arity_spelling, widths_spelling
from kantk.plugins import BUILTIN_PLUGINS, PluginOutputError, plugin_call
from kantk.pruners import PruneDecision, fed_nodes, kept_indices, live_masks
from kantk.registry import Registry, check_options, resolve_registry

#: Per-edge (out, in) masks of a layer; a removed edge is zeroed in each one present.
_MASKS = ("mask", "symbolic_mask")


@dataclass(frozen=True)
class PrunePlan:
    """A consistent pruning of one model: what :func:`shrink` keeps.

    Attributes:
        kept_nodes: One sorted int64 tensor per node layer, inputs first (``len(widths)``):
            the indices that survive. Every output is kept.
        edge_masks: One bool tensor per layer in the *original* indexing, (out_l, in_l): True
            for a kept edge. Edges of removed nodes are False. ``out_l`` counts sub-nodes where
            layer ``l`` feeds product nodes; a kept product node keeps all its sub-nodes.
        scores: The attribution the pruner saw (``None`` without data).
    """

    kept_nodes: tuple[torch.Tensor, ...]
    edge_masks: tuple[torch.Tensor, ...]
    scores: Attribution | None = None

    @property
    def widths(self) -> list[int]:
        """Widths of the pruned model."""
        return [int(k.numel()) for k in self.kept_nodes]


def prune(
    model: KAN,
    x: torch.Tensor | None = None,
    pruner: str = "threshold",
    registry: Registry | None = None,
    prune_inputs: bool = False,
    **options: Any,
) -> KAN:
    """A new, smaller KAN with the nodes and edges the pruner removes gone (pykan's ``prune``).

    Example::

        model = kantk.KAN([2, 5, 1], seed=0)
        kantk.fit(model, data, steps=50, regularisers={"l1_entropy": {"weight": 1e-2}})
        small = kantk.prune(model, data["train_input"])                  # e.g. widths [2, 1, 1]
        small = kantk.prune(model, x, pruner="topk_edges", k=1)
        small = kantk.prune(model, pruner="magnitude", threshold=1e-2)   # no data needed

    Removed hidden nodes disappear from the tensors; kept edges keep their functions exactly, so
    on any input the result equals ``apply_masks(model, plan)``: the original with the removed
    edges masked. Removing a node also removes the constant its outgoing edges added downstream,
    which is why pruning is followed by a short refit. The original model is not changed.

    Args:
        model: The KAN to prune.
        x: (batch, widths[0]) samples to score edges on (batch >= 2), or ``None`` for a pruner
            that needs no data (``"magnitude"``).
        pruner: Registry name, from ``kantk.list_pruners()``.
        registry: Where to look the pruner (and the model's bases and node operations) up; ``None``: the
            default (a model built with ``registry=`` needs the same one here).
        prune_inputs: Also remove input features (pykan's ``prune_input``); the pruned model then
            takes fewer inputs, listed in ``plan_pruning(...).kept_nodes[0]``, and records the
            data columns they are in ``input_columns`` (pykan's ``input_id``).
        **options: The pruner's options, e.g. ``node_th=1e-2, edge_th=3e-2`` for ``"threshold"``,
            ``k=2`` for ``"topk_edges"``, ``threshold=1e-2`` for ``"magnitude"``.

    Returns:
        A new :class:`kantk.KAN` on the same device and in the same dtype.

    Raises:
        UnknownComponentError: No plugin provides ``pruner`` (the message lists the known ones).
        ValueError: An option the pruner does not accept (the message lists the accepted ones),
            a bad option value, missing data for a data-driven pruner, or badly shaped samples.
    """
    plan = plan_pruning(model, x, pruner=pruner, registry=registry, prune_inputs=prune_inputs, **options)
    return shrink(model, plan, registry=registry)


@torch.no_grad()
def plan_pruning(
    model: KAN,
    x: torch.Tensor | None = None,
    pruner: str = "threshold",
    registry: Registry | None = None,
    prune_inputs: bool = False,
    **options: Any,
) -> PrunePlan:
    """What :func:`prune` would keep, without building the new model (same arguments)."""
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.prune expects a kantk.KAN, got {type(model).__name__}")
    if not isinstance(prune_inputs, bool):
        raise TypeError(f"prune_inputs must be True or False, got {prune_inputs!r}")
    fn = build_pruner(pruner, options, registry)
    scores = None
    if x is None:
        if getattr(fn, "needs_data", True):
            raise ValueError(
                f"pruner {pruner!r} scores edges on data: pass samples, kantk.prune(model, x, "
                f"pruner={pruner!r}); "
                "pruners that work without data set needs_data = False (e.g. 'magnitude')"
            )
    else:
        x = check_samples(model, x, "kantk.prune")
        check_finite_through(model, x, len(model.layers) - 1, "kantk.prune", "prune")
        scores = attribution(model, x)
    owner = resolve_registry(registry).pruners.owner(pruner)
    # a plugin's pruner sees a copy: one that changed the model in place (coef.mul_(0)) changed the
    # user's model without a word; the model itself then says whether the copy is still the same
    given = model if owner is None or owner in BUILTIN_PLUGINS else copy.deepcopy(model)
    with plugin_call("pruner", pruner, owner):
        decision = fn(given, x, scores)
    if given is not model and not _same_state(model, given):
        raise PluginOutputError(
            f"pruner {pruner!r} of plugin {owner!r} changed the model it was given (in place); a pruner "
            "only decides what goes (kantk.prune removes it): your model is as it was"
        )
    return normalise_decision(model, decision, prune_inputs=prune_inputs, scores=scores, pruner=pruner)


def _same_state(a: KAN, b: KAN) -> bool:
    """Whether two models hold the same structure and tensors (NaN equal to NaN)."""
    sa, sb = a.state_dict(), b.state_dict()
    if a.config() != b.config() or sa.keys() != sb.keys():
        return False
    return all(sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and _equal(sa[k], sb[k]) for k in sa)


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other is NaN (nan_to_num took NaN for 0 and inf for the max)."""
    if bool(torch.equal(a, b)):
        return True
    return a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())


def build_pruner(
    name: str, options: Mapping[str, Any], registry: Registry | None = None
) -> Callable[..., Any]:
    """Build the registered pruner ``name`` with ``options``.

    Raises:
        UnknownComponentError: No plugin provides ``name``.
        ValueError: An option the pruner's factory does not accept; the message lists those it does.
    """
    if not isinstance(name, str):
        raise TypeError(f"pruner must be a registry name (str), got {type(name).__name__}")
    spec = resolve_registry(registry).pruners.get(name)
    check_options("pruner", name, spec.factory, options)
    with plugin_call("pruner", name, resolve_registry(registry).pruners.owner(name)):
        pruner = spec.factory(**options)
    if not callable(pruner):
        raise TypeError(f"pruner plugin {name!r} built a {type(pruner).__name__}, not a callable pruner")
    return pruner


def normalise_decision(
    model: KAN,
    decision: PruneDecision | Sequence[torch.Tensor],
    prune_inputs: bool = False,
    scores: Attribution | None = None,
    pruner: str = "pruner",
) -> PrunePlan:
    """Turn a pruner's answer into a consistent :class:`PrunePlan`.

    Edges the model already masks stay removed; every edge of a removed node goes; then, from
    the last hidden layer back, a hidden node (or, with ``prune_inputs``, an input) left without
    any outgoing edge goes too, since it cannot affect the output. A hidden node that no input
    reaches (a product node one of whose factors kept no edge in, which makes it 0 whatever its
    other factors) stays for the constant it passes on, but the edges into it from nodes an
    input reaches go, since they change nothing; both until nothing changes. Every node layer
    keeps at least one node (a warning says so when a whole layer would otherwise vanish).

    Raises:
        TypeError, ValueError: The pruner returned something malformed (named in the message).
    """
    widths = model.widths
    n_layers = len(model.layers)
    if not isinstance(decision, PruneDecision):
        if isinstance(decision, (str, bytes)) or not isinstance(decision, Sequence):
            raise PluginOutputError(
                f"pruner {pruner!r} returned a {type(decision).__name__}; a pruner returns a "
                "kantk.pruners.PruneDecision or a list of per-layer edge masks (out, in)"
            )
        decision = PruneDecision(tuple(decision))
    masks = list(decision.edge_masks)
    if len(masks) != n_layers:
        raise ValueError(
            f"pruner {pruner!r} returned {len(masks)} edge masks for a model with {n_layers} layers"
        )
    edges = []
    for l, (mask, live) in enumerate(zip(masks, live_masks(model))):
        try:
            mask = torch.as_tensor(mask, device=live.device)
        except (TypeError, ValueError, RuntimeError) as exc:  # None, ragged lists: torch's words only
            raise PluginOutputError(
                f"pruner {pruner!r}: edge mask {l} is not a tensor of 0/1 or bool ({exc})"
            ) from None
        if tuple(mask.shape) != tuple(live.shape):
            raise ValueError(
                f"pruner {pruner!r}: edge mask {l} has shape {tuple(mask.shape)}, expected "
                f"{tuple(live.shape)} (out, in)"
            )
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                f"pruner {pruner!r}: edge mask {l} has values other than True/False or 1/0 "
                f"(NaN or scores?); a mask says keep (1) or remove (0) for each edge"
            )
        edges.append((mask != 0) & live)

    device = edges[0].device
    keep = [torch.ones(w, dtype=torch.bool, device=device) for w in widths]
    if decision.hidden_nodes is not None:
        hidden = list(decision.hidden_nodes)
        if len(hidden) != len(widths) - 2:
            raise ValueError(
                f"pruner {pruner!r} returned kept nodes for {len(hidden)} hidden layers; the model has "
                f"{len(widths) - 2}"
            )
        for l, idx in enumerate(hidden, start=1):
            keep[l] = _index_mask(idx, widths[l], f"pruner {pruner!r}: hidden layer {l}", device)
    if prune_inputs and decision.input_nodes is not None:
        keep[0] = _index_mask(decision.input_nodes, widths[0], f"pruner {pruner!r}: input_nodes", device)

    layouts = [layer.nodes for layer in model.layers]

    def drop_edges_of_removed_nodes() -> None:
        for l in range(n_layers):
            layout = layouts[l]
            rows = keep[l + 1] if layout is None else layout.expand(keep[l + 1])  # per sub-node
            edges[l] &= keep[l].unsqueeze(0) & rows.unsqueeze(1)

    drop_edges_of_removed_nodes()
    first_node = 0 if prune_inputs else 1
    while True:
        for l in range(n_layers - 1, first_node - 1, -1):  # node layer l feeds layer l
            keep[l] &= edges[l].any(dim=0)
            drop_edges_of_removed_nodes()
        # a hidden node that no input reaches (a product node one of whose factors lost every
        # edge in: 0 whatever its other factors) stays for the constant it passes on, but the
        # edges from input-reached nodes into it change nothing: they go (they would train for
        # nothing), and their sources may then have no outgoing edge left
        fed = fed_nodes(model, edges)
        changed = False
        for l in range(1, n_layers):
            layout = layouts[l - 1]
            unfed = ~fed[l] if layout is None else layout.expand(~fed[l])  # per sub-node
            dead = edges[l - 1] & unfed.unsqueeze(1) & fed[l - 1].unsqueeze(0)
            if bool(dead.any()):
                edges[l - 1] &= ~dead
                changed = True
        if not changed:
            break
    for l in range(len(widths)):
        if not keep[l].any():
            kind = "input layer" if l == 0 else f"hidden layer {l}"
            warn_at_user(  # at the user's line (stacklevel=4 showed kantk's pruning.py)
                f"pruning would remove every node of the {kind}; keeping node 0 with no live edges "
                "(the model's output no longer depends on its inputs)"
            )
            keep[l][0] = True
    return PrunePlan(tuple(kept_indices(k) for k in keep), tuple(edges), scores)


def _index_mask(indices: Any, width: int, who: str, device: torch.device) -> torch.Tensor:
    try:
        idx = torch.as_tensor(indices, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:  # [None]: "Could not infer dtype of NoneType"
        raise PluginOutputError(
            f"{who}: expected node indices in [0, {width}) or a bool mask ({exc})"
        ) from None
    if idx.dtype == torch.bool:
        if idx.shape != (width,):
            raise ValueError(f"{who}: a bool node mask must have shape ({width},), got {tuple(idx.shape)}")
        return idx.clone()
    if idx.dim() == 1 and idx.numel() == 0:  # [] (torch reads it as float32): keep none
        idx = idx.long()
    if idx.is_floating_point():
        raise ValueError(
            f"{who}: node indices must be ints in [0, {width}), got {idx.dtype} values {indices!r}"
        )
    if idx.dim() != 1 or (idx.numel() and (idx.min() < 0 or idx.max() >= width)):
        raise ValueError(f"{who}: expected node indices in [0, {width}), got {indices!r}")
    out = torch.zeros(width, dtype=torch.bool, device=device)
    out[idx.long()] = True
    return out


def kept_input_columns(model: KAN, kept: torch.Tensor) -> list[int] | None:
    """The data columns a model keeping inputs ``kept`` of ``model`` takes (``KAN.input_columns``):
    ``None`` while no input was ever removed."""
    if model.input_columns is None and kept.numel() == model.widths[0]:
        return None
    old = model.input_columns if model.input_columns is not None else range(model.widths[0])
    return [old[int(i)] for i in kept]


@torch.no_grad()
def apply_masks(model: KAN, plan: PrunePlan) -> KAN:
    """A same-size copy of ``model`` with every edge the plan removes masked (the reference).

    Both branches of a removed edge go: ``mask`` and, for symbolic edges, ``symbolic_mask``.
    """
    masked = copy.deepcopy(model)
    for layer, keep in zip(masked.layers, plan.edge_masks):
        for name in _MASKS:
            mask = getattr(layer, name, None)
            if isinstance(mask, torch.Tensor):
                mask.mul_(keep.to(device=mask.device, dtype=mask.dtype))
        layer.forget_removed_symbolic_edges()
    return masked


@torch.no_grad()
def shrink(model: KAN, plan: PrunePlan, registry: Registry | None = None) -> KAN:
    """Build the smaller model a plan describes (``model`` is left unchanged).

    Every layer keeps the rows (outputs) and columns (inputs) of its kept nodes in each of its
    per-edge tensors (``coef``, ``scale_base``, ``scale_sp``, ``mask`` and, with symbolic edges,
    ``symbolic_mask``, ``symbolic_affine`` and the function names); the masks also drop the
    plan's removed edges.
    Basis tensors (buffers or parameters) are matched against a freshly built basis for the
    smaller input count: a tensor of unchanged shape is copied; one whose first dimension counts
    the inputs keeps the kept inputs' rows (a B-spline's knots, a Chebyshev basis's centre and
    half-width, an RBF's centres and width, a plugin's per-input grid). ``requires_grad`` flags
    and train/eval mode are copied.

    Raises:
        ValueError: ``plan`` does not fit ``model``, or a basis holds a tensor that is neither
            per-input on its first dimension nor independent of the input count.
    """
    if len(plan.kept_nodes) != len(model.widths) or any(
        k.numel() == 0 or int(k.max()) >= w for k, w in zip(plan.kept_nodes, model.widths)
    ):
        raise ValueError(
            f"this pruning plan (widths {plan.widths}) does not fit a model of widths {model.widths}"
        )
    if plan.widths[-1] != model.widths[-1]:
        raise ValueError("a pruning plan must keep every output")
    ref = model.layers[0].coef
    config = model.config()
    new_widths = plan.widths
    # product nodes: a kept node keeps all its sub-nodes (the rows of the layer feeding it)
    layouts = [
        None if layer.nodes is None else layer.nodes.select(plan.kept_nodes[l + 1], registry)
        for l, layer in enumerate(model.layers)
    ]
    layouts = [None if layout is None or layout.trivial else layout for layout in layouts]
    config["widths"] = widths_spelling(new_widths, [None, *layouts])
    config.pop("mult_arity", None)
    if any(layout is not None for layout in layouts):
        config["mult_arity"] = arity_spelling([None, *layouts])
    for l, layer_cfg in enumerate(config["layers"]):
        layout = layouts[l]
        layer_cfg["in_features"] = new_widths[l]
        layer_cfg["out_features"] = new_widths[l + 1] if layout is None else layout.n_sub
        layer_cfg.pop("nodes", None)
        if layout is not None:
            layer_cfg["nodes"] = layout.config()
        layer_cfg.pop("symbolic", None)  # sized for the old layer; copied below, sliced
    config.pop("input_columns", None)
    columns = kept_input_columns(model, plan.kept_nodes[0])
    if columns is not None:
        config["input_columns"] = columns
    if model.column_names is not None:  # the kept inputs' data columns' names
        config["column_names"] = [model.column_names[int(i)] for i in plan.kept_nodes[0]]
    build_dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.random.fork_rng(devices=[]), default_dtype(build_dtype):  # leave the user's RNG alone
        small = KAN.from_config(config, registry=registry)
    small = small.to(device=ref.device, dtype=ref.dtype)

    state = {}
    for l, (old, new) in enumerate(zip(model.layers, small.layers)):
        kept_rows = (
            plan.kept_nodes[l + 1] if old.nodes is None else old.nodes.subnode_index(plan.kept_nodes[l + 1])
        )
        rows = kept_rows.to(ref.device)
        cols = plan.kept_nodes[l].to(ref.device)
        if old.has_symbolic:
            new.copy_symbolic_from(old, rows, cols)  # names and functions; tensors below
        edge_keep = plan.edge_masks[l].to(old.mask.device)
        for name in old.EDGE_TENSORS:  # per-edge tensors (out, in, ...), the symbolic ones when present
            value = getattr(old, name, None)
            if not isinstance(value, torch.Tensor):
                continue  # e.g. no symbolic edges in this layer
            value = value.detach()
            if name in _MASKS:
                value = value * edge_keep.to(value.dtype)
            state[f"layers.{l}.{name}"] = value.index_select(0, rows).index_select(1, cols).clone()
        old_basis = old.basis.state_dict()
        for key, target in new.basis.state_dict().items():
            value = old_basis[key]
            per_input = (new.in_features, *value.shape[1:])
            if tuple(value.shape) == tuple(target.shape):  # independent of the input count (or none removed)
                state[f"layers.{l}.basis.{key}"] = value.clone()
            elif value.dim() >= 1 and value.shape[0] == old.in_features and tuple(target.shape) == per_input:
                state[f"layers.{l}.basis.{key}"] = value.index_select(0, cols).clone()
            else:
                raise ValueError(
                    f"cannot prune basis {old.basis_name!r} of layer {l}: its tensor {key!r} has shape "
                    f"{tuple(value.shape)} and the basis built for {new.in_features} inputs has "
                    f"{tuple(target.shape)}; per-input tensors must count the inputs on their first dimension"
                )
    missing = set(small.state_dict()) - set(state)
    if missing:  # a layer tensor this module does not know how to slice
        raise ValueError(
            f"cannot prune a model holding {sorted(missing)}: kantk.prune does not know how to slice them"
        )
    small.load_state_dict(state, strict=True)
    for layer in small.layers:
        layer.forget_removed_symbolic_edges()  # the names were copied before the masks
    # frozen parameters stay frozen (e.g. scale_sp for strictly local updates), as in refine
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for name, p in small.named_parameters():
        p.requires_grad_(name not in frozen)
    small.train(model.training)
    return small
