"""Export a (pruned, symbolic) KAN as a graph: networkx for analysis, graphviz for diagrams.

Nodes are the neurons ``(layer, index)`` (layer 0 = inputs); edges are the live KAN edges
(numeric edges not masked, and symbolic ones). Pruned edges and removed nodes are absent. A node
with an operation other than a sum (a product node) has one extra vertex per sub-node,
``(layer, index, k)``, where its incoming KAN edges end, joined to the node by an edge of kind
``"node_operation"``.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kantk._validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    import torch

    from kantk.layer import KANLayer
    from kantk.model import KAN

#: Formats :func:`render_graph` (and ``kantk export``) can write.
RENDER_FORMATS = ("svg", "png", "pdf")

#: Formats :func:`export_graph` writes: the rendered ones, the DOT source and networkx JSON.
EXPORT_FORMATS = (*RENDER_FORMATS, "dot", "json")

INSTALL_GRAPHVIZ = (
    "the graphviz program 'dot' was not found on PATH; install Graphviz "
    "(Debian/Ubuntu: 'apt-get install graphviz'; macOS: 'brew install graphviz'; "
    "conda: 'conda install graphviz'). The DOT source can still be written without it: "
    "dot.save(path) or 'kantk export MODEL --format dot'"
)


class GraphvizNotFoundError(RuntimeError):
    """The system ``dot`` program that renders graphviz diagrams is missing."""


class GraphvizRenderError(RuntimeError):
    """Graphviz's ``dot`` ran but could not render the diagram (its message is included)."""


def _edge_expression(layer: KANLayer, q: int, p: int, digits: int) -> Any:
    """The sympy expression ``c * f(a * x + b) + d`` of symbolic edge ``p -> q`` of ``layer`` (the
    layer's ``[out, in]`` order), constants rounded to ``digits`` decimals; None for a numeric edge.
    """
    if not layer.has_symbolic or float(layer.symbolic_mask[q, p]) == 0:
        return None
    fn = layer.symbolic_function(q, p)
    if fn is None:
        return None
    import sympy
    import torch

    from kantk.symbolic.formula import _edge_term

    params = layer.symbolic_affine[q, p].detach().to("cpu", torch.float64).tolist()
    return _round_floats(_edge_term(fn, params, sympy.Symbol("x")), digits)


def _sstr(expr: Any) -> str:
    """``str(expr)`` with short floats: a bare constant printed all 15 digits ("-0.193000000000000")."""
    import sympy

    return sympy.sstr(expr, full_prec=False)


def _expression_text(expression: Any, digits: int = 3) -> str:
    """A symbolic edge's ``expression`` attribute as short math for its label.

    The graph may come from a JSON file (``kantk export --format json``, ``nx.node_link_graph``):
    the text is read by :func:`kantk.parse_formula` (never ``sympify``, which evaluates Python);
    text it does not read is shown as it is.
    """
    from kantk.formula_parser import FormulaError, parse_formula

    text = str(expression)
    try:
        # rounded again: the parser reads 2.5e+9 back as a float that prints 2500000000.0
        return short_math(_round_floats(parse_formula(text, ["x"], allow_comparison=False), digits))
    except FormulaError:
        return text


def _round_floats(expr: Any, digits: int) -> Any:
    """Round every float constant to ``digits`` significant digits for display (whole numbers
    become ints). Significant, not decimal: ``2.83e-5*x + 0.0112`` stays a slope (to 3 decimals it
    read ``0.011``, a constant, beside a picture of a sloped line)."""
    import sympy

    def rounded(f: Any) -> Any:
        v = float(f"{float(f):.{max(digits, 1)}g}")
        if not math.isfinite(v) or v == 0:
            return sympy.Float(v, 15)
        if abs(v) >= 1e6:  # 2.0e+9, not 2000000000 (whole) nor 28 digits of float noise
            return sympy.Float(v, max(digits, 1))
        return sympy.Integer(int(v)) if v == int(v) else sympy.Float(v, 15)

    # added constants at round-off size next to the others in the same sum (sin(3.14x + 1.7e-17),
    # 20.1exp(2.65x) - 2.7e-17) go: 3 decimals dropped them. Factors stay, however small
    # (4.57e-5*exp(9x)); so does any constant beside a sum's own terms, whatever multiplies the sum
    # (the shift of sin(2x + 1.5) next to a factor 2e9 went), and any constant over ROUND_OFF_MAX.
    def without_tiny_terms(add: Any) -> Any:
        # the sum's constants and its terms' coefficients (x + 6.78e-18: x's is 1)
        numbers = [*add.atoms(sympy.Float), *(a.as_coeff_Mul()[0] for a in add.args)]
        sizes = [abs(float(f)) for f in numbers if f.is_real and math.isfinite(float(f))]
        tiny = min(ROUND_OFF * max(sizes, default=0.0), ROUND_OFF_MAX)
        kept = [a for a in add.args if not (a.is_Float and abs(float(a)) <= tiny)]
        return sympy.Add(*kept) if len(kept) < len(add.args) else add

    expr = expr.replace(lambda e: e.is_Add, without_tiny_terms)
    return expr.xreplace({f: rounded(f) for f in expr.atoms(sympy.Float)})


