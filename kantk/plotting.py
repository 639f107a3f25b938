"""``kantk.plot_activations``: the network drawn layer by layer, every edge's function in a box.

One matplotlib :class:`~matplotlib.figure.Figure` built without pyplot (no global state, no
window, no files unless ``path=`` is given): inputs at the bottom, outputs at the top; between two
node layers, one small box per live edge holding that edge's function over the range its input
takes on the data, connected to the two nodes it joins. Opacity follows the edge's attribution
score (normalised per layer), so a sparsified network reads at a glance. A node with an operation
(a product node, ``×``) is drawn as a circle with its symbol; its sub-nodes are points just below
it, where the boxes of their incoming edges connect.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kantk._pykan import PLOT_NAMES, pykan_names
from kantk._validation import check_index, check_int, check_number, formula_names
from kantk.attribution import Attribution, attribution, check_samples
from kantk.export import MIN_ALPHA, NODE_SYMBOLS
from kantk.model import KAN
from kantk.pruners import connected_masks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: gid prefixes of the artists, for tests and for users restyling a figure.
EDGE_GID = "kantk-edge"  # one Line2D per live edge: f"{EDGE_GID}/{layer}/{i}/{j}" (input i, output j)
NODE_GID = "kantk-nodes"  # one PathCollection per node layer: f"{NODE_GID}/{layer}"
LABEL_GID = "kantk-edge-label"  # one Text per labelled edge

_BOX_HEIGHT = 0.36  # in node-layer units: node layers are 1 apart, boxes sit halfway


def default_figsize(widths: Sequence[Any]) -> tuple[float, float]:
    """(width, height) in inches of :func:`plot_activations`' figure for a model of ``widths``
    (``model.widths``): grows with the widest layer's edges (up to 40 in) and with the depth."""
    slots = max(a * b for a, b in itertools.pairwise(widths))
    return (min(40.0, max(4.0, 0.5 * slots)), 1.8 * (len(widths) - 1) + 0.8)


