"""Hypothesis tests on a function: separability, symmetry and the tree of variable groupings.

The function ``f`` is a :class:`kantk.KAN` or any differentiable callable mapping (batch, n)
tensors to (batch,) or (batch, 1) (pykan's ``kan.hypothesis``; to test data, fit a KAN first).
All tests look at derivatives on the samples ``x`` (use float64):

* **additive separability** between groups A and B (``f = g(x_A) + h(x_B)``): every mixed second
  derivative ``d2f / dx_a dx_b`` vanishes. **Multiplicative** (``f = g(x_A) * h(x_B)``): the same
  for ``log|f|``. ``exp(sin(pi x1) + x2^2)`` is multiplicatively separable (additive inside exp).
  The score of a pair is ``median |d2 g / dx_a dx_b| * std(x_a) * std(x_b)`` over the samples
  (the median ignores the few samples near a zero of ``f``; ``g`` is ``f``, or ``log|f|``; it
  also misses an interaction confined to fewer than half the samples: sample the region you care
  about),
  divided by the weaker of the two variables' own effects on ``g``, ``median |dg/dx_a| *
  std(x_a)``, but by no less than ``SPREAD_FLOOR`` (1 %) of ``g``'s spread (its interquartile
  range / 1.349): the interaction as a share of what each of the two variables does, free of the
  units of ``f`` and ``x`` and of terms in other variables, while a variable ``g`` hardly depends
  on links with nothing. Pairs below ``threshold`` are not linked and
  the groups are the connected components of the rest. (Scaling by the largest score of the
  matrix, or by ``g``'s spread, let a large term in one variable hide a real interaction of two
  others: ``100*x1**2 + x2*x3``, ``100*x1 + x2*x3``.)
* **symmetry** of a group A (``f = F(h(x_A), x_B)``): the direction of the gradient in x_A does not
  depend on x_B; score ``median |d u_A / dx_b| * std(x_b)`` with ``u_A`` the unit vector of the
  gradient in x_A taken in standardised units (``df/dx_a * std(x_a)``). pykan's test multiplies by
  ``std(x_a)`` instead, and its score followed the units of the variables of A: the same function
  scored 100 times more with x_A given in units 10 times larger.
* :func:`tree`: the groupings from single variables up, level by level as pykan's
  ``get_molecule``: each level joins groups, in order, into molecules whose union is symmetric,
  and when a level joins nothing the rest is merged into one. Each merge is labelled ``"+"`` or
  ``"*"`` when ``f`` itself is a sum or a product across its parts (their cross scores below
  ``sep_threshold``), else ``"?"``. Below the top this is a statement about ``f``, not about the
  inner function: in ``x1*x2 + x3`` the merge of x1 and x2 is ``"?"`` (``f`` is neither a sum nor a
  product across them), and an inner ``h(x1) + h(x2)`` inside a nonlinear outer function is no
  different from ``exp(h(x1)) * exp(h(x2))``, so no test on ``f`` can tell "+" from "*" there.

Thresholds: ``SEPARABILITY_THRESHOLD = 1e-2`` (an interaction under 1 % of the weaker variable's
own effect is taken for round-off or fit error; pykan's ``score_th`` has the same value but is
absolute, in the units of ``f``) and ``SYMMETRY_THRESHOLD = 1e-3`` (pykan's ``sym_th``; the
symmetry score is a derivative of a unit vector times the spread of what it is taken along, free
of the units of ``f`` and ``x``). ``f`` must be finite on at least half the samples.

Derivatives are taken with autograd switched on, also inside ``torch.no_grad()`` or
``torch.inference_mode()``; ``f`` must compute its result from ``x`` with torch operations (a
result detached from ``x``, or a constant, is refused: it has no derivatives to test).
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kantk._validation import check_choice, check_number, is_int

SEPARABILITY_THRESHOLD = 1e-2
SYMMETRY_THRESHOLD = 1e-3
MODES = ("add", "mul")

Function = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _autograd() -> Iterator[None]:
    """Autograd on, also inside ``torch.no_grad()`` and ``torch.inference_mode()`` (where every
    derivative was silently 0, and every function read as separable and symmetric)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _values(f: Function, x: torch.Tensor) -> torch.Tensor:
    y = f(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the function must return a tensor, got {type(y).__name__}")
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (x.shape[0],):
        raise ValueError(f"the function must map (batch, n) to (batch,) or (batch, 1), got {tuple(y.shape)}")
    if not y.requires_grad:
        raise ValueError(
            "f(x) does not require grad: the tests need f's derivatives, so f must compute its result "
            "from x with torch operations (not detached, not a constant, no torch.no_grad() inside f)"
        )
    finite = int(torch.isfinite(y.detach()).sum())
    if 2 * finite < y.shape[0]:  # a NaN function scored 0 everywhere: "separable" and "symmetric"
        raise ValueError(
            f"f is NaN or infinite on {y.shape[0] - finite} of the {y.shape[0]} samples; the tests need "
            "a function that is finite on most of them (samples inside its domain)"
        )
    return y


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 3 or not x.is_floating_point():
        raise ValueError("x must be a float tensor of samples (batch >= 3, n)")
    if x.dtype not in (torch.float32, torch.float64):  # torch.quantile refused float16 deep inside
        raise ValueError(
            f"x must be float32 or float64 (second derivatives need the precision), got {x.dtype}; "
            "convert it and the function's model alike (x.double() and model.double())"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite: it holds NaN or inf (one such sample made every score 0)")


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` that autograd differentiates against (a normal tensor, also when ``x`` was
    made under inference mode); call inside :func:`_autograd`."""
    return x.detach().clone().requires_grad_(True)


def _check_threshold(name: str, value: float) -> float:
    return check_number(name, value, 0.0, finite=True)


def _derivative(
    out: torch.Tensor, xg: torch.Tensor, *, create_graph: bool = False, retain_graph: bool = False
) -> torch.Tensor:
    """d out / d xg, zeros where ``out`` does not depend on ``xg`` (a constant gradient, as of a
    function linear in its inputs, has no graph to differentiate again)."""
    if not out.requires_grad:
        return torch.zeros_like(xg)
    (d,) = torch.autograd.grad(
        out, xg, create_graph=create_graph, retain_graph=retain_graph or create_graph, allow_unused=True
    )
    return torch.zeros_like(xg) if d is None else d


def hessian_scores(f: Function, x: torch.Tensor, mode: str = "add") -> torch.Tensor:
    """(n, n) normalised interaction scores (see the module notes); ``mode="mul"`` uses ``log|f|``."""
    check_choice("mode", mode, MODES)
    _check_x(x)
    with _autograd():
        xg = _leaf(x)
        y = _values(f, xg)
        if mode == "mul":
            y = torch.log(y.abs())
        grad = _derivative(y.sum(), xg, create_graph=True)  # (batch, n); rows independent
        n = x.shape[1]
        columns = [_derivative(grad[:, k].sum(), xg, retain_graph=True) for k in range(n)]
        hess = torch.stack(columns, dim=2).detach()  # (batch, n, n)
        slopes = grad.detach()  # (batch, n)
        g = y.detach()
    std = x.detach().std(dim=0)
    if not bool((std > 0).any()):  # every score would be 0: "separable" said nothing
        raise ValueError(
            "x holds the same value in every row for every variable; the scores need samples that vary"
        )
    finite = torch.isfinite(hess).all(dim=(1, 2))
    if not finite.any():
        what = "log|f| (mode='mul')" if mode == "mul" else "f"
        raise ValueError(
            f"the second derivatives of {what} are not finite on any sample (f is 0 or not finite "
            "everywhere there?); give samples where f is finite and, for mode='mul', nonzero"
        )
    scores = (hess[finite].abs() * std[:, None] * std[None, :]).median(dim=0).values
    # each variable's own effect on g, median |dg/dx_a| * std(x_a); a pair's score is relative to
    # the weaker of its two: a large term in another variable (100*x1 + x2*x3) no longer hides it
    effect = (slopes[finite].abs() * std).median(dim=0).values  # (n,)
    # ... but no smaller than 1 % of g's own spread: a variable g hardly depends on (1e-4 * x4**2)
    # otherwise linked with every variable it touches, and a mostly-0 indicator scored inf
    floor = SPREAD_FLOOR * _spread(g[torch.isfinite(g)].to(scores.dtype))
    weaker = torch.minimum(effect[:, None], effect[None, :]).clamp_min(floor)
    relative = torch.where(weaker > 0, scores / weaker.clamp_min(1e-300), torch.inf)
    return torch.where(scores > 0, relative, torch.zeros_like(scores))


#: The smallest divisor of a pair's score, as a share of ``g``'s spread (see the module notes).
SPREAD_FLOOR = 1e-2


def _spread(g: torch.Tensor) -> float:
    """A robust spread of the values ``g``: the interquartile range / 1.349 (a normal
    distribution's standard deviation; a few samples near a zero of ``f`` make ``log|f|``'s
    standard deviation large), or the standard deviation where that is 0."""
    if g.numel() < 2:
        return 0.0
    q1, q3 = torch.quantile(g, torch.tensor([0.25, 0.75], dtype=g.dtype, device=g.device)).tolist()
    iqr = (q3 - q1) / 1.349
    return iqr if iqr > 0 else float(g.std())


@dataclass(frozen=True)
class Separability:
    """Result of :func:`separability`: ``groups`` (sorted lists of variable indices), whether there
    is more than one (``separable``), the score matrix and the threshold used."""

    groups: list[list[int]]
    separable: bool
    scores: torch.Tensor
    mode: str
    threshold: float


def _components(linked: torch.Tensor) -> list[list[int]]:
    n = linked.shape[0]
    seen: set[int] = set()
    groups = []
    for start in range(n):
        if start in seen:
            continue
        stack, group = [start], []
        seen.add(start)
        while stack:
            a = stack.pop()
            group.append(a)
            for b in range(n):
                if b not in seen and bool(linked[a, b]):
                    seen.add(b)
                    stack.append(b)
        groups.append(sorted(group))
    return groups


def separability(
    f: Function, x: torch.Tensor, mode: str = "add", threshold: float = SEPARABILITY_THRESHOLD
) -> Separability:
    """The finest groups of variables ``f`` separates into (``"add"``: a sum, ``"mul"``: a product)."""
    threshold = _check_threshold("threshold", threshold)
    scores = hessian_scores(f, x, mode)
    linked = scores >= threshold
    groups = _components(linked)
    return Separability(groups, len(groups) > 1, scores, mode, threshold)


def _index(value: Any) -> int | None:
    """``value`` as a Python int when it is an integer (numpy's and 0-dim torch integers
    included, as ``np.where`` gives them; not a bool), else None."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_variables(indices: Any, x: torch.Tensor, what: str) -> list[int]:
    """``indices`` as a list of Python ints when each is a variable (column) of ``x``; a one-line
    error otherwise."""
    n = x.shape[1]
    try:
        found = [_index(i) for i in indices] if not isinstance(indices, (str, bytes)) else [None]
    except TypeError:  # not iterable: a bare index where a list was expected
        found = [None]
    if not all(i is not None and 0 <= i < n for i in found):
        raise ValueError(f"{what} must list variable indices in [0, {n - 1}] (columns of x), got {indices!r}")
    return [int(i) for i in found if i is not None]


def _check_groups(groups: Any, x: torch.Tensor) -> list[list[int]]:
    """``groups`` (a list of lists of variable indices, none in two groups) as lists of ints."""
    if isinstance(groups, (str, bytes, torch.Tensor)) or not isinstance(groups, Sequence):
        raise ValueError(
            f"groups must be a list of lists of variable indices, e.g. [[0], [1, 2]], got {groups!r}"
        )
    out = []
    for group in groups:
        if _index(group) is not None:
            raise ValueError(
                f"groups must be a list of lists of variable indices, e.g. [[0], [1, 2]], got {groups!r}"
            )
        out.append(_check_variables(group, x, "groups"))
    flat = [i for g in out for i in g]
    if len(flat) != len(set(flat)):
        raise ValueError(f"groups must not share a variable, got {groups!r}")
    return out


def test_separability(
    f: Function,
    x: torch.Tensor,
    groups: Sequence[Sequence[int]],
    mode: str = "add",
    threshold: float = SEPARABILITY_THRESHOLD,
) -> bool:
    """Whether ``f`` separates (``mode``) across the given groups: every cross-group score is below
    ``threshold``. As in pykan, the variables in no group count as one more group: ``[[0]]`` asks
    whether x1 separates from the rest, and ``[[0], [1]]`` of three variables whether x1, x2 and x3
    separate."""
    _check_x(x)
    parts = _parts(_check_groups(groups, x), x.shape[1])
    if len(parts) < 2:  # [] or [[]] answered True for x1*x2: nothing was tested
        raise ValueError(
            f"groups must split the variables into at least two parts, e.g. [[0]] (x1 against the rest), "
            f"got {groups!r}"
        )
    threshold = _check_threshold("threshold", threshold)
    scores = hessian_scores(f, x, mode)
    return _separates(scores, parts, threshold)


def _parts(groups: list[list[int]], n: int) -> list[list[int]]:
    """The groups that name variables, and the variables in none of them as one more."""
    listed = {i for g in groups for i in g}
    rest = [k for k in range(n) if k not in listed]
    return [g for g in groups if g] + ([rest] if rest and listed else [])


def _separates(scores: torch.Tensor, parts: Sequence[Sequence[int]], threshold: float) -> bool:
    """Whether every score between two different ``parts`` is below ``threshold``."""
    return all(
        float(scores[i, j]) < threshold
        for a, pa in enumerate(parts)
        for pb in parts[a + 1 :]
        for i in pa
        for j in pb
    )


test_separability.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def symmetry_score(f: Function, x: torch.Tensor, group: Sequence[int]) -> float:
    """How much the gradient direction in ``group`` depends on the other variables (0: symmetric;
    also 0 for no variable or all of them, as pykan's ``test_symmetry`` says True there)."""
    _check_x(x)
    n = x.shape[1]
    group = sorted(set(_check_variables(group, x, "group")))
    others = [k for k in range(n) if k not in group]
    if not group or not others:
        return 0.0
    std = x.detach().std(dim=0)
    worst = 0.0
    with _autograd():
        xg = _leaf(x)
        grad = _derivative(_values(f, xg).sum(), xg, create_graph=True)
        g = grad[:, group] * std[group]  # in standardised units: a variable's units change nothing
        norm = g.norm(dim=1, keepdim=True)
        # a guard against 0 relative to the gradients' size, which carries f's units (an absolute
        # 1e-12 made f = 1e-9 * (x1 + x2)**2 * x3 asymmetric in x1, x2)
        size = norm.detach().max()
        unit = g / (norm + 1e-12 * torch.where(size > 0, size, torch.ones_like(size)))
        for k in range(len(group)):
            d = _derivative(unit[:, k].sum(), xg, retain_graph=True)
            dep = (d[:, others].abs() * std[others]).detach()  # unit: free of the group's units
            dep = dep[torch.isfinite(dep).all(dim=1)]
            if dep.numel():
                worst = max(worst, float(dep.median(dim=0).values.max()))
    return worst


def test_symmetry(
    f: Function, x: torch.Tensor, group: Sequence[int], threshold: float = SYMMETRY_THRESHOLD
) -> bool:
    """Whether ``f`` depends on the variables ``group`` only through one function of them."""
    threshold = _check_threshold("threshold", threshold)
    return symmetry_score(f, x, group) < threshold


test_symmetry.__test__ = False  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GroupingTree:
    """:func:`tree`'s result: ``levels`` of groupings (singletons first, all variables last) and,
    per merged group (a tuple of indices), how ``f`` combines its parts: ``"+"``, ``"*"`` or
    ``"?"`` (see the module notes)."""

    levels: list[list[list[int]]]
    operations: dict[tuple[int, ...], str]


def tree(
    f: Function,
    x: torch.Tensor,
    sym_threshold: float = SYMMETRY_THRESHOLD,
    sep_threshold: float = SEPARABILITY_THRESHOLD,
) -> GroupingTree:
    """The tree of variable groupings of ``f`` (pykan's ``tree()`` / ``get_molecule``).

    Level by level: the groups of the last level are taken in order, each starting a molecule that
    takes every later group whose union with it is symmetric (``symmetry_score`` below
    ``sym_threshold``; a union of all variables is left to the last merge). A level that joins
    nothing merges all its groups into one. ``f = ((x1 + x2)**2 + (x3 + x4)**2)**2`` gives
    ``[[0], [1], [2], [3]]``, ``[[0, 1], [2, 3]]``, ``[[0, 1, 2, 3]]``, as pykan's. Each merge is
    labelled by testing its parts for additive, then multiplicative separability of ``f``
    (cross-part scores below ``sep_threshold``; see the module notes for what this says below the
    top).
    """
    _check_x(x)
    sym_threshold = _check_threshold("sym_threshold", sym_threshold)
    sep_threshold = _check_threshold("sep_threshold", sep_threshold)
    n = x.shape[1]
    groups = [[k] for k in range(n)]
    levels = [[list(g) for g in groups]]
    operations: dict[tuple[int, ...], str] = {}
    add = hessian_scores(f, x, "add")
    mul = hessian_scores(f, x, "mul")

    def label(parts: list[list[int]]) -> str:
        for sym, scores in (("+", add), ("*", mul)):
            if _separates(scores, parts, sep_threshold):
                return sym
        return "?"

    while len(groups) > 1:
        left, molecules = list(groups), []
        while left:
            parts, rest = [left[0]], []
            for group in left[1:]:
                union = sorted([i for p in parts for i in p] + group)
                if len(union) < n and symmetry_score(f, x, union) < sym_threshold:
                    parts.append(group)
                else:
                    rest.append(group)
            molecules.append(parts)
            left = rest
        if len(molecules) == len(groups):  # nothing joined: the rest is one merge
            molecules = [groups]
        groups = []
        for parts in molecules:
            union = sorted(i for p in parts for i in p)
            if len(parts) > 1:
                operations[tuple(union)] = label(parts)
            groups.append(union)
        groups.sort()
        levels.append([list(g) for g in groups])
    return GroupingTree(levels, operations)


def feature_interaction(
    model: Any, x: torch.Tensor, layer: int, neuron_th: float = 1e-2, feature_th: float = 1e-2
) -> dict[tuple[int, ...], int]:
    """Which input features each node of node layer ``layer`` depends on (pykan's
    ``feature_interaction``): ``{features: number of nodes}``, counting nodes whose largest
    feature score exceeds ``neuron_th`` and listing features above ``feature_th`` times it.

    A node's feature scores are the attribution of the sub-model up to that node, with that node
    as the only output and its own importance (its score in :func:`kantk.attribution` of the
    whole model) as the output score, as pykan's ``attribute(l, i)``: a node the output does not
    use scores 0 and is not counted.
    """
    from kantk.attribution import attribution
    from kantk.model import KAN, KANLayers

    if not isinstance(model, KAN):
        raise TypeError(f"feature_interaction expects a kantk.KAN, got {type(model).__name__}")
    if not is_int(layer) or not 1 <= layer < len(model.widths):
        raise IndexError(f"layer must be a node layer in [1, {len(model.widths) - 1}], got {layer!r}")
    neuron_th = _check_threshold("neuron_th", neuron_th)  # NaN counted no node, or one with no feature
    feature_th = _check_threshold("feature_th", feature_th)
    sub = KAN.__new__(KAN)
    torch.nn.Module.__init__(sub)
    sub.widths = model.widths[: layer + 1]
    sub.layers = KANLayers(model.layers[:layer])
    importance = attribution(model, x).node_scores[layer].detach().to("cpu", x.dtype)
    found: dict[tuple[int, ...], int] = {}
    for node in range(model.widths[layer]):
        one_hot = torch.zeros(model.widths[layer], dtype=x.dtype)
        one_hot[node] = importance[node]
        score = attribution(sub, x, out_scores=one_hot).feature_scores
        top = float(score.max())
        if top > neuron_th:
            features = tuple(int(k) for k in torch.nonzero(score > top * feature_th).flatten())
            found[features] = found.get(features, 0) + 1
    return found


def plot_scores(result: Separability, ax: Any = None, path: str | os.PathLike[str] | None = None) -> Any:
    """Draw a score matrix (a heat map, log scale) into ``ax`` (new figure if ``None``); saved
    to ``path`` only if given. Returns the figure. A new figure is drawn without pyplot (matplotlib's
    backend is left as it is: it was switched to Agg, and a notebook's later figures stopped showing).
    """
    if not isinstance(result, Separability):
        raise TypeError(
            f"plot_scores draws a Separability (what kantk.hypothesis.separability returns), got "
            f"{type(result).__name__}"
        )
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.5, 3))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    scores = result.scores.clamp_min(1e-8).log10().cpu().numpy()
    # a variable's own curvature (the diagonal) can pass its effect: the scale reaches it
    image = ax.imshow(scores, vmin=-8, vmax=max(0.0, float(scores.max())), cmap="viridis")
    n = scores.shape[0]
    ax.set_xticks(range(n), [f"x{k + 1}" for k in range(n)])
    ax.set_yticks(range(n), [f"x{k + 1}" for k in range(n)])
    ax.set_title(f"log10 {result.mode} scores (threshold {result.threshold:g})", fontsize=8)
    fig.colorbar(image, ax=ax)
    if path is not None:
        fig.savefig(path)
    return fig