#: An added constant at most this times the largest constant of its sum is round-off (dropped
#: from a label), if it is also at most ROUND_OFF_MAX: float noise is ~1e-16 of a value.
ROUND_OFF = 1e-9
ROUND_OFF_MAX = 1e-6


def to_networkx(
    model: KAN,
    x: torch.Tensor | None = None,
    var_names: Sequence[str] | None = None,
    out_names: Sequence[str] | None = None,
    digits: int = 3,
) -> Any:
    """The live network as a ``networkx.DiGraph``.

    Nodes ``(layer, index)`` carry ``layer``, ``index``, ``label`` (variable names on inputs and
    outputs), ``op`` (the node operation: ``"sum"``, ``"mult"``, ...) and, with ``x``,
    ``importance`` (attribution node score). Edges ``(l, p) -> (l+1, q)`` carry ``layer``,
    ``importance`` (with ``x``), ``basis`` (the layer's basis name), ``kind`` (``"numeric"`` or
    ``"symbolic"``) and, for symbolic edges, ``function``, ``expression`` (str, constants rounded
    to ``digits``) and ``params`` (a, b, c, d); a symbolic edge whose numeric branch is on too
    (both then add up) also has ``also_numeric=True``, and its label reads ``... + numeric``.
    Graph attributes: ``widths``.

    Product nodes (any operation but a sum): the KAN edges into node ``(l+1, j)`` end in its
    sub-node vertices ``(l+1, j, k)`` (attributes ``layer``, ``index`` = j, ``subnode`` = the
    layer's output row, ``label``, ``op="subnode"``), and carry ``subnode`` (the row ``q`` of
    edge ``p -> q``); an edge ``(l+1, j, k) -> (l+1, j)`` of ``kind="node_operation"`` and ``op``
    joins each sub-node to its node.
    Every attribute is JSON-serialisable, so ``nx.node_link_data`` round-trips through JSON.

    Args:
        model: The KAN (left unchanged).
        x: (batch, widths[0]) samples for importances; optional.
        var_names: Names of the inputs (default ``model.input_names()``: the data's header names
            the model records, else ``x1 .. xn``).
        out_names: Names of the outputs (default ``y1 .. ym``).
        digits: Significant digits of the constants in symbolic edge expressions (at least 1).
    """
    import networkx as nx

    from kantk.model import KAN

    if not isinstance(model, KAN):
        raise TypeError(f"to_networkx expects a kantk.KAN, got {type(model).__name__}")
    check_int("digits", digits, 1)
    names = model.input_names() if var_names is None else var_names
    in_labels = _names(names, model.widths[0], "var_names", "x")
    out_labels = _names(out_names, model.widths[-1], "out_names", "y")
    scores = None
    if x is not None:
        from kantk.attribution import attribution

        scores = attribution(model, x)

    graph = nx.DiGraph(widths=list(model.widths))
    for l, width in enumerate(model.widths):
        for i in range(width):
            if l == 0:
                label = in_labels[i]
            elif l == len(model.widths) - 1:
                label = out_labels[i]
            else:
                label = f"h{l}.{i + 1}"
            attrs: dict[str, Any] = {"layer": l, "index": i, "label": label, "op": "sum"}
            if scores is not None:
                attrs["importance"] = float(scores.node_scores[l][i])
            graph.add_node((l, i), **attrs)
    ends: list[list[tuple[int, ...]]] = []  # per layer: the vertex each output (sub-node) ends in
    for l, layer in enumerate(model.layers):
        layout = layer.nodes
        if layout is None:
            ends.append([(l + 1, q) for q in range(layer.out_features)])
            continue
        targets: list[tuple[int, ...]] = []
        for j, op in enumerate(layout.ops):
            graph.nodes[(l + 1, j)]["op"] = op
            for k, q in enumerate(layout.subnodes(j)):
                if op == "sum":
                    targets.append((l + 1, j))
                    continue
                sub = (l + 1, j, k)
                label = f"{graph.nodes[(l + 1, j)]['label']}.{k + 1}"
                graph.add_node(sub, layer=l + 1, index=j, subnode=q, label=label, op="subnode")
                graph.add_edge(sub, (l + 1, j), layer=l, kind="node_operation", op=op)
                targets.append(sub)
        ends.append(targets)
    from kantk.pruners import connected_masks

    # the live edges on a path to an output (a product node whose output edge was masked, and the
    # edges into it, are not part of the network), as kantk.plot_activations draws them
    for l, (layer, connected) in enumerate(zip(model.layers, connected_masks(model))):
        for q, p in connected.nonzero().tolist():
            attrs = {"layer": l, "basis": layer.basis_name, "kind": "numeric"}
            if layer.nodes is not None:
                attrs["subnode"] = q
            if scores is not None:
                attrs["importance"] = float(scores.edge_scores[l][q, p])
            expr = _edge_expression(layer, q, p, digits)
            if expr is not None:
                fn = layer.symbolic_function(q, p)
                attrs.update(
                    kind="symbolic",
                    function=fn.name if fn is not None else "",
                    # short floats: a bare constant printed all 15 digits ("-0.193000000000000")
                    expression=_sstr(expr),
                    params=[float(v) for v in layer.symbolic_affine[q, p].detach().cpu().tolist()],
                )
                if float(layer.mask[q, p]) != 0:  # its numeric branch is on too: both add up
                    attrs["also_numeric"] = True
            graph.add_edge((l, p), ends[l][q], **attrs)
    # sub-nodes without incoming edges are not part of the network (their node's operation sees a
    # zero there), then hidden nodes left without edges onwards
    last = len(model.widths) - 1
    graph.remove_nodes_from([n for n in graph.nodes if len(n) == 3 and graph.in_degree(n) == 0])
    graph.remove_nodes_from(
        [n for n in graph.nodes if len(n) == 2 and 0 < n[0] < last and graph.out_degree(n) == 0]
    )
    return graph


