"""Symbolic edges on a KAN: suggest, fix, unfix, and fix every edge automatically.

Edge convention (pykan's): ``(layer, i, j)`` is the edge of layer ``layer`` from its input node
``i`` to its output node ``j``; in the layer's (out, in) tensors it is entry ``[j, i]``.

Candidates are ranked with pykan's rule (:func:`kantk.symbolic.fitting.symbolic_scores`) with two
changes:

- a function of complexity 0 (the constant ``0``) is considered only for a *negligible* edge, one
  whose spread over the data is at most ``zero_threshold`` times that of the layer's widest edge
  and whose importance to the outputs (its :func:`kantk.attribution` edge score) is at most
  ``zero_threshold`` times the layer's largest: a small edge that a later layer scales up carries
  the output and is no constant to drop; for such an edge it is chosen outright. pykan lets ``0``
  (score 0) beat any fit with ``r^2`` below about 0.996 (e.g. ``sin`` on a noisy sine edge);
- the floor under ``1 - r^2`` in the score (pykan's fixed 1e-5) is the *layer's precision*: the
  largest ``1 - r^2`` of the best fits of the layer's edges that get fixed, between 1e-5 and
  ``precision_cap`` (:data:`PRECISION_CAP`, 1e-4). A more complex function must still explain 16
  times less variance than a simpler one (at ``weight_simple = 0.8``), but counted above that
  floor: a nearly linear ``sqrt(x + 4)`` no longer beats ``x`` on an edge whose curvature is of
  the size of the other edges' misfit, which is what a product of sums (``x1*x2 + x3*x4`` from
  ``(x1 + x2)^2``) needs. On a precisely fitted layer (every best fit within 1e-5) the rule is
  pykan's.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kantk._pykan import AUTO_SYMBOLIC_NAMES, FIX_SYMBOLIC_NAMES, SUGGEST_SYMBOLIC_NAMES, pykan_names
from kantk._validation import check_index, check_int, check_number
from kantk.attribution import attribution, check_finite_through, check_samples
from kantk.layer import KANLayer
from kantk.model import KAN
from kantk.nodes import SUM
from kantk.registry import Registry
from kantk.symbolic.fitting import DOMAIN_MARGIN, R2_FLOOR, AffineFit, fit_affine, symbolic_scores
from kantk.symbolic.library import LibraryArg, SymbolicLibrary, resolve_library

#: Default search ranges of (a, b), in each edge's normalised input coordinates ([-1, 1]).
A_RANGE = (-10.0, 10.0)
B_RANGE = (-10.0, 10.0)
#: Largest floor under ``1 - r^2`` in the ranking score (a layer's precision is capped to it).
PRECISION_CAP = 1e-4
#: auto_symbolic's default ``r2_threshold`` (also what suggest_symbolic assumes for the layer's precision).
R2_THRESHOLD = 0.9

Params = tuple[float, float, float, float]


@dataclass(frozen=True)
class SymbolicCandidate:
    """One ranked candidate for an edge (see :func:`suggest_symbolic`).

    Attributes:
        name: Function name.
        library: Registry name of the library the function comes from.
        r2: Coefficient of determination of the best ``c * f(a x + b) + d`` on the data.
        complexity: The function's complexity.
        score: The ranking score (lower is better): pykan's, with the layer's precision as floor.
        params: ``(a, b, c, d)``.
    """

    name: str
    library: str
    r2: float
    complexity: float
    score: float
    params: Params


@dataclass(frozen=True)
class SymbolicEdgeFit:
    """What happened to one edge (returned by :func:`fix_symbolic` and :func:`auto_symbolic`).

    Attributes:
        layer, i, j: The edge: layer index, input node, output node.
        name: Function fixed (or the best candidate, when the edge was kept numeric); ``None``
            when no candidate was admissible.
        r2: Its ``r^2`` on the data (``None`` when fixed without data).
        params: ``(a, b, c, d)`` (``None`` when no candidate was admissible).
        fixed: Whether the edge is now symbolic.
        status: ``"fixed"``; ``"negligible"`` (fixed to the complexity-0 function);
            ``"below_threshold"`` (kept numeric, best ``r^2 < r2_threshold``); or
            ``"no_candidate"`` (kept numeric, every candidate left its real domain, or none
            above the threshold computes finite values in the model's dtype). A candidate that
            is not finite in the model's dtype (float32 overflow) is passed over for the next.
    """

    layer: int
    i: int
    j: int
    name: str | None
    r2: float | None
    params: Params | None
    fixed: bool
    status: str


@pykan_names(SUGGEST_SYMBOLIC_NAMES)
def suggest_symbolic(
    model: KAN,
    layer: int,
    i: int,
    j: int,
    x: torch.Tensor,
    library: LibraryArg = "default",
    topk: int = 5,
    weight_simple: float = 0.8,
    zero_threshold: float = 1e-2,
    a_range: tuple[float, float] = A_RANGE,
    b_range: tuple[float, float] = B_RANGE,
    registry: Registry | None = None,
    domain_margin: float = DOMAIN_MARGIN,
    precision_cap: float = PRECISION_CAP,
) -> list[SymbolicCandidate]:
    """Rank a library's functions as replacements for the edge ``i -> j`` of layer ``layer``.

    Every function is fitted as ``c * f(a * x_i + b) + d`` to the edge's numeric function on the
    layer's inputs (the model's inputs ``x`` propagated), all at once. The layer's other numeric
    edges are fitted too, for the layer's precision (the score's floor; see the module's notes),
    so the ranking is the one :func:`auto_symbolic` would use now.

    Args:
        model: The KAN (not changed).
        layer, i, j: Layer index, input node, output node.
        x: (batch, widths[0]) model inputs, in the model's dtype (batch >= 3).
        library: Registry name, :class:`kantk.symbolic.SymbolicLibrary` or list of names.
        topk: How many candidates to return.
        weight_simple: Weight of complexity against fit quality, in [0, 1] (pykan's 0.8).
        zero_threshold: An edge whose standard deviation is at most this times the layer's
            largest edge standard deviation, and whose attribution score (importance to the
            outputs) at most this times the layer's largest, is negligible (only then can ``0``
            be chosen).
        a_range, b_range: Search ranges of (a, b) for inputs normalised to [-1, 1].
        registry: Where library names are looked up.
        domain_margin: A candidate's argument ``a * x + b`` must stay in the function's real
            domain on the edge's input range widened by this fraction of it on each side (not
            across 0; see :mod:`kantk.symbolic.fitting`); 0: on the samples only.
        precision_cap: Largest floor under ``1 - r^2`` in the score (the layer's precision is
            capped to it); pykan's ``1e-5`` gives pykan's ranking.

    Returns:
        Up to ``topk`` :class:`SymbolicCandidate`, best first. Candidates that leave their real
        domain on the data are left out, and so is ``0`` unless the edge is negligible.

    Raises:
        IndexError: No such layer or edge. ValueError: The edge is pruned, or bad samples.
    """
    lib = resolve_library(library, registry)
    target = _check_edge(model, layer, i, j)
    topk = check_int("topk", topk, 1, integral=True)
    h = _layer_input(model, layer, x, "kantk.suggest_symbolic")
    _check_cap(precision_cap)
    with torch.no_grad():
        reach = attribution(model, x).edge_scores[layer]
        xs, ys, negligible = _edge_samples(target, h, [(j, i)], zero_threshold, reach, masked=False)
        others = [e for e in _numeric_edges(target) if e != (j, i)]
        if others and precision_cap > R2_FLOOR:
            xo, yo, neg_o = _edge_samples(target, h, others, zero_threshold, reach, masked=True)
            xs, ys, negligible = torch.cat([xs, xo]), torch.cat([ys, yo]), negligible + neg_o
        fit = fit_affine(xs, ys, lib.functions, a_range, b_range, domain_margin=domain_margin)
    floor = _layer_floor(lib, fit, negligible, R2_THRESHOLD, precision_cap)
    return _ranked(lib, fit, 0, negligible[0], weight_simple, floor)[:topk]


@pykan_names(FIX_SYMBOLIC_NAMES)
def fix_symbolic(
    model: KAN,
    layer: int,
    i: int,
    j: int,
    name: str,
    x: torch.Tensor | None = None,
    fit_params: bool = True,
    library: LibraryArg = "default",
    a_range: tuple[float, float] = A_RANGE,
    b_range: tuple[float, float] = B_RANGE,
    registry: Registry | None = None,
    domain_margin: float = DOMAIN_MARGIN,
) -> SymbolicEdgeFit:
    """Make edge ``i -> j`` of layer ``layer`` compute ``c * f(a * x_i + b) + d`` with ``f = name``.

    The numeric branch of the edge is switched off (``mask = 0``, its coefficients kept, so
    :func:`unfix_symbolic` restores it) and ``(a, b, c, d)`` become trainable parameters of the
    layer (``layer.symbolic_affine[j, i]``). Fixing an edge that is already symbolic replaces
    its function.

    Args:
        model: The KAN, changed in place.
        layer, i, j: Layer index, input node, output node (pykan's ``fix_symbolic(l, i, j, name)``).
        name: Function name in ``library``.
        x: (batch, widths[0]) model inputs. With ``fit_params``, ``(a, b, c, d)`` are fitted to
            the edge's numeric function on the layer's inputs; without ``x`` (or with
            ``fit_params=False``) they are ``(1, 0, 1, 0)``.
        fit_params: Fit the affine parameters (needs ``x``).
        library: Registry name, :class:`kantk.symbolic.SymbolicLibrary` or list of names.
        a_range, b_range: Search ranges of (a, b) for inputs normalised to [-1, 1].
        registry: Where library names are looked up.
        domain_margin: A candidate's argument ``a * x + b`` must stay in the function's real
            domain on the edge's input range widened by this fraction of it on each side (not
            across 0; see :mod:`kantk.symbolic.fitting`); 0: on the samples only.

    Returns:
        A :class:`SymbolicEdgeFit` (``r2`` is ``None`` when nothing was fitted).

    Raises:
        IndexError: No such layer or edge. ValueError: The edge is pruned, or bad samples.
        UnknownComponentError: ``name`` is not in the library (the message lists its functions).
    """
    lib = resolve_library(library, registry)
    target = _check_edge(model, layer, i, j)
    fn = lib[name]
    params: Params = (1.0, 0.0, 1.0, 0.0)
    r2: float | None = None
    if fit_params and x is not None:
        h = _layer_input(model, layer, x, "kantk.fix_symbolic")
        with torch.no_grad():
            xs, ys, _ = _edge_samples(target, h, [(j, i)], 0.0, None, masked=False)
            fit = fit_affine(xs, ys, [fn], a_range, b_range, domain_margin=domain_margin)
        r2 = float(fit.r2[0, 0])
        if r2 == float("-inf"):
            raise ValueError(
                f"cannot fix edge {i} -> {j} of layer {layer} to {name!r}: every (a, b) sends some of "
                "the layer's inputs (or their range widened by domain_margin) outside the function's "
                "real domain; choose another function"
            )
        params = _params(fit, 0, 0)
    target.set_symbolic_edge(j, i, fn, lib.source(name), params)
    return SymbolicEdgeFit(layer, i, j, name, r2, params, True, "fixed")


def unfix_symbolic(model: KAN, layer: int, i: int, j: int) -> None:
    """Make edge ``i -> j`` of layer ``layer`` numeric again (its numeric function was kept).

    Raises:
        IndexError: No such layer or edge. ValueError: The edge is not symbolic.
    """
    target = _check_layer(model, layer)
    _check_nodes(target, layer, i, j)
    target.clear_symbolic_edge(j, i)


@pykan_names(AUTO_SYMBOLIC_NAMES)
def auto_symbolic(
    model: KAN,
    x: torch.Tensor,
    library: LibraryArg = "default",
    r2_threshold: float = R2_THRESHOLD,
    weight_simple: float = 0.8,
    zero_threshold: float = 1e-2,
    a_range: tuple[float, float] = A_RANGE,
    b_range: tuple[float, float] = B_RANGE,
    registry: Registry | None = None,
    domain_margin: float = DOMAIN_MARGIN,
    precision_cap: float = PRECISION_CAP,
    layers: int | Sequence[int] | None = None,
) -> list[SymbolicEdgeFit]:
    """Fix every live numeric edge of ``model`` to its best symbolic candidate (pykan's ``auto_symbolic``).

    Works for every basis: it fits the sampled edge functions. Layers are processed in order,
    every edge of a layer in one vectorised fit, and each layer sees the inputs the already
    fixed layers before it produce. Pruned and already symbolic edges are left alone.

    Args:
        model: The KAN, changed in place.
        x: (batch, widths[0]) model inputs, in the model's dtype (batch >= 3).
        library: Registry name, :class:`kantk.symbolic.SymbolicLibrary` or list of names.
        r2_threshold: An edge whose best candidate has a lower ``r^2`` stays numeric (reported
            with status ``"below_threshold"``); keep training or lower it. Negligible edges are
            fixed to ``0`` whatever their ``r^2``. A number <= 1 (``-inf``: every edge gets its best
            candidate; a ``ValueError`` otherwise, NaN included, before the model changes).
        weight_simple: Weight of complexity against fit quality, in [0, 1] (pykan's 0.8).
        zero_threshold: Relative spread under which an edge is negligible (see
            :func:`suggest_symbolic`).
        a_range, b_range: Search ranges of (a, b) for inputs normalised to [-1, 1].
        registry: Where library names are looked up.
        domain_margin: A candidate's argument ``a * x + b`` must stay in the function's real
            domain on the edge's input range widened by this fraction of it on each side (not
            across 0; see :mod:`kantk.symbolic.fitting`); 0: on the samples only.
        precision_cap: Largest floor under ``1 - r^2`` in the score: each layer's candidates are
            ranked with the layer's precision (the largest ``1 - r^2`` of the best fits of its
            edges that get fixed) as floor, between 1e-5 and this; ``1e-5`` gives pykan's rule.
        layers: Only these layer indices (an int or a list; ``None``: all), e.g. ``0`` to fix the first layer,
            refit, and then fix the next (each layer's edges are still ranked together).

    Returns:
        One :class:`SymbolicEdgeFit` per edge considered, in (layer, j, i) order.
    """
    lib = resolve_library(library, registry)
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.auto_symbolic expects a kantk.KAN, got {type(model).__name__}")
    h = check_samples(model, x, "kantk.auto_symbolic", min_samples=3)
    _check_cap(precision_cap)
    # before any change; -inf (fix every edge, as kantk discover does) is a threshold, NaN is not
    r2_threshold = check_number("r2_threshold", r2_threshold, maximum=1.0)
    if isinstance(layers, int):
        layers = [layers]
    chosen = (
        set(range(len(model.layers))) if layers is None else {_check_layer_index(model, l) for l in layers}
    )
    todo = [l for l in chosen if _numeric_edges(model.layers[l])]
    if todo:
        check_finite_through(model, h, max(todo), "kantk.auto_symbolic", "fit")
    report: list[SymbolicEdgeFit] = []
    x = h
    with torch.no_grad():
        for l, layer in enumerate(model.layers):
            if l > max(chosen, default=-1):
                break
            edges = _numeric_edges(layer) if l in chosen else []
            if edges:
                # importance as the model stands now, with the layers before fixed
                reach = attribution(model, x).edge_scores[l]
                xs, ys, negligible = _edge_samples(layer, h, edges, zero_threshold, reach, masked=True)
                fit = fit_affine(xs, ys, lib.functions, a_range, b_range, domain_margin=domain_margin)
                floor = _layer_floor(lib, fit, negligible, r2_threshold, precision_cap)
                for e, (q, p) in enumerate(edges):
                    ranked = _ranked(lib, fit, e, negligible[e], weight_simple, floor)
                    report.append(
                        _fix_best(layer, l, q, p, lib, ranked, negligible[e], r2_threshold, h[:, p])
                    )
            h = layer(h)
    return report


# --- internals ------------------------------------------------------------------------------------


def _check_layer(model: KAN, layer: int) -> KANLayer:
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kantk.KAN, got {type(model).__name__}")
    check_index("layer", layer, len(model.layers), where=f" for KAN{model.widths}")
    return model.layers[layer]


def _check_nodes(target: KANLayer, layer: int, i: int, j: int) -> None:
    for label, value, size in (
        ("i (input node)", i, target.in_features),
        ("j (output node)" if target.nodes is None else "j (output sub-node)", j, target.out_features),
    ):
        index = _as_index(value)
        if index is None or not 0 <= index < size:
            raise IndexError(
                f"layer {layer} has {size} nodes on that side; {label} must be in [0, {size - 1}], got "
                f"{value!r}"
            )


def _as_index(value: Any) -> int | None:
    """``value`` as an int when it is one (numpy and 0-dim torch integers too; not a bool)."""
    if isinstance(value, bool) or getattr(value, "dtype", None) == torch.bool:
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_edge(model: KAN, layer: int, i: int, j: int) -> KANLayer:
    """The layer of a live edge (numeric or symbolic); raises for a pruned one."""
    target = _check_layer(model, layer)
    _check_nodes(target, layer, i, j)
    if not bool(target.live_edges()[j, i]):
        raise ValueError(f"edge {i} -> {j} of layer {layer} is pruned (masked); it has no function to fit")
    return target


def _layer_input(model: KAN, layer: int, x: torch.Tensor, who: str) -> torch.Tensor:
    x = check_samples(model, x, who, min_samples=3)
    with torch.no_grad():
        h = x
        for current in model.layers[:layer]:
            h = current(h)
    return h


def _edge_samples(
    layer: KANLayer,
    h: torch.Tensor,
    edges: Sequence[tuple[int, int]],
    zero_threshold: float,
    reach: torch.Tensor | None,
    masked: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """Inputs (E, batch), numeric outputs (E, batch) and negligibility of edges ``(q, p)``.

    ``reach`` (out, in) holds the layer's attribution edge scores: an edge is negligible only when
    both its spread (within its layer, or its factor's for a product node) and its score are
    small, so an edge that a later layer scales up is kept (``None``: the spread alone).
    """
    if not zero_threshold >= 0:
        raise ValueError(f"zero_threshold must be a number >= 0, got {zero_threshold!r}")
    q = torch.tensor([e[0] for e in edges], dtype=torch.long, device=h.device)
    p = torch.tensor([e[1] for e in edges], dtype=torch.long, device=h.device)
    numeric = layer.numeric_activations(h, masked=masked)  # (batch, out, in)
    ys = numeric[:, q, p].t().to(torch.float64)  # (E, batch)
    xs = h[:, p].t().to(torch.float64)
    spread = layer.activations(h).std(dim=0)  # (out, in): numeric and symbolic edges
    widest = float((spread * layer.live_edges()).max()) if spread.numel() else 0.0
    scale = [widest] * len(edges)
    if layer.nodes is not None:
        # An edge into a factor of a product (any node that is not a plain sum) matters by its
        # relative size: its spread over the factor's root mean square (the factor's mean
        # included: 0.006 +- 5% is no constant to drop), against the node's own relative spread.
        sub = layer.subnode_values(h).to(torch.float64)  # (batch, out)
        node = layer.nodes(sub)  # (batch, out_nodes)
        rms_sub = sub.square().mean(dim=0).sqrt()
        rel_node = node.std(dim=0) / node.square().mean(dim=0).sqrt().clamp_min(1e-300)
        node_of = layer.nodes.node_of_subnode()
        for e, (qe, _) in enumerate(edges):
            j = node_of[qe]
            if not (layer.nodes.ops[j] == SUM and layer.nodes.arities[j] == 1):
                scale[e] = float(rel_node[j] * rms_sub[qe])
    edge_std = ys.std(dim=1)
    if reach is None:
        reach = torch.zeros(layer.mask.shape, dtype=torch.float64, device=h.device)
    important = reach.to(torch.float64)[q, p]  # (E,)
    top = float(reach.max()) if reach.numel() else 0.0
    negligible = [
        bool(s <= zero_threshold * w and r <= zero_threshold * top)
        for s, w, r in zip(edge_std.tolist(), scale, important.tolist())
    ]
    return xs, ys, negligible


def _numeric_edges(layer: KANLayer) -> list[tuple[int, int]]:
    """``(q, p)`` of the layer's live numeric edges, in (out, in) order."""
    numeric = layer.mask != 0
    if layer.has_symbolic:
        numeric = numeric & (layer.symbolic_mask == 0)
    return [(int(q), int(p)) for q, p in numeric.nonzero().tolist()]


def _check_layer_index(model: KAN, layer: int) -> int:
    _check_layer(model, layer)
    return layer


def _check_cap(precision_cap: float) -> None:
    if not (isinstance(precision_cap, (int, float)) and R2_FLOOR <= precision_cap <= 1):
        raise ValueError(f"precision_cap must be a number in [{R2_FLOOR:g}, 1], got {precision_cap!r}")


def _layer_floor(
    lib: SymbolicLibrary, fit: AffineFit, negligible: list[bool], r2_threshold: float, cap: float
) -> float:
    """The layer's precision: the largest ``1 - r^2`` of the edges' best fits, in [R2_FLOOR, cap].

    Only edges that would be fixed count: not negligible, and a best ``r^2`` (over the functions
    of positive complexity) of at least ``r2_threshold``.
    """
    keep = [k for k, fn in enumerate(lib.functions) if fn.complexity > 0]
    if not keep:
        return R2_FLOOR
    best = fit.r2[keep].amax(dim=0).cpu()  # (E,)
    worst = R2_FLOOR
    for e, r2 in enumerate(best.tolist()):
        if not negligible[e] and math.isfinite(r2) and r2 >= r2_threshold:
            worst = max(worst, 1.0 - r2)
    return min(worst, cap)


def _params(fit: AffineFit, k: int, e: int) -> Params:
    a, b, c, d = (float(v) for v in fit.params[k, e])
    return (a, b, c, d)


def _ranked(
    lib: SymbolicLibrary, fit: AffineFit, e: int, negligible: bool, weight_simple: float, floor: float
) -> list[SymbolicCandidate]:
    functions = lib.functions
    complexity = torch.tensor([fn.complexity for fn in functions], dtype=torch.float64)
    r2 = fit.r2[:, e].cpu()
    scores = symbolic_scores(r2, complexity, weight_simple, floor)
    candidates = []
    for k, fn in enumerate(functions):
        if not torch.isfinite(scores[k]):
            continue  # no admissible (a, b)
        if fn.complexity == 0 and not negligible:
            continue  # the constant only for a negligible edge
        forced = fn.complexity == 0 and negligible
        key = (not forced, float(scores[k]), -float(r2[k]), k)
        candidates.append(
            (
                key,
                SymbolicCandidate(
                    fn.name,
                    lib.source(fn.name),
                    float(r2[k]),
                    float(fn.complexity),
                    float(scores[k]),
                    _params(fit, k, e),
                ),
            )
        )
    return [c for _, c in sorted(candidates, key=lambda item: item[0])]


def _fix_best(
    layer: KANLayer,
    l: int,
    q: int,
    p: int,
    lib: SymbolicLibrary,
    ranked: list[SymbolicCandidate],
    negligible: bool,
    r2_threshold: float,
    inputs: torch.Tensor,
) -> SymbolicEdgeFit:
    """Fix edge p -> q to the best candidate that is finite on ``inputs`` (batch,) in the model's dtype.

    The fit checked every candidate in float64; a float32 model can still overflow (``exp`` of a
    large argument), so a candidate whose values are not finite in the layer's dtype is passed
    over for the next one.
    """
    if not ranked:
        return SymbolicEdgeFit(l, p, q, None, None, None, False, "no_candidate")
    best = ranked[0]
    zero = negligible and best.complexity == 0
    if not zero and best.r2 < r2_threshold:
        return SymbolicEdgeFit(l, p, q, best.name, best.r2, best.params, False, "below_threshold")
    for candidate in ranked:
        if not zero and candidate.r2 < r2_threshold:
            break
        if _finite_in_dtype(lib, candidate, inputs, layer.coef.dtype):
            layer.set_symbolic_edge(q, p, lib[candidate.name], candidate.library, candidate.params)
            status = "negligible" if zero and candidate is best else "fixed"
            return SymbolicEdgeFit(l, p, q, candidate.name, candidate.r2, candidate.params, True, status)
    return SymbolicEdgeFit(l, p, q, None, None, None, False, "no_candidate")


def _finite_in_dtype(
    lib: SymbolicLibrary, candidate: SymbolicCandidate, inputs: torch.Tensor, dtype: torch.dtype
) -> bool:
    """Whether ``c * f(a * x + b) + d`` is finite on ``inputs`` when computed in ``dtype``."""
    a, b, c, d = (torch.tensor(v, dtype=dtype, device=inputs.device) for v in candidate.params)
    values = lib[candidate.name].torch_fn(inputs.to(dtype) * a + b) * c + d
    return bool(torch.isfinite(values).all())
