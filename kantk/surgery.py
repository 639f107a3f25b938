"""Model surgery (pykan's ``remove_edge``, ``remove_node``, ``expand_depth``, ``expand_width``,
``perturb``, ``unfix_symbolic_all``, ``get_fun``, ``get_range``) as functions returning new models.

Every function leaves its argument untouched (like :func:`kantk.prune`) and uses pykan's edge
convention ``(layer, i, j)``: edge ``i -> j`` of layer ``layer`` is entry ``[j, i]`` of its tensors.
Removing masks (the model keeps its size; :func:`kantk.prune` shrinks it afterwards).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kantk._pykan import EXPAND_WIDTH_NAMES, pykan_names
from kantk._validation import check_choice, check_index, check_int, check_number, is_int
from kantk.attribution import check_samples
from kantk.layer import KANLayer
from kantk.model import KAN
from kantk.registry import Registry
from kantk.symbolic.api import unfix_symbolic

#: ``remove_node`` modes: the node's incoming edges, outgoing edges, or both (pykan's names).
NODE_MODES = ("all", "up", "down")
#: ``perturb`` modes (pykan's): which masked edges get a live numeric branch.
PERTURB_MODES = ("all", "non-intrusive", "minimal")


def _check_model(model: KAN, who: str) -> None:
    if not isinstance(model, KAN):
        raise TypeError(f"{who} expects a kantk.KAN, got {type(model).__name__}")


def _check_edge(model: KAN, layer: int, i: int, j: int, who: str) -> KANLayer:
    _check_model(model, who)
    check_index(f"{who}: layer", layer, len(model.layers), where=f" for KAN{model.widths}")
    target = model.layers[layer]
    out = "node" if target.nodes is None else "sub-node"  # a product node's edges go into its sub-nodes
    check_index(f"{who}: i (input node of layer {layer})", i, target.in_features)
    check_index(f"{who}: j (output {out} of layer {layer})", j, target.out_features)
    return target


@torch.no_grad()
def _mask_edges(layer: KANLayer, rows: slice | int, cols: slice | int) -> None:
    layer.mask[rows, cols] = 0
    if layer.has_symbolic:
        layer.symbolic_mask[rows, cols] = 0
        layer.forget_removed_symbolic_edges()


def remove_edge(model: KAN, layer: int, i: int, j: int) -> KAN:
    """A copy of ``model`` with edge ``i -> j`` of ``layer`` removed (both branches masked)."""
    _check_edge(model, layer, i, j, "kantk.surgery.remove_edge")
    new = copy.deepcopy(model)
    _mask_edges(new.layers[layer], j, i)
    return new


def remove_node(model: KAN, layer: int, i: int, mode: str = "all") -> KAN:
    """A copy with node ``i`` of node layer ``layer`` (0 = inputs) cut off.

    Args:
        mode: ``"down"``: its incoming edges (into every sub-node of a product node); ``"up"``:
            its outgoing edges; ``"all"``: both.
    """
    who = "kantk.surgery.remove_node"
    _check_model(model, who)
    check_choice("mode", mode, NODE_MODES)
    widths = model.widths
    check_index(f"{who}: layer (a node layer, 0 = inputs)", layer, len(widths), where=f" for KAN{widths}")
    check_index(f"{who}: i (node of node layer {layer})", i, widths[layer], where=f" for KAN{widths}")
    new = copy.deepcopy(model)
    if mode in ("all", "down") and layer > 0:
        below = new.layers[layer - 1]
        rows = (
            i
            if below.nodes is None
            else slice(below.nodes.starts[i], below.nodes.starts[i] + below.nodes.arities[i])
        )
        _mask_edges(below, rows, slice(None))  # a product node: the edges into all its sub-nodes
    if mode in ("all", "up") and layer < len(widths) - 1:
        _mask_edges(new.layers[layer], slice(None), i)
    return new


def _identity_layer(like: KANLayer, width: int, registry: Registry | None) -> KANLayer:
    """A ``width`` x ``width`` layer of the same basis: identity edges ``x`` on the diagonal."""
    from kantk.symbolic.library import get_library

    lib = get_library("default", registry)
    with torch.random.fork_rng(devices=[]):
        layer = KANLayer(
            width, width, like.basis_name, like.basis.config(), like.base_activation, registry=registry
        )
    layer = layer.to(device=like.coef.device, dtype=like.coef.dtype)
    with torch.no_grad():
        layer.mask.zero_()
        for q in range(width):
            layer.set_symbolic_edge(q, q, lib["x"], lib.source("x"), (1.0, 0.0, 1.0, 0.0))
    return layer


def expand_depth(model: KAN, registry: Registry | None = None) -> KAN:
    """A copy with one more layer at the end computing the identity (pykan's ``expand_depth``).

    The new layer has the last layer's basis; its diagonal edges are symbolic ``x``, the others
    masked, so the function is unchanged. Unmask edges (or :func:`perturb`) to train them.

    Args:
        model: The KAN to extend (left unchanged).
        registry: Where the last layer's basis is looked up (``None``: the default registry; a
            basis of ``kantk.Registry.with_plugins`` needs that registry).
    """
    _check_model(model, "kantk.surgery.expand_depth")
    new = copy.deepcopy(model)
    new.layers.append(_identity_layer(model.layers[-1], model.widths[-1], registry))
    new.widths = [*model.widths, model.widths[-1]]
    return new


@pykan_names(EXPAND_WIDTH_NAMES)
def expand_width(
    model: KAN,
    layer: int,
    n_added: int,
    op: str = "sum",
    arity: int | None = None,
    registry: Registry | None = None,
) -> KAN:
    """A copy with ``n_added`` more nodes in hidden node layer ``layer`` (1 .. len(widths) - 2).

    The new nodes' edges are numeric with fresh initial values but masked, so the function is
    unchanged; unmask them (or :func:`perturb`) to let them learn.

    Args:
        op: The new nodes' operation (pykan's ``sum_bool``): ``"sum"`` or, e.g., ``"mult"``.
            They join the layer's group of that operation (sum nodes before product nodes in
            pykan's spelling), so the indices of later nodes shift.
        arity: Sub-nodes of each new node when ``op`` takes ``mult_arity`` (default 2).
        registry: Where the model's bases and node operations are looked up (``None``: the
            default registry).
    """
    from kantk.nodes import DEFAULT_ARITY, NodeGroup, NodeLayout

    _check_model(model, "kantk.surgery.expand_width")
    widths = model.widths
    if not is_int(layer) or not 1 <= layer <= len(widths) - 2:
        raise IndexError(
            f"layer must be a hidden node layer in [1, {len(widths) - 2}] of KAN{widths}, got {layer!r}"
        )
    check_int("n_added", n_added, 1)
    old_layout = model.layers[layer - 1].nodes
    groups = list(old_layout.groups) if old_layout is not None else [NodeGroup("sum", widths[layer], 1)]
    probe = NodeLayout([NodeGroup(op, 1, 1)], registry)  # checks the operation's name
    fixed = probe.operation(op).arity
    if fixed is not None and arity is not None and arity != fixed:  # it was ignored silently
        raise ValueError(f"a {op!r} node has arity {fixed}; arity={arity!r} does not apply (leave it None)")
    size = fixed if fixed is not None else check_int("arity", DEFAULT_ARITY if arity is None else arity, 1)
    # old node j -> new index: the new nodes go at the end of their operation's group
    at = next((g for g in range(len(groups)) if groups[g].op == op), None)
    if at is None:  # a new group: sum nodes first, as pykan spells a layer ([n_sum, n_mult])
        at = 0 if op == "sum" else len(groups)
        groups.insert(at, NodeGroup(op, n_added, size))
    else:
        g = groups[at]
        groups[at] = NodeGroup(op, g.count + n_added, g.arity, (*g.node_arities(), *([size] * n_added)))
    grown = NodeLayout(groups, registry)
    before = sum(g.count for g in groups[: at + 1]) - n_added  # nodes before the new ones
    node_map = [j if j < before else j + n_added for j in range(widths[layer])]
    row_map = node_map if old_layout is None and grown.trivial else grown.subnode_index(node_map).tolist()
    config = model.config()
    new_widths = list(widths)
    new_widths[layer] += n_added
    layouts = [None, *(l.nodes for l in model.layers)]
    layouts[layer] = None if grown.trivial else grown
    from kantk.nodes import arity_spelling, widths_spelling

    config["widths"] = widths_spelling(new_widths, layouts)
    config.pop("mult_arity", None)
    if any(layout is not None for layout in layouts):
        config["mult_arity"] = arity_spelling(layouts)
    for l, layer_cfg in enumerate(config["layers"]):
        out_layout = layouts[l + 1]
        layer_cfg["in_features"] = new_widths[l]
        layer_cfg["out_features"] = new_widths[l + 1] if out_layout is None else out_layout.n_sub
        layer_cfg.pop("nodes", None)
        if out_layout is not None:
            layer_cfg["nodes"] = out_layout.config()
        layer_cfg.pop("symbolic", None)
    ref = model.layers[0].coef
    with torch.random.fork_rng(devices=[]):
        bigger = KAN.from_config(config, registry=registry).to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for l, (old, big) in enumerate(zip(model.layers, bigger.layers)):
            rows = torch.tensor(row_map if l == layer - 1 else range(old.out_features), device=ref.device)
            cols = torch.tensor(node_map if l == layer else range(old.in_features), device=ref.device)
            for name in ("coef", "scale_base", "scale_sp", "mask"):
                target = getattr(big, name)
                if name == "mask":
                    target.zero_()  # the new edges start masked
                target[rows.unsqueeze(1), cols] = getattr(old, name)
            for key, value in old.basis.state_dict().items():
                mine = big.basis.state_dict()[key]
                if mine.shape == value.shape:
                    mine.copy_(value)
                elif (
                    value.dim() == 0 or value.shape[0] != old.in_features or mine.shape[1:] != value.shape[1:]
                ):
                    raise ValueError(  # it was torch's "shape mismatch: value tensor of shape ..."
                        f"cannot widen basis {old.basis_name!r} of layer {l}: its tensor {key!r} has "
                        f"shape {tuple(value.shape)} and the basis built for {big.in_features} inputs "
                        f"has {tuple(mine.shape)}; per-input tensors must count the inputs on their "
                        "first dimension"
                    )
                else:  # per-input basis tensors: new inputs take the first input's
                    mine[cols] = value
                    fresh = torch.ones(mine.shape[0], dtype=torch.bool, device=mine.device)
                    fresh[cols] = False
                    mine[fresh] = value[:1]
            if old.has_symbolic:
                big.enable_symbolic()
                big.symbolic_affine[rows.unsqueeze(1), cols] = old.symbolic_affine
                for q, p in old.symbolic_edges():
                    fn = old.symbolic_function(q, p)
                    assert fn is not None
                    library = old.symbolic_libraries[q][p]
                    assert library is not None
                    big.set_symbolic_edge(int(rows[q]), int(cols[p]), fn, library)
                big.symbolic_mask[rows.unsqueeze(1), cols] = old.symbolic_mask
                # set_symbolic_edge masked the numeric branch: an edge whose numeric branch was
                # switched back on (both branches add up) keeps it
                big.mask[rows.unsqueeze(1), cols] = old.mask
    bigger.train(model.training)
    return bigger


def perturb(model: KAN, mag: float = 1.0, mode: str = "non-intrusive") -> KAN:
    """A copy whose masked edges get a live numeric branch, so training can grow new structure.

    Modes (after pykan's): ``"all"``: every masked edge is unmasked with its numeric function
    scaled by ``mag``; ``"non-intrusive"``: the same but the function stays unchanged at first
    (the new branches start at zero: ``scale_base = scale_sp = 0``, trainable; into a new
    hidden product node, which would then never learn, they start as in ``"all"``, and its
    outgoing edges at zero); ``"minimal"``:
    only edges between nodes that already have live edges. Symbolic and live edges keep their
    functions; pruned-and-dead structure comes alive.
    """
    _check_model(model, "kantk.surgery.perturb")
    check_choice("mode", mode, PERTURB_MODES)
    mag = check_number("perturb's mag", mag, finite=True)  # NaN made every output NaN
    new = copy.deepcopy(model)
    with torch.no_grad():
        lives = [layer.live_edges() for layer in new.layers]
        grow = _growing_rows(new, lives) if mode == "non-intrusive" else [None] * len(lives)
        for layer, live, rows in zip(new.layers, lives, grow):
            dead = ~live
            if mode == "minimal":
                dead = dead & live.any(dim=1, keepdim=True) & live.any(dim=0, keepdim=True)
            w = dead.to(layer.mask.dtype)
            layer.mask.add_(w)
            # the unmasked branches are scaled by mag; "non-intrusive" starts them at zero, except
            # into a new product node's sub-nodes: a product of zeros has no gradient, and it would
            # never learn (its outgoing edges, all new, start at zero, which keeps the function)
            if mode != "non-intrusive":
                live_start = w
            else:
                live_start = w * rows.to(w.dtype).unsqueeze(1) if rows is not None else torch.zeros_like(w)
            factor = 1 - w + mag * live_start
            layer.scale_base.mul_(factor)
            layer.scale_sp.mul_(factor)
    return new


def _growing_rows(model: KAN, lives: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """Per layer, the output rows (sub-nodes) of hidden product nodes (any operation but a sum)
    without a live edge in or out: new nodes, whose incoming edges a non-intrusive perturbation
    starts live (``None`` where there are none)."""
    out: list[torch.Tensor | None] = []
    for l, layer in enumerate(model.layers):
        nodes = layer.nodes
        rows = None
        if nodes is not None and l + 1 < len(model.layers):
            outgoing = lives[l + 1]
            for j, op in enumerate(nodes.ops):
                sub = list(nodes.subnodes(j))
                if op == "sum" or bool(lives[l][sub].any()) or bool(outgoing[:, j].any()):
                    continue
                if rows is None:
                    rows = torch.zeros(layer.out_features, dtype=torch.bool, device=layer.mask.device)
                rows[sub] = True
        out.append(rows)
    return out


def unfix_symbolic_all(model: KAN) -> KAN:
    """A copy with every symbolic edge numeric again (its kept numeric function restored)."""
    _check_model(model, "kantk.surgery.unfix_symbolic_all")
    new = copy.deepcopy(model)
    for l, layer in enumerate(new.layers):
        for q, p in layer.symbolic_edges():
            unfix_symbolic(new, l, p, q)
    return new


class EdgeFunction:
    """One edge's function ``phi(t)`` as a callable, (n,) -> (n,) (pykan's ``get_fun``).

    It holds a copy of the layer, so later changes to the model do not change it.
    """

    def __init__(self, layer: KANLayer, i: int, j: int):
        self.layer = copy.deepcopy(layer)
        self.i, self.j = i, j

    @torch.no_grad()
    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.layer.coef.dtype).reshape(-1)
        x = torch.zeros(t.shape[0], self.layer.in_features, dtype=t.dtype, device=self.layer.coef.device)
        x[:, self.i] = t
        return self.layer.activations(x)[:, self.j, self.i]


def get_fun(model: KAN, layer: int, i: int, j: int) -> EdgeFunction:
    """Edge ``i -> j`` of ``layer`` as a callable ``phi(t)`` (numeric plus symbolic branch)."""
    return EdgeFunction(_check_edge(model, layer, i, j, "kantk.surgery.get_fun"), i, j)


@dataclass(frozen=True)
class EdgeRange:
    """What edge ``i -> j`` sees on data: its input range and its output range. It unpacks as
    pykan's ``get_range`` returns: ``x_min, x_max, y_min, y_max = edge_range(...)``."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.x_min, self.x_max, self.y_min, self.y_max))


@torch.no_grad()
def edge_range(model: KAN, x: torch.Tensor, layer: int, i: int, j: int) -> EdgeRange:
    """The input and output range of edge ``i -> j`` of ``layer`` on model inputs ``x`` (pykan's
    ``get_range``; pykan reads cached activations, here ``x`` is passed)."""
    target = _check_edge(model, layer, i, j, "kantk.surgery.edge_range")
    h = check_samples(model, x, "kantk.surgery.edge_range", min_samples=1)
    for current in model.layers[:layer]:
        h = current(h)
    t = h[:, i]
    y = target.activations(h)[:, j, i]
    return EdgeRange(float(t.min()), float(t.max()), float(y.min()), float(y.max()))