#: Opacity of the least important live edge (:func:`kantk.plot_activations`' default too).
MIN_ALPHA = 0.05
#: Colours of numeric and symbolic edges and of the symbolic labels.
NUMERIC_COLOR, SYMBOLIC_COLOR = "#1f3b73", "#b2182b"
#: The mark diagrams (and :func:`kantk.plot_activations`) put on a product node, by operation;
#: an operation not listed is marked with its name.
NODE_SYMBOLS = {"mult": "×"}
_SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def short_math(expr: Any) -> str:
    """A sympy expression as short one-line math for a diagram: ``0.354x² − 0.54``, ``sin(2x + π)``.

    Integer powers become superscripts, ``pi`` becomes π, ``sqrt`` √, a number times a name is
    written without a sign (``2x``), other products with a middle dot, and minus as ``−``.
    """
    import re

    import sympy

    # full_prec=False: a lone float prints as 0.011, not 0.0110000000000000 (str's choice for a bare Float)
    text = sympy.sstr(expr, full_prec=False)
    text = re.sub(r"\*\*(-?\d+)\b(?!\.)", lambda m: m.group(1).translate(_SUPERSCRIPTS), text)
    text = re.sub(r"\*\*", "^", text)
    text = re.sub(r"\bpi\b", "π", text)
    text = re.sub(r"\bsqrt\b", "√", text)
    text = re.sub(r"(\d|π)\*(?=[A-Za-zπ√(])", r"\1", text)
    text = text.replace("*", "·").replace(" - ", " − ")
    return re.sub(r"^-", "−", text)