@pykan_names(PLOT_NAMES)
@torch.no_grad()
def plot_activations(
    model: KAN,
    x: torch.Tensor,
    in_vars: Sequence[str] | None = None,
    out_vars: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    scores: Attribution | None = None,
    n_points: int = 100,
    min_alpha: float = MIN_ALPHA,
    edge_labels: Mapping[tuple[int, int, int], str] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Draw ``model`` with every live edge's function (pykan's ``model.plot()``, in one figure).

    Edge ``p -> q`` of layer ``l`` is drawn as ``phi_{q,p}(t)`` for ``n_points`` values of ``t``
    evenly spaced between the smallest and largest value its input ``p`` takes on ``x``; each
    curve is scaled to fill its box (the box shows the shape; the opacity shows the importance).
    Masked (pruned) edges are not drawn; symbolic edges are. Points where an edge is NaN (outside
    its function's domain) are gaps in its curve, and an edge whose score is NaN is drawn fully.

    Edges fixed to a symbolic function are labelled with its name (see
    :func:`symbolic_edge_labels`); ``edge_labels`` adds or overrides labels by ``(layer, i, j)``
    (input node ``i`` to output node ``j``, the order of :func:`kantk.fix_symbolic`), e.g. with full
    formulas.

    Args:
        model: The KAN to draw (unchanged).
        x: (batch, widths[0]) samples that set every edge's input range and its importance
            (batch >= 2), in the model's dtype.
        in_vars: One name per input, written under the input nodes (default: the data's header
            names the model records, :meth:`kantk.KAN.input_names`, else ``x_1, x_2, ...``);
            matplotlib mathtext such as ``"$x_1$"`` works.
        out_vars: One name per output, written above the output nodes (default ``y_1, ...``).
        path: When given, the figure is also saved there, exactly (format from the suffix, which
            must be an image format matplotlib writes: ``.png``, ``.svg``, ``.pdf``, ...); nothing
            is written otherwise.
        scores: The attribution to use for the opacities (default: computed on ``x``).
        n_points: Points per curve (>= 2).
        min_alpha: Opacity of the least important live edge, in [0, 1] (0 hides dead edges).
        edge_labels: ``{(layer, i, j): text}`` labels drawn next to those edges' boxes (``j`` a
            sub-node index where the layer feeds product nodes).
        title: Figure title.
        figsize: (width, height) in inches; default grows with the widest layer and the depth.
        dpi: Resolution of the figure (and of the saved file).

    Returns:
        The :class:`~matplotlib.figure.Figure` (Agg canvas). Its artists carry gids: each edge
        curve is a ``Line2D`` with gid ``"kantk-edge/<layer>/<i>/<j>"`` (input node ``i``, output
        node ``j``).

    Raises:
        TypeError, ValueError: A bad model, samples, variable names or option (the message says
            what is accepted).
        IndexError: An ``edge_labels`` key naming no edge of the model.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.plot_activations expects a kantk.KAN, got {type(model).__name__}")
    x = check_samples(model, x, "kantk.plot_activations")
    columns = model.input_columns
    recorded = formula_names(model.column_names)
    if in_vars is None and recorded is not None:
        in_vars = [plain_text(name) for name in recorded]  # the data's header names, as written
    in_vars = _names(
        in_vars, model.widths[0], "in_vars", "x", None if columns is None else [c + 1 for c in columns]
    )
    out_vars = _names(out_vars, model.widths[-1], "out_vars", "y")
    check_int("n_points", n_points, 2)
    check_number("min_alpha", min_alpha, 0, maximum=1)
    check_number("dpi", dpi, 0, strict=True, finite=True)
    if path is not None and image_format(path) is None:  # matplotlib would add ".png" to it
        raise ValueError(
            f"path {os.fspath(path)!r} needs an image suffix, one of: {', '.join(image_formats())}"
        )
    if scores is None:
        scores = attribution(model, x)
    elif not isinstance(scores, Attribution) or scores.widths != model.widths:
        raise ValueError(f"scores must be a kantk.Attribution of this model (widths {model.widths})")
    labels = dict(symbolic_edge_labels(model))
    labels.update(_check_edge_labels(model, edge_labels))

    widths = model.widths
    depth = len(model.layers)
    if figsize is None:
        figsize = default_figsize(widths)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # on first use (docs/architecture.md)
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.92 if title else 0.96))
    ax.set_axis_off()
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-0.3, depth + 0.3)
    if title:
        fig.suptitle(title)

    node_x = [(np.arange(w) + 0.5) / w for w in widths]  # node i of layer l at (node_x[l][i], l)
    # where each layer's outputs end: the node, or (product nodes) a sub-node point just below it
    ends = [_output_ends(layer, node_x[l + 1], l + 1) for l, layer in enumerate(model.layers)]
    xs = model.layer_inputs(x)
    live_edges = connected_masks(model)  # numeric or symbolic, on a path to an output
    for l, layer in enumerate(model.layers):
        n_in, n_out = layer.in_features, layer.out_features
        lo = xs[l].min(dim=0).values
        hi = xs[l].max(dim=0).values
        t = torch.linspace(0.0, 1.0, n_points, dtype=x.dtype, device=x.device)
        t_np = t.cpu().numpy()
        grid = lo + (hi - lo) * t.unsqueeze(-1)  # (n_points, in): column p spans input p's range
        curves = layer.activations(grid).cpu().numpy()  # (n_points, out, in)
        live = live_edges[l].cpu().numpy()
        score = scores.edge_scores[l].cpu().numpy()
        # over the finite scores: one NaN edge (a sqrt edge sampled below 0) faded the whole layer;
        # an edge whose score is NaN is drawn fully (its importance is unknown, not small)
        finite = live & np.isfinite(score)
        top = float(score[finite].max()) if finite.any() else 0.0
        importance = score / top if top > 0 else np.where(np.isfinite(score), 0.0, np.nan)
        importance = np.where(np.isnan(importance), 1.0, importance)
        n_slots = n_in * n_out
        box_w = min(0.8 / n_slots, 0.12)
        box_y = l + 0.5 - _BOX_HEIGHT / 2
        segments, colors, boxes = [], [], []
        for p in range(n_in):
            for q in range(n_out):
                if not live[q, p]:
                    continue
                alpha = float(min_alpha + (1.0 - min_alpha) * np.clip(importance[q, p], 0.0, 1.0))
                cx = (p * n_out + q + 0.5) / n_slots
                left = cx - box_w / 2
                y = curves[:, q, p]
                # NaN points (outside the function's domain) are gaps in the curve, not a reason to
                # draw it flat: a sqrt edge on [-1, 1] looked constant
                real = np.isfinite(y)
                low = float(y[real].min()) if real.any() else 0.0
                span = float(y[real].max()) - low if real.any() else 0.0
                size = float(np.abs(y[real]).max()) if real.any() else 0.0
                v = (y - low) / span if span > 1e-12 * max(1.0, size) else np.where(real, 0.5, np.nan)
                ax.plot(
                    left + box_w * t_np,
                    box_y + _BOX_HEIGHT * (0.1 + 0.8 * v),
                    color="black",
                    alpha=alpha,
                    linewidth=1.0,
                    gid=f"{EDGE_GID}/{l}/{p}/{q}",
                )
                rgba = (0.0, 0.0, 0.0, alpha)
                boxes.append(
                    Rectangle(
                        (left, box_y), box_w, _BOX_HEIGHT, facecolor="none", edgecolor=rgba, linewidth=0.5
                    )
                )
                segments += [
                    [(node_x[l][p], l), (cx, box_y)],
                    [(cx, box_y + _BOX_HEIGHT), ends[l][q]],
                ]
                colors += [rgba, rgba]
                if (l, p, q) in labels:
                    ax.text(
                        cx,
                        box_y + _BOX_HEIGHT,
                        str(labels[(l, p, q)]),
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="tab:red",
                        gid=f"{LABEL_GID}/{l}/{p}/{q}",
                    )
        if segments:
            ax.add_collection(
                LineCollection(segments, colors=colors, linewidths=0.6, gid=f"kantk-connectors/{l}")
            )
            ax.add_collection(PatchCollection(boxes, match_original=True, gid=f"kantk-boxes/{l}"))
    # hidden nodes with no edge on a path to an output are left out (as in kantk.to_networkx)
    shown = [np.ones(w, dtype=bool) for w in widths]
    for l in range(1, len(widths) - 1):
        shown[l] = live_edges[l].any(dim=0).cpu().numpy()
    for l in range(len(widths)):
        ax.scatter(
            node_x[l][shown[l]],
            np.full(int(shown[l].sum()), float(l)),
            s=30,
            color="black",
            zorder=3,
            gid=f"{NODE_GID}/{l}",
        )
    for l, layer in enumerate(model.layers):
        if layer.nodes is not None:
            _draw_node_operations(ax, layer.nodes, node_x[l + 1], l + 1, ends[l], shown[l + 1])
    for i, name in enumerate(in_vars):
        ax.text(node_x[0][i], -0.08, name, ha="center", va="top", fontsize=10)
    for i, name in enumerate(out_vars):
        ax.text(node_x[-1][i], depth + 0.08, name, ha="center", va="bottom", fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


#: What makes a saved figure differ between two runs of the same drawing, per format: the date of
#: svg and pdf, set to none; svg's clip-path ids come from ``svg.hashsalt``, fixed in
#: :func:`save_figure`. (ps and eps keep their date unless ``SOURCE_DATE_EPOCH`` is set, and svgz
#: its gzip time: matplotlib offers no setting for them.)
_UNDATED = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_figure(
    fig: Figure, path: str | os.PathLike[str], format: str | None = None, dpi: float | None = None
) -> None:
    """Save ``fig`` as :func:`plot_activations` and ``kantk plot`` do: cropped to what is drawn,
    and byte for byte the same for the same drawing in svg, pdf and the bitmap formats (no date,
    fixed svg ids), so that figures kept under version control change only when the figure does
    (two runs' svg and pdf differed).

    Args:
        format: The image format (default: ``path``'s suffix).
        dpi: Pixels per inch (default: matplotlib's ``savefig.dpi``, the figure's unless set).
    """
    import matplotlib

    fmt = format or image_format(path) or "png"
    metadata = _UNDATED.get(fmt)
    with matplotlib.rc_context({"svg.hashsalt": "kantk"}):
        fig.savefig(os.fspath(path), format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)


def plain_text(name: str) -> str:
    """``name`` drawn as it is written: its ``$`` signs escaped, so that matplotlib does not read
    mathtext between them (a CSV header ``price $ (US$)`` lost both, and ``a$^$b`` failed to draw)."""
    return name.replace("$", r"\$")


def image_formats() -> list[str]:
    """The image formats a figure can be saved in (``png``, ``svg``, ``pdf``, ...), sorted."""
    from matplotlib.figure import Figure

    return sorted(Figure().canvas.get_supported_filetypes())


def image_format(path: str | os.PathLike[str]) -> str | None:
    """The image format ``path``'s suffix names (``"png"`` for ``a.PNG``), or None."""
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    return suffix if suffix in image_formats() else None


#: How far below its node a sub-node point sits (node layers are 1 apart).
_SUBNODE_DROP = 0.12


def _output_ends(layer: Any, node_x: Any, y: float) -> list[tuple[float, float]]:
    """Where the connector of each output (sub-node) of ``layer`` ends: its node, or for a node
    with an operation, one of the node's sub-node points, spread just below it."""
    layout = layer.nodes
    if layout is None:
        return [(float(v), y) for v in node_x]
    spread = 0.3 / max(len(node_x), 1)
    ends = []
    for j, (op, arity) in enumerate(zip(layout.ops, layout.arities)):
        if op == "sum":
            ends.append((float(node_x[j]), y))
            continue
        for k in range(arity):
            offset = (k - (arity - 1) / 2) * spread / max(arity, 1)
            ends.append((float(node_x[j]) + offset, y - _SUBNODE_DROP))
    return ends


def _draw_node_operations(ax: Any, layout: Any, node_x: Any, y: float, ends: Any, shown: Any) -> None:
    """Sub-node points joined to their node, and the operation's symbol on the node (nodes
    ``shown`` only)."""
    from matplotlib.collections import LineCollection

    segments = []
    for j, op in enumerate(layout.ops):
        if op == "sum" or not shown[j]:
            continue
        for q in layout.subnodes(j):
            segments.append([ends[q], (float(node_x[j]), y)])
        ax.scatter(
            [float(node_x[j])],
            [y],
            s=140,
            facecolor="white",
            edgecolor="black",
            zorder=4,
            gid=f"{NODE_GID}-op/{y:g}/{j}",
        )
        ax.text(
            float(node_x[j]),
            y,
            NODE_SYMBOLS.get(op, op),
            ha="center",
            va="center",
            fontsize=8,
            zorder=5,
            gid=f"kantk-node-op/{y:g}/{j}",
        )
    if segments:
        ax.add_collection(
            LineCollection(segments, colors="black", linewidths=0.6, gid=f"kantk-subnodes/{y:g}")
        )
        points = np.array([p for seg in segments for p in seg[:1]])
        ax.scatter(
            points[:, 0], points[:, 1], s=6, color="black", zorder=3, gid=f"kantk-subnode-points/{y:g}"
        )


def symbolic_edge_labels(model: KAN) -> dict[tuple[int, int, int], str]:
    """Labels ``{(layer, i, j): function name}`` of the edges fixed to a symbolic function.

    Reads each layer's symbolic edges (``KANLayer.symbolic_edges()`` and ``symbolic_names``, set
    by :func:`kantk.fix_symbolic`); layers without symbolic edges contribute nothing. The label
    is the function's name (``"sin"``, ``"x^2"``), short enough for a box; a constant edge (the
    function ``"0"``, so the edge is its added constant ``d``) shows ``d`` to 3 significant digits,
    as the diagram does (labelled ``0``, a factor -0.193 into a product node read as a zero
    factor); an edge whose numeric branch is on too (both add up) reads ``sin + numeric``, as in
    the diagram (the curve is their sum); pass ``edge_labels`` to :func:`plot_activations` for full formulas.
    """
    labels: dict[tuple[int, int, int], str] = {}
    for l, layer in enumerate(model.layers):
        for q, p in layer.symbolic_edges():
            name = str(layer.symbolic_names[q][p])
            if name == "0":  # built-in names win clashes: always the constant function
                name = f"{float(layer.symbolic_affine[q, p, 3]):.3g}"  # -0.193, 2, 1.23e+20, nan
            if float(layer.mask[q, p]) != 0:  # its numeric branch is on too, as the diagram says
                name += " + numeric"
            labels[(l, p, q)] = name
    return labels


def _check_edge_labels(
    model: KAN, edge_labels: Mapping[tuple[int, int, int], str] | None
) -> dict[tuple[int, int, int], str]:
    """``edge_labels`` when every key names an edge ``(layer, i, j)`` of ``model``."""
    for key in edge_labels or {}:
        if not (isinstance(key, tuple) and len(key) == 3):
            raise ValueError(f"edge_labels keys must be (layer, i, j) tuples, got {key!r}")
        l, i, j = key
        check_index("edge_labels: layer", l, len(model.layers), where=f" for KAN{model.widths}")
        layer = model.layers[l]
        check_index(f"edge_labels {key}: i (input node of layer {l})", i, layer.in_features)
        out = "node" if layer.nodes is None else "sub-node"
        check_index(f"edge_labels {key}: j (output {out} of layer {l})", j, layer.out_features)
    return dict(edge_labels or {})


def _names(
    names: Sequence[str] | None, n: int, what: str, prefix: str, numbers: Sequence[int] | None = None
) -> list[str]:
    if names is None:  # numbers: the default names' subscripts (1 .. n, or the kept data columns)
        return [f"${prefix}_{{{i}}}$" for i in (numbers or range(1, n + 1))]
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or len(names) != n:
        raise ValueError(
            f"{what} must be a list of {n} names (one per {'input' if prefix == 'x' else 'output'}), got "
            f"{names!r}"
        )
    return [str(name) for name in names]
