"""Hypothesis tests on a function: separability, symmetry and the tree of variable groupings.

The function ``f`` is a :class:`kantk.KAN` or any differentiable callable mapping (batch, n)
tensors to (batch,) or (batch, 1) (pykan's ``kan.hypothesis``; to test data, fit a KAN first).
All tests look at derivatives on the samples ``x`` (use float64):

* **additive separability** between groups A and B (``f = g(x_A) + h(x_B)``): every mixed second
  derivative ``d2f / dx_a dx_b`` vanishes. **Multiplicative** (``f = g(x_A) * h(x_B)``): the same
  for ``log|f|``. ``exp(sin(pi x1) + x2^2)`` is multiplicatively separable (additive inside exp).
  The score of a pair is ``median |d2 g / dx_a dx_b| * std(x_a) * std(x_b)`` over the samples
  (the median ignores the few samples near a zero of ``f``), divided by the largest score of the
  matrix, diagonal included; pairs below ``threshold`` are not linked and the groups are the
  connected components of the rest.
* **symmetry** of a group A (``f = F(h(x_A), x_B)``): the direction of the gradient in x_A does not
  depend on x_B; score ``median |d (grad_A f / |grad_A f|) / dx_b| * std`` (pykan's test).
* :func:`tree`: the groupings from single variables up, merging two groups whenever their union
  is symmetric (pykan's ``get_molecule``), each merge labelled ``"+"``, ``"*"`` or ``"?"``.

Thresholds: ``SEPARABILITY_THRESHOLD = 1e-2`` (relative to the strongest curvature: an
interaction under 1 % of it is taken for round-off or fit error, pykan's ``score_th``) and
``SYMMETRY_THRESHOLD = 1e-3`` (pykan's ``sym_th``; the symmetry score is a derivative of a unit
vector, already scale-free).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kantk._validation import check_choice, is_int

SEPARABILITY_THRESHOLD = 1e-2
SYMMETRY_THRESHOLD = 1e-3
MODES = ("add", "mul")

Function = Callable[[torch.Tensor], torch.Tensor]


def _values(f: Function, x: torch.Tensor) -> torch.Tensor:
    y = f(x)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (x.shape[0],):
        raise ValueError(f"the function must map (batch, n) to (batch,) or (batch, 1), got {tuple(y.shape)}")
    return y


def _check_x(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 3 or not x.is_floating_point():
        raise ValueError("x must be a float tensor of samples (batch >= 3, n)")
    return x.detach().clone().requires_grad_(True)


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
    xg = _check_x(x)
    y = _values(f, xg)
    if mode == "mul":
        y = torch.log(y.abs())
    grad = _derivative(y.sum(), xg, create_graph=True)  # (batch, n); rows independent
    n = x.shape[1]
    columns = [_derivative(grad[:, k].sum(), xg, retain_graph=True) for k in range(n)]
    hess = torch.stack(columns, dim=2).detach()  # (batch, n, n)
    std = x.std(dim=0)
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
    top = scores.max()
    return scores / top if top > 0 else torch.zeros_like(scores)


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
    scores = hessian_scores(f, x, mode)
    linked = scores >= threshold
    groups = _components(linked)
    return Separability(groups, len(groups) > 1, scores, mode, threshold)


def _check_variables(indices: Sequence[int], x: torch.Tensor, what: str) -> Sequence[int]:
    """``indices`` when each is a variable (column) of ``x``; a one-line error otherwise."""
    n = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 2 else 0
    if isinstance(indices, (str, bytes)) or not all(is_int(i) and 0 <= i < n for i in indices):
        raise ValueError(f"{what} must list variable indices in [0, {n - 1}] (columns of x), got {indices!r}")
    return indices


def test_separability(
    f: Function,
    x: torch.Tensor,
    groups: Sequence[Sequence[int]],
    mode: str = "add",
    threshold: float = SEPARABILITY_THRESHOLD,
) -> bool:
    """Whether ``f`` separates (``mode``) across the given groups: every cross-group score is below
    ``threshold``."""
    for group in groups:
        _check_variables(group, x, "groups")
    scores = hessian_scores(f, x, mode)
    for a, ga in enumerate(groups):
        for gb in groups[a + 1 :]:
            if any(float(scores[i, j]) >= threshold for i in ga for j in gb):
                return False
    return True


test_separability.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def symmetry_score(f: Function, x: torch.Tensor, group: Sequence[int]) -> float:
    """How much the gradient direction in ``group`` depends on the other variables (0: symmetric)."""
    n = x.shape[1]
    group = sorted(set(_check_variables(group, x, "group")))
    others = [k for k in range(n) if k not in group]
    if not group or not others:
        return 0.0
    xg = _check_x(x)
    grad = _derivative(_values(f, xg).sum(), xg, create_graph=True)
    g = grad[:, group]
    unit = g / (g.norm(dim=1, keepdim=True) + 1e-12)
    std = x.std(dim=0)
    worst = 0.0
    for k in range(len(group)):
        d = _derivative(unit[:, k].sum(), xg, retain_graph=True)
        dep = (d[:, others].abs() * std[group[k]] * std[others]).detach()
        dep = dep[torch.isfinite(dep).all(dim=1)]
        if dep.numel():
            worst = max(worst, float(dep.median(dim=0).values.max()))
    return worst


def test_symmetry(
    f: Function, x: torch.Tensor, group: Sequence[int], threshold: float = SYMMETRY_THRESHOLD
) -> bool:
    """Whether ``f`` depends on the variables ``group`` only through one function of them."""
    return symmetry_score(f, x, group) < threshold


test_symmetry.__test__ = False  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GroupingTree:
    """:func:`tree`'s result: ``levels`` of groupings (singletons first, all variables last) and,
    per merged group (a tuple of indices), how its parts combine: ``"+"``, ``"*"`` or ``"?"``."""

    levels: list[list[list[int]]]
    operations: dict[tuple[int, ...], str]


def tree(
    f: Function,
    x: torch.Tensor,
    sym_threshold: float = SYMMETRY_THRESHOLD,
    sep_threshold: float = SEPARABILITY_THRESHOLD,
) -> GroupingTree:
    """The tree of variable groupings of ``f`` (pykan's ``tree()`` / ``get_molecule``).

    Greedy: at each level the pair of groups whose union has the lowest symmetry score is merged
    if that score is below ``sym_threshold``; when no union is symmetric every group is merged
    into one. Each merge is labelled by testing its parts for additive, then multiplicative
    separability (cross-part scores below ``sep_threshold``).
    """
    n = x.shape[1]
    groups = [[k] for k in range(n)]
    levels = [[list(g) for g in groups]]
    operations: dict[tuple[int, ...], str] = {}
    add = hessian_scores(f, x, "add")
    mul = hessian_scores(f, x, "mul")

    def label(parts: list[list[int]]) -> str:
        for sym, scores in (("+", add), ("*", mul)):
            if all(
                float(scores[i, j]) < sep_threshold
                for a, pa in enumerate(parts)
                for pb in parts[a + 1 :]
                for i in pa
                for j in pb
            ):
                return sym
        return "?"

    while len(groups) > 1:
        best = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                union = sorted(groups[a] + groups[b])
                if len(union) == n:
                    continue
                score = symmetry_score(f, x, union)
                if score < sym_threshold and (best is None or score < best[0]):
                    best = (score, a, b)
        if best is None:
            operations[tuple(range(n))] = label(groups)
            groups = [list(range(n))]
        else:
            _, a, b = best
            union = sorted(groups[a] + groups[b])
            operations[tuple(union)] = label([groups[a], groups[b]])
            groups = [g for k, g in enumerate(groups) if k not in (a, b)] + [union]
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
    to ``path`` only if given. Returns the figure."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.5, 3))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    scores = result.scores.clamp_min(1e-8).log10().cpu().numpy()
    image = ax.imshow(scores, vmin=-8, vmax=0, cmap="viridis")
    n = scores.shape[0]
    ax.set_xticks(range(n), [f"x{k + 1}" for k in range(n)])
    ax.set_yticks(range(n), [f"x{k + 1}" for k in range(n)])
    ax.set_title(f"log10 {result.mode} scores (threshold {result.threshold:g})", fontsize=8)
    fig.colorbar(image, ax=ax)
    if path is not None:
        fig.savefig(path)
    return fig