def _importance(attrs: Mapping[str, Any]) -> float | None:
    """An edge's ``importance`` when it is a finite number; None when it is missing, ``null`` (a
    JSON file's NaN) or not finite."""
    value = attrs.get("importance")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _finite_or_null(value: Any) -> Any:
    """``value`` with every float that is not finite (also in lists, tuples, dicts) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def plain_label(text: Any) -> Any:
    """``text`` as a Graphviz label shown as written: never HTML (``graphviz.nohtml``), and its
    backslashes doubled, since Graphviz reads ``\\n``, ``\\N`` ... as escapes (``dir\\name`` lost
    its ``n``; a name ending in a backslash broke the DOT source), and ``&`` written ``&amp;``,
    since it decodes HTML entities in plain labels too (a column ``&alpha;`` was drawn as α)."""
    import graphviz

    return graphviz.nohtml(str(text).replace("\\", "\\\\").replace("&", "&amp;"))


def to_graphviz(
    model_or_graph: Any,
    x: torch.Tensor | None = None,
    var_names: Sequence[str] | None = None,
    out_names: Sequence[str] | None = None,
    *,
    rankdir: str = "BT",
    edge_plots: str | os.PathLike[str] | None = None,
    digits: int = 3,
    max_penwidth: float = 3.0,
    dpi: float = 150,
) -> Any:
    """A layered ``graphviz.Digraph`` of the network, laid out like :func:`kantk.plot_activations`.

    Inputs at the bottom (``rankdir="BT"``), outputs at the top; the nodes of every layer in index
    order from left to right (``x1 x2 ...``, ``h1.1 h1.2 ...``, ``y1 ...``), as in the activation
    plot. Edge opacity and pen width follow importance normalised per layer (with ``x``, or the
    graph's ``importance`` attributes). When any edge is symbolic or ``edge_plots`` is given, every
    edge passes through a box of its own, ordered as the activation plot's boxes, holding the
    edge's picture (faded by importance) and/or its formula as short math (:func:`short_math`);
    dot places the boxes so that no two labels overlap. Render with :func:`render_graph` (SVG
    output embeds the pictures, so the file stands alone).

    Args:
        model_or_graph: A KAN, or a graph from :func:`to_networkx`.
        x: (batch, widths[0]) samples for importances (KAN only).
        var_names, out_names: Names of inputs and outputs (KAN only).
        rankdir: ``"BT"`` (inputs at the bottom, as in the KAN paper), ``"LR"``, ``"TB"``, ``"RL"``.
        edge_plots: A folder; when given, a small picture of every edge's function is drawn
            there with matplotlib (``edge_<l>_<p>_<q>.png``) and placed on the edge. Needs a
            KAN and ``x``. Nothing is written otherwise.
        digits: Significant digits of the constants of the formulas on symbolic edges.
        max_penwidth: Pen width of the most important edge of a layer.
        dpi: Resolution of the edge pictures.
    """
    import graphviz
    import torch

    from kantk.model import KAN

    check_choice("rankdir", rankdir, ("BT", "TB", "LR", "RL"))
    check_number("max_penwidth", max_penwidth, 0, strict=True, finite=True)
    check_number("dpi", dpi, 0, strict=True, finite=True)
    model = model_or_graph if isinstance(model_or_graph, KAN) else None
    if model is not None:
        graph = to_networkx(model, x, var_names, out_names, digits=digits)
    else:
        if x is not None or var_names is not None or out_names is not None:
            raise ValueError("x, var_names and out_names apply to a KAN; a graph already has them")
        graph = model_or_graph
        if not hasattr(graph, "nodes") or "widths" not in getattr(graph, "graph", {}):
            raise TypeError("to_graphviz expects a kantk.KAN or a graph made by kantk.to_networkx")
    if edge_plots is not None and (model is None or x is None):
        raise ValueError("edge_plots needs the KAN itself and samples x (to draw each edge over its data)")

    widths = graph.graph["widths"]
    last = len(widths) - 1
    tops = [0.0] * max(last, 1)  # most important edge of each layer
    operation_edges = [(a, b, d) for a, b, d in graph.edges(data=True) if d.get("kind") == "node_operation"]
    for _, _, d in graph.edges(data=True):
        tops[d["layer"]] = max(tops[d["layer"]], _importance(d) or 0.0)
    boxed = edge_plots is not None or any(d.get("kind") == "symbolic" for _, _, d in graph.edges(data=True))
    dot = graphviz.Digraph(
        "kan",
        graph_attr={
            "rankdir": rankdir,
            "splines": "line",
            "nodesep": "0.25",
            "ranksep": "0.45" if boxed else "0.9",
            "ordering": "out",
            "fontname": "Helvetica",
        },
    )
    dot.attr("node", fontname="Helvetica", fontsize="10")
    dot.attr("edge", arrowhead="none")
    for l in range(len(widths)):
        nodes = sorted(n for n in graph.nodes if n[0] == l and len(n) == 2)
        subnodes = sorted(n for n in graph.nodes if n[0] == l and len(n) == 3)
        if subnodes:
            with dot.subgraph(name=f"subnodes{l}") as sub:
                sub.attr(rank="same")
                for node in subnodes:
                    sub.node(_node_id(node), label="", shape="point", width="0.05")
                for a, b in itertools.pairwise(subnodes):
                    sub.edge(_node_id(a), _node_id(b), style="invis")
        with dot.subgraph(name=f"layer{l}") as sub:
            sub.attr(rank="same")
            for node in nodes:
                label = graph.nodes[node]["label"]
                op = graph.nodes[node].get("op", "sum")
                if op != "sum" and l == last:  # an output: its name and its operation
                    label = f"{label} {NODE_SYMBOLS.get(op, op)}"
                    look = {"shape": "box", "style": "rounded", "margin": "0.05,0.02"}
                elif op != "sum":
                    label = NODE_SYMBOLS.get(op, op)
                    look = {"shape": "circle", "fontsize": "10", "width": "0.3", "fixedsize": "true"}
                elif l == 0 or l == last:
                    look = {"shape": "box", "style": "rounded", "margin": "0.05,0.02"}
                else:
                    look = {"shape": "circle", "fontsize": "8", "width": "0.42", "fixedsize": "true"}
                # plain text: a name (a CSV header, a graph file's label) is never Graphviz HTML
                sub.node(_node_id(node), label=plain_label(label), **look)
            for a, b in itertools.pairwise(nodes):  # keep index order from left to right
                sub.edge(_node_id(a), _node_id(b), style="invis")
    picture_dir = None
    if edge_plots is not None:
        assert model is not None and x is not None
        picture_dir = os.fspath(edge_plots)
        os.makedirs(picture_dir, exist_ok=True)
        with torch.no_grad():
            layer_inputs = model.layer_inputs(x.detach())
    for src, dst, _ in operation_edges:
        dot.edge(_node_id(src), _node_id(dst), color="#000000", penwidth="0.6")
    edges = sorted(
        (e for e in graph.edges(data=True) if e[2].get("kind") != "node_operation"),
        key=lambda e: (e[2]["layer"], e[0][1], e[2].get("subnode", e[1][1])),
    )
    mids: dict[int, list[str]] = {}
    for src, dst, d in edges:
        l, p, q = d["layer"], src[1], d.get("subnode", dst[1])
        top = tops[l]
        value = _importance(d)
        if value is None:  # no samples (or a NaN score): importance unknown, drawn fully
            share = 1.0
        else:  # a layer whose scores are all 0 on the samples is drawn faint, as plot_activations does
            share = min(max(value / top, 0.0), 1.0) if top > 0 else 0.0
        alpha = MIN_ALPHA + (1.0 - MIN_ALPHA) * share
        symbolic = d.get("kind") == "symbolic"
        color = f"{SYMBOLIC_COLOR if symbolic else NUMERIC_COLOR}{round(255 * alpha):02x}"
        attrs = {"penwidth": f"{max(0.4, max_penwidth * share):.2f}", "color": color}
        if not boxed:
            dot.edge(_node_id(src), _node_id(dst), **attrs)
            continue
        mid = f"e{l}_{p}_{q}"
        mids.setdefault(l, []).append(mid)
        text = None
        if symbolic and "expression" in d:
            text = _expression_text(d["expression"], digits)
            text = html.escape(text + " + numeric" if d.get("also_numeric") else text)
        picture = None
        if picture_dir is not None:
            assert model is not None
            picture = os.path.abspath(os.path.join(picture_dir, f"edge_{l}_{p}_{q}.png"))
            _draw_edge(model, l, q, p, layer_inputs[l][:, p], picture, alpha=alpha, dpi=dpi)
        rows = []
        if picture is not None:
            frame = f"#000000{round(255 * alpha):02x}"
            rows.append(
                f'<TR><TD FIXEDSIZE="TRUE" WIDTH="40" HEIGHT="30" BORDER="1" COLOR="{frame}">'
                f'<IMG SRC="{html.escape(picture)}" SCALE="TRUE"/></TD></TR>'
            )
        if text is not None:
            rows.append(f'<TR><TD><FONT POINT-SIZE="8" COLOR="{SYMBOLIC_COLOR}">{text}</FONT></TD></TR>')
        if rows:
            table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="1">' + "".join(rows)
            dot.node(mid, label=f"<{table}</TABLE>>", shape="plain")
        else:
            dot.node(mid, label="", shape="point", width="0.04", color=color)
        dot.edge(_node_id(src), mid, **attrs)
        dot.edge(mid, _node_id(dst), **attrs)
    for l, names in mids.items():  # the boxes in the activation plot's order, in one rank per layer
        with dot.subgraph(name=f"edges{l}") as sub:
            sub.attr(rank="same")
            for name in names:
                sub.node(name)
            for a, b in itertools.pairwise(names):
                sub.edge(a, b, style="invis")
    return dot


def render_graph(dot: Any, path: str | os.PathLike[str], format: str = "svg") -> str:
    """Render a graphviz diagram to ``path`` (the extension is added if missing); returns the file.

    Graphviz renders in a temporary folder beside ``path`` (its DOT source never lands next to the
    output) and the finished file is moved into place atomically: ``path`` is either left as it was
    or replaced by the complete diagram, and no other file is touched.

    Raises:
        ValueError: Unknown format.
        GraphvizNotFoundError: The ``dot`` program is not installed (says how to install it).
        IsADirectoryError: ``path`` is an existing folder.
    """
    if format not in RENDER_FORMATS:
        raise ValueError(
            f"unknown format {format!r}; accepted: {', '.join(RENDER_FORMATS)} (or save the DOT source)"
        )
    path = os.fspath(path)
    if os.path.basename(path) in ("", ".", ".."):  # before the extension: "figs/" became figs/.svg
        _check_not_a_folder(path)
    if not path.endswith("." + format):
        path = f"{path}.{format}"
    _render_to(dot, path, format)
    return path


def export_graph(
    model_or_graph: Any,
    path: str | os.PathLike[str],
    format: str | None = None,
    x: torch.Tensor | None = None,
    var_names: Sequence[str] | None = None,
    *,
    out_names: Sequence[str] | None = None,
    edge_plots: str | os.PathLike[str] | bool | None = None,
    dpi: float = 150,
) -> str:
    """Write the network's graph to exactly ``path``, atomically; returns ``path``.

    Args:
        model_or_graph: A KAN, or a graph from :func:`to_networkx`.
        path: The file to write (no extension is added).
        format: One of :data:`EXPORT_FORMATS`; default: ``path``'s extension. ``svg``, ``png``
            and ``pdf`` need Graphviz's ``dot``; ``dot`` is the DOT source; ``json`` is networkx
            node-link JSON (``networkx.node_link_graph(data, edges="links")`` reads it back).
        x: (batch, widths[0]) samples for importances (KAN only).
        var_names, out_names: Names of the inputs and outputs (KAN only).
        edge_plots: ``True`` to draw every edge's picture on the diagram (drawn in a temporary
            folder: svg embeds them as data URIs, png and pdf hold them anyway; not for ``dot``,
            whose source refers to files), or a folder to keep the pictures in (see
            :func:`to_graphviz`; not for ``json``).
        dpi: Resolution of ``png`` output and of the edge pictures.

    Raises:
        ValueError: Unknown format, or ``edge_plots`` with ``json``.
        GraphvizNotFoundError: A rendered format without Graphviz's ``dot``.
        IsADirectoryError: ``path`` is an existing folder.
    """
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r} for {path!r}; accepted: {', '.join(EXPORT_FORMATS)}")
    check_number("dpi", dpi, 0, strict=True, finite=True)
    _check_not_a_folder(path)
    if fmt in RENDER_FORMATS and shutil.which("dot") is None:
        raise GraphvizNotFoundError(INSTALL_GRAPHVIZ)  # before any work
    if fmt == "json":
        if edge_plots is not None:
            raise ValueError("edge_plots applies to diagrams (svg, png, pdf, dot), not to json")
        import networkx as nx

        from kantk.model import KAN

        if isinstance(model_or_graph, KAN):
            graph = to_networkx(model_or_graph, x, var_names, out_names)
        elif x is not None or var_names is not None or out_names is not None:
            raise ValueError("x and var_names apply to a KAN; a graph already has them")
        else:
            graph = model_or_graph
        # strict JSON: a NaN or infinite value (an importance on samples outside a symbolic edge's
        # domain) is written as null, which every JSON reader takes (NaN is not JSON)
        data = _finite_or_null(nx.node_link_data(graph, edges="links"))
        text = json.dumps(data, indent=1, default=list, allow_nan=False)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    if edge_plots is True and fmt == "dot":
        raise ValueError("edge_plots=True draws the pictures for a rendered diagram; give a folder for dot")
    with contextlib.ExitStack() as stack:
        # edge_plots=True: pictures drawn in the system's temporary folder, not beside the output,
        # whose folder name Graphviz writes into the SVG as it is (a '"' there broke the file)
        plots: Any = (
            edge_plots
            if edge_plots is not True
            else stack.enter_context(tempfile.TemporaryDirectory(prefix="kantk-edges-"))
        )
        plots = None if plots is False else plots
        folder = None  # the pictures' folder of a DOT file: they are drawn aside first
        if fmt == "dot" and plots is not None:
            folder = os.path.abspath(os.fspath(plots))
            try:  # beside where the folder really is (a link to another filesystem: no rename across)
                plots = stack.enter_context(temporary_folder_beside(os.path.realpath(folder)))
            except OSError:  # a folder whose parent is not writable: drawn in place, as before
                plots, folder = folder, None
        dot = to_graphviz(model_or_graph, x, var_names, out_names, edge_plots=plots, dpi=dpi)
        if fmt == "png":
            dot.graph_attr["dpi"] = str(dpi)
        if fmt == "dot":
            with atomic_path(path) as tmp:
                if folder is not None:
                    _name_pictures_in(dot, plots, folder)
                dot.save(filename=tmp)
                if folder is not None:
                    _move_pictures(plots, os.path.realpath(folder))
        else:
            _render_to(dot, path, fmt, plots)
    return path


def _name_pictures_in(dot: Any, staging: str, folder: str) -> None:
    """Make the DOT name the pictures drawn in ``staging`` (a fresh temporary folder, a unique
    name) at their place in ``folder``. The DOT holds the paths only in HTML labels' ``IMG SRC``,
    escaped: the folder goes in escaped too (a raw replacement first put ``a&b <c>_edges`` in
    unescaped, the file no longer parsed, and the escaped pass then found nothing)."""
    import html

    old, new = (html.escape(os.path.join(path, "")) for path in (staging, folder))
    for i, line in enumerate(dot.body):
        dot.body[i] = line.replace(old, new)


def _move_pictures(staging: str, folder: str) -> None:
    """Move the pictures drawn in ``staging`` into ``folder``, just before the DOT naming them
    replaces the old one: drawn there directly, an interrupted or failed export left the old DOT
    naming some of the new pictures (6 of 110 after one Ctrl-C), or a first one a half-filled
    folder and no DOT."""
    os.makedirs(folder, exist_ok=True)
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(folder, name))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """A temporary file name to write instead of ``path``; moved onto ``path`` atomically on success.

    The temporary file lies in a hidden temporary folder beside ``path`` (same filesystem, so
    :func:`os.replace` is atomic) that is removed afterwards, whatever happens. If the block raises,
    ``path`` is left untouched. Readers of ``path`` see the old file or the complete new one, which
    takes the old file's permissions.

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
        FileNotFoundError: The block wrote nothing at the temporary path.
        OSError: The folder of ``path`` does not exist or is not writable.
    """
    path = os.fspath(path)
    _check_not_a_folder(path)
    with temporary_folder_beside(path) as folder:
        tmp = os.path.join(folder, os.path.basename(path) or "output")
        yield tmp
        if not os.path.isfile(tmp):
            raise FileNotFoundError(f"nothing was written for {path!r}")
        if os.path.isfile(path):  # the file it replaces keeps its permissions (a private 600 stays so)
            shutil.copymode(path, tmp)
        os.replace(tmp, path)


@contextlib.contextmanager
def temporary_folder_beside(path: str | os.PathLike[str]) -> Iterator[str]:
    """A hidden temporary folder in the folder of ``path`` (removed on exit, also on errors).

    Raises:
        FileNotFoundError: The folder of ``path`` does not exist (named as the caller gave it, not
            the temporary folder's path).
    """
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(parent):
        problem = "is not a folder" if os.path.exists(parent) else "does not exist"
        raise FileNotFoundError(f"cannot write {os.fspath(path)!r}: its folder {parent!r} {problem}")
    with tempfile.TemporaryDirectory(prefix=".kantk-tmp-", dir=parent) as folder:
        yield folder


def _check_not_a_folder(path: str) -> None:
    if os.path.isdir(path) or os.path.basename(path) in ("", ".", ".."):
        raise IsADirectoryError(f"{path!r} names a folder; give the path of a file to write")


def _render_to(dot: Any, path: str, format: str, pictures: str | os.PathLike[str] | None = None) -> None:
    """Render ``dot`` in a temporary folder beside ``path`` and move the result onto ``path``;
    an svg embeds the PNG pictures of the folder ``pictures`` (the edge plots)."""
    import graphviz

    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(INSTALL_GRAPHVIZ)
    _check_not_a_folder(path)
    with temporary_folder_beside(path) as folder:
        try:
            rendered = dot.render(
                filename=os.path.join(folder, "graph"), format=format, cleanup=True, quiet=True
            )
        except graphviz.ExecutableNotFound as exc:
            raise GraphvizNotFoundError(INSTALL_GRAPHVIZ) from exc
        except graphviz.CalledProcessError as exc:
            detail = (
                exc.stderr.decode(errors="replace")
                if isinstance(exc.stderr, bytes)
                else str(exc.stderr or "")
            )
            detail = " ".join(detail.split()) or f"exit status {exc.returncode}"
            raise GraphvizRenderError(f"graphviz could not render {path!r}: {detail}") from None
        if format == "svg":
            drawn: list[str] = []
            if pictures is not None:
                where = os.path.abspath(os.fspath(pictures))
                drawn = [os.path.join(where, n) for n in sorted(os.listdir(where)) if n.endswith(".png")]
            _embed_images(rendered, drawn)
        os.replace(rendered, path)


def _embed_images(svg_path: str, pictures: Sequence[str] = ()) -> None:
    """Replace every local PNG an SVG links (``xlink:href="/path/x.png"``) by a ``data:`` URI:
    first the ``pictures`` kantk drew, by their exact paths (Graphviz writes a path as it is, so a
    folder named ``Fig "B" v2`` has a quote before a space in it), then any other by pattern."""
    import base64
    import re

    with open(svg_path, encoding="utf-8") as f:
        text = f.read()
    for picture in pictures:
        links = [f'href="{w}"' for w in {picture, html.escape(picture, quote=False), html.escape(picture)}]
        if not any(link in text for link in links):  # another file of a kept folder: not read
            continue
        with open(picture, "rb") as image:
            uri = "data:image/png;base64," + base64.b64encode(image.read()).decode("ascii")
        for link in links:
            text = text.replace(link, f'href="{uri}"')

    def inline(match: Any) -> str:
        target = match.group(2)
        if not os.path.isfile(target) and os.path.isfile(html.unescape(target)):
            target = html.unescape(target)
        if target.startswith("data:") or not target.lower().endswith(".png") or not os.path.isfile(target):
            return match.group(0)
        with open(target, "rb") as image:
            data = base64.b64encode(image.read()).decode("ascii")
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    # Graphviz writes the path as it is, a '"' in a folder name too: a quote inside the value is
    # one not followed by a space, "/" or ">" (the picture stayed a link into a removed folder,
    # and the SVG was not well-formed XML)
    text = re.sub(r'((?:xlink:)?href=)"((?:[^"]|"(?![\s/>]))*)"', inline, text)
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(text)


def _draw_edge(
    model: KAN,
    layer: int,
    q: int,
    p: int,
    inputs: torch.Tensor,
    path: str,
    *,
    alpha: float = 1.0,
    dpi: float = 150,
) -> None:
    """Draw edge ``p -> q`` of ``layer`` over the range of its inputs into the PNG ``path``."""
    import torch
    from matplotlib.figure import Figure

    lo, hi = float(inputs.min()), float(inputs.max())
    xs = torch.linspace(lo, hi if hi > lo else lo + 1.0, 100, dtype=inputs.dtype, device=inputs.device)
    kan_layer = model.layers[layer]
    full = torch.zeros(100, kan_layer.in_features, dtype=inputs.dtype, device=inputs.device)
    full[:, p] = xs
    with torch.no_grad():
        ys = kan_layer.activations(full)[:, q, p]
    fig = Figure(figsize=(0.56, 0.42), dpi=dpi)
    ax = fig.add_axes((0.06, 0.08, 0.88, 0.84))
    ax.plot(xs.cpu().numpy(), ys.cpu().numpy(), color="black", alpha=alpha, linewidth=1.0)
    ax.set_axis_off()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", transparent=True)


def _node_id(node: tuple[int, ...]) -> str:
    return "n" + "_".join(str(v) for v in node)


def _names(names: Sequence[str] | None, n: int, what: str, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix}{i + 1}" for i in range(n)]
    if isinstance(names, (str, bytes)):  # "ab" named two inputs a and b, "x1" two x and 1
        raise ValueError(f"{what} needs a list of {n} names, got the string {names!r}")
    names = [str(v) for v in names]
    if len(names) != n:
        raise ValueError(f"{what} needs {n} names, got {len(names)}")
    return names
