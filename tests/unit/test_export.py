from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import networkx as nx
import pytest
import torch

import kantk
from kantk.export import (
    GraphvizNotFoundError,
    GraphvizRenderError,
    atomic_path,
    export_graph,
    render_graph,
    to_graphviz,
    to_networkx,
)
from kantk.symbolic.library import resolve_library

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"),
    reason="Graphviz 'dot' not installed (CI installs it and must run this)",
)


def _model():
    model = kantk.KAN([3, 4, 2], seed=0)
    with torch.no_grad():
        model.layers[0].mask[1, 2] = 0
        model.layers[1].mask[0, 3] = 0
    return model


def test_graph_counts_match_widths_and_live_edges():
    model = _model()
    x = torch.rand(64, 3) * 2 - 1
    graph = to_networkx(model, x, var_names=["a", "b", "c"])
    assert graph.number_of_nodes() == sum(model.widths)
    live = sum(int((layer.mask != 0).sum()) for layer in model.layers)
    assert graph.number_of_edges() == live
    assert ((0, 2), (1, 1)) not in graph.edges  # the masked edge c -> h1.2 is absent
    assert graph.nodes[(0, 1)]["label"] == "b" and graph.nodes[(2, 0)]["label"] == "y1"
    assert all("importance" in d and d["basis"] == "bspline" for _, _, d in graph.edges(data=True))


def test_pruned_model_graph_has_the_pruned_widths():
    model = kantk.KAN([2, 5, 1], seed=0)
    with torch.no_grad():
        for dead in (1, 3):
            model.layers[0].mask[dead] = 0
            model.layers[1].mask[:, dead] = 0
    pruned = kantk.prune(model, torch.rand(50, 2) * 2 - 1, node_th=1e-9, edge_th=1e-12)
    graph = to_networkx(pruned)
    assert pruned.widths == [2, 3, 1]
    assert graph.number_of_nodes() == sum(pruned.widths)
    assert graph.number_of_edges() == sum(int((l.mask != 0).sum()) for l in pruned.layers)


def test_json_round_trip():
    model = _model()
    graph = to_networkx(model, torch.rand(32, 3))
    data = json.loads(json.dumps(nx.node_link_data(graph, edges="links")))
    again = nx.node_link_graph(data, edges="links")
    assert {tuple(n) for n in again.nodes} == set(graph.nodes)
    assert again.number_of_edges() == graph.number_of_edges()


def test_a_constant_edges_expression_is_short():
    """A bare constant printed all 15 digits ("-0.193000000000000") where other edges read 3."""
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "0")
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0, 3] = -0.19312
    assert to_networkx(model).edges[(0, 0), (1, 0)]["expression"] == "-0.193"


def test_symbolic_edges_are_labelled():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 1], seed=0)
    x = torch.rand(200, 2) * 2 - 1
    kantk.fix_symbolic(model, 0, 0, 0, "sin", x=x)
    graph = to_networkx(model)
    edge = graph.edges[(0, 0), (1, 0)]
    assert edge["kind"] == "symbolic" and edge["function"] == "sin" and "sin" in edge["expression"]
    assert graph.edges[(0, 1), (1, 0)]["kind"] == "numeric"
    dot = to_graphviz(model)
    assert "sin(" in dot.source


@needs_dot
def test_svg_renders_with_dot_and_writes_only_where_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model()
    x = torch.rand(64, 3) * 2 - 1
    out = tmp_path / "out"
    dot = to_graphviz(model, x, edge_plots=out / "edges")
    path = render_graph(dot, out / "graph.svg")
    assert path.endswith("graph.svg") and (out / "graph.svg").read_text().lstrip().startswith(
        ("<?xml", "<svg")
    )
    assert len(list((out / "edges").glob("*.png"))) == sum(int((l.mask != 0).sum()) for l in model.layers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_missing_dot_gives_install_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    dot = to_graphviz(_model())
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz"):
        render_graph(dot, tmp_path / "g.svg")
    dot.save(str(tmp_path / "g.dot"))  # the DOT source can still be written
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_bad_arguments(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="var_names needs 3"):
        to_networkx(model, var_names=["a"])
    with pytest.raises(ValueError, match="var_names needs a list of 3 names, got the string 'abc'"):
        to_graphviz(model, var_names="abc")  # was three inputs a, b and c
    with pytest.raises(ValueError, match="out_names needs a list of 2 names, got the string 'y'"):
        to_networkx(model, out_names="y")
    with pytest.raises(ValueError, match="unknown rankdir 'UP'; valid rankdirs: BT, TB, LR, RL"):
        to_graphviz(model, rankdir="UP")
    for digits in (-1, 0, True, 2.5):
        with pytest.raises(ValueError, match="digits must be an int >= 1"):
            to_networkx(model, digits=digits)
    for bad in (0, -1, True, float("nan")):
        with pytest.raises(ValueError, match="dpi must be a finite number > 0"):
            to_graphviz(model, dpi=bad)
        with pytest.raises(ValueError, match="max_penwidth must be a finite number > 0"):
            to_graphviz(model, max_penwidth=bad)
        with pytest.raises(ValueError, match="dpi must be a finite number > 0"):
            export_graph(model, tmp_path / "g.svg", dpi=bad)  # refused before any file or dot check
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="edge_plots needs"):
        to_graphviz(model, edge_plots="somewhere")
    with pytest.raises(ValueError, match="format"):
        render_graph(to_graphviz(model), "x.gif", format="gif")
    (tmp_path / "figs").mkdir()
    for folder in (f"{tmp_path / 'figs'}{os.sep}", f"{tmp_path / 'figs'}{os.sep}."):  # "figs": figs.svg
        with pytest.raises(IsADirectoryError, match="names a folder; give the path of a file"):
            render_graph(to_graphviz(model), folder)  # "figs/" wrote the hidden figs/.svg
    with pytest.raises(FileNotFoundError, match="its folder '.*nodir' does not exist"):
        render_graph(to_graphviz(model), tmp_path / "nodir" / "q.svg")  # named .kantk-tmp-...
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figs"]
    (tmp_path / "afile").write_text("")
    with pytest.raises(FileNotFoundError, match="its folder '.*afile' is not a folder"):
        render_graph(to_graphviz(model), tmp_path / "afile" / "q.svg")


# --- exports never destroy a file (issue 16) --------------------------------------------------------


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_render_never_touches_the_file_named_like_the_output_stem(tmp_path, fmt):
    model = tmp_path / "M.kantk"
    model.write_bytes(b"the model")
    path = render_graph(to_graphviz(_model()), tmp_path / f"M.kantk.{fmt}", format=fmt)
    assert path == str(tmp_path / f"M.kantk.{fmt}") and os.path.getsize(path) > 0
    assert model.read_bytes() == b"the model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "M.kantk",
        f"M.kantk.{fmt}",
    ]  # no DOT source, no temporaries


@needs_dot
def test_render_adds_the_extension_and_leaves_the_extensionless_file_alone(tmp_path):
    (tmp_path / "g").write_bytes(b"keep")
    assert render_graph(to_graphviz(_model()), tmp_path / "g", format="svg") == str(tmp_path / "g.svg")
    assert (tmp_path / "g").read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "g.svg"]


@pytest.mark.parametrize("fmt", ["json", "dot"])
def test_export_graph_writes_exactly_the_path_atomically(tmp_path, fmt):
    target = tmp_path / "M.kantk"  # the name of a model: export_graph writes exactly there, nothing else
    target.write_bytes(b"old")
    assert export_graph(_model(), target, fmt) == str(target)
    text = target.read_text()
    assert text.startswith("digraph") if fmt == "dot" else json.loads(text)["graph"]["widths"] == [3, 4, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["M.kantk"]


def test_a_failed_export_leaves_the_old_file_and_no_temporaries(tmp_path, monkeypatch):
    out = tmp_path / "g.dot"
    out.write_bytes(b"old graph")

    def broken(self, filename=None, **kwargs):
        with open(filename, "w") as f:
            f.write("half a gr")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("graphviz.Digraph.save", broken)
    with pytest.raises(OSError, match="No space"):
        export_graph(_model(), out, "dot")
    assert out.read_bytes() == b"old graph"
    assert [p.name for p in tmp_path.iterdir()] == ["g.dot"]


def test_atomic_path_replaces_only_on_success(tmp_path):
    out = tmp_path / "f.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        Path(tmp).write_text("partial")
        raise RuntimeError("interrupted")
    assert out.read_text() == "old"
    with atomic_path(out) as tmp:
        Path(tmp).write_text("new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(out):
        pass
    assert out.read_text() == "new"


def test_exports_refuse_a_folder(tmp_path):
    (tmp_path / "g.svg").mkdir()
    with pytest.raises(IsADirectoryError):
        export_graph(_model(), tmp_path / "g.svg", "json")
    with pytest.raises(IsADirectoryError):
        render_graph(to_graphviz(_model()), tmp_path / "g.svg")
    with pytest.raises(ValueError, match="unknown format"):
        export_graph(_model(), tmp_path / "g.gif")
    with pytest.raises(ValueError, match="edge_plots"):
        export_graph(_model(), tmp_path / "g.json", x=torch.rand(8, 3), edge_plots=tmp_path / "e")


def _graph_from_json(graph):
    """What a graph read back from a JSON file (kantk export --format json) looks like."""
    data = json.loads(json.dumps(nx.node_link_data(graph, edges="links"), default=list))
    return nx.node_link_graph(data, edges="links")


def test_an_expression_from_a_graph_file_is_read_never_run(tmp_path):
    """A symbolic edge's expression in a graph from a file is text: it is read by the formula
    parser (the labels of every default-library function come out as before), and text that is
    not a formula is shown as it is, not evaluated (sympify ran it as Python)."""
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sin", x=torch.rand(50, 2) * 2 - 1)
    graph = _graph_from_json(to_networkx(model))
    assert "sin(" in to_graphviz(graph).source
    marker = tmp_path / "ran"
    attack = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    graph.edges[(0, 0), (1, 0)]["expression"] = attack
    source = to_graphviz(graph).source
    assert not marker.exists()
    assert "__import__" in source  # shown, escaped, as a label


@pytest.mark.parametrize("name", sorted(resolve_library("default").keys()))
def test_every_default_function_labels_the_same_from_a_graph_file(name):
    import sympy

    from kantk.export import _expression_text, short_math

    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, name)
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0] = torch.tensor([1.37, -0.21, 2.5, 0.4])
    (_, _, edge), *_ = _graph_from_json(to_networkx(model)).edges(data=True)
    expr = sympy.parse_expr(edge["expression"])  # the test's own trusted text
    assert _expression_text(edge["expression"]) == short_math(expr)


@needs_dot
def test_names_that_look_like_graphviz_html_are_plain_text(tmp_path):
    """Variable names (CSV headers, --var-names) are labels, not Graphviz HTML: a name holding an
    <IMG> of a local file does not pull the file into the SVG, and broken markup does not make
    Graphviz fail."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not for the diagram")
    html_name = f'<<TABLE><TR><TD><IMG SRC="{secret}"/></TD></TR></TABLE>>'
    graph = to_networkx(kantk.KAN([2, 1], seed=0), var_names=[html_name, "<b>x"])
    export_graph(graph, tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert "base64" not in svg and "<image" not in svg
    assert "&lt;b&gt;x" in svg


@needs_dot
def test_a_graphviz_failure_is_reported_and_leaves_nothing(tmp_path):
    import graphviz

    dot = graphviz.Digraph("kan")
    dot.node("a", image=str(tmp_path / "missing.png"), shape="none")
    dot.body.append("this is not DOT {")
    with pytest.raises(GraphvizRenderError, match="could not render"):
        render_graph(dot, tmp_path / "g.svg")
    assert list(tmp_path.iterdir()) == []


# --- diagrams fit for a paper (issue 19) ---------------------------------------------------------


def test_short_math_reads_as_math():
    import sympy

    x = sympy.Symbol("x")
    assert kantk.export.short_math(sympy.Float(0.354) * x**2 - sympy.Float(0.54)) == "0.354x² − 0.54"
    assert kantk.export.short_math(sympy.sin(sympy.pi * x)) == "sin(πx)"
    assert kantk.export.short_math(sympy.sqrt(x) * sympy.exp(x)) == "√(x)·exp(x)"
    # a constant edge: a lone float, which str() would print with 15 digits
    assert kantk.export.short_math(sympy.Float(0.011)) == "0.011"
    assert kantk.export.short_math(sympy.Float(-0.033)) == "−0.033"


def test_graphviz_nodes_are_labelled_and_kept_in_index_order():
    model = kantk.KAN([3, 4, 2], seed=0)
    dot = to_graphviz(model, torch.rand(32, 3) * 2 - 1, out_names=["u", "v"])
    source = dot.source
    for label in ("x1", "x3", "h1.1", "h1.4", "u", "v"):
        assert f"label={label}" in source or f'label="{label}"' in source
    # every layer's nodes chained left to right by invisible edges, in index order
    for l, width in enumerate(model.widths):
        for i in range(width - 1):
            assert f"n{l}_{i} -> n{l}_{i + 1} [style=invis]" in source


@needs_dot
def test_svg_with_edge_plots_stands_alone_after_being_moved(tmp_path):
    import base64
    import io
    import re
    import xml.etree.ElementTree as ET

    from matplotlib.image import imread

    model = _model()
    kantk.fix_symbolic(model, 0, 0, 0, "x^2", fit_params=False)  # a formula box too
    out = tmp_path / "made"
    out.mkdir()
    export_graph(model, out / "g.svg", x=torch.rand(64, 3) * 2 - 1, edge_plots=True, dpi=80)
    assert sorted(p.name for p in out.iterdir()) == ["g.svg"]  # pictures drawn in a temporary folder
    moved = tmp_path / "elsewhere" / "g.svg"
    moved.parent.mkdir()
    shutil.move(out / "g.svg", moved)
    text = moved.read_text()
    ET.fromstring(text)  # well-formed XML
    links = re.findall(r'href="([^"]*)"', text)
    live = sum(int(layer.live_edges().sum()) for layer in model.layers)
    assert "x²" in text  # the symbolic edge's formula as short math
    assert len(links) == live and all(link.startswith("data:image/png;base64,") for link in links)
    picture = imread(io.BytesIO(base64.b64decode(links[0].split(",", 1)[1])), format="png")
    assert picture.ndim == 3 and picture.shape[0] > 10  # a real image, not a path


@needs_dot
def test_pictures_are_embedded_from_a_folder_with_a_quote_in_its_name(tmp_path):
    """Graphviz writes the picture's path unescaped: in a folder named q"q the link stayed a path
    into the removed temporary folder, and the SVG was not well-formed XML."""
    import re
    import xml.etree.ElementTree as ET

    for name in ('q"q', 'Fig "A" v2'):  # a quote before a space too (the pattern took it for the end)
        out = tmp_path / name
        out.mkdir()
        export_graph(_model(), out / "g.svg", x=torch.rand(32, 3) * 2 - 1, edge_plots=True, dpi=40)
        text = (out / "g.svg").read_text()
        ET.fromstring(text)
        links = re.findall(r'href="([^"]{0,30})', text)
        assert links and all(link.startswith("data:image/png;base64,") for link in links)
        assert sorted(p.name for p in out.iterdir()) == ["g.svg"]
    kept = tmp_path / 'Fig "B" v2'  # pictures kept in a folder of such a name: linked by their paths
    export_graph(_model(), tmp_path / "k.svg", x=torch.rand(32, 3) * 2 - 1, edge_plots=kept, dpi=40)
    text = (tmp_path / "k.svg").read_text()
    ET.fromstring(text)
    assert all(link.startswith("data:image/png;base64,") for link in re.findall(r'href="([^"]{0,30})', text))


def test_a_dot_export_with_edge_plots_replaces_its_pictures_only_with_the_dot(tmp_path, monkeypatch):
    """The pictures were drawn straight into the DOT's folder: an export that failed or was
    interrupted part-way left the old DOT naming some new pictures (6 of 110 after one Ctrl-C),
    or, the first time, a half-filled folder and no DOT. They are drawn aside and moved in just
    before the DOT is replaced; the DOT names them where they end up."""
    import graphviz

    first, second = _model(), kantk.KAN([3, 2, 1], seed=1)
    x = torch.rand(32, 3) * 2 - 1
    out, folder = tmp_path / "g.dot", tmp_path / "g_edges"
    export_graph(first, out, x=x, edge_plots=folder, dpi=30)
    pictures = {p.name: p.read_bytes() for p in folder.iterdir()}
    text = out.read_text()
    assert pictures and all(str(folder / name) in text for name in pictures)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g_edges"]  # no staging left

    def broken(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(graphviz.Digraph, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        export_graph(second, out, x=x, edge_plots=folder, dpi=30)
    assert out.read_text() == text and {p.name: p.read_bytes() for p in folder.iterdir()} == pictures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g_edges"]
    with pytest.raises(KeyboardInterrupt):
        export_graph(second, tmp_path / "new.dot", x=x, edge_plots=tmp_path / "new_edges", dpi=30)
    assert not (tmp_path / "new_edges").exists() and not (tmp_path / "new.dot").exists()


def test_dot_pictures_go_into_a_linked_folder_on_another_filesystem(tmp_path, monkeypatch):
    """The pictures were staged beside the link, not beside the folder it points to: a link into
    /dev/shm (another filesystem) failed with "Invalid cross-device link". Here a rename of a
    picture from anywhere but beside the real folder fails as it would across filesystems."""
    import errno

    real = tmp_path / "elsewhere" / "pics"
    real.mkdir(parents=True)
    (tmp_path / "out").mkdir()
    os.symlink(real, tmp_path / "out" / "pics")
    replace = os.replace

    def across_filesystems(src, dst):
        into_real = os.path.realpath(os.path.dirname(dst)) == os.path.realpath(real)
        beside_real = os.path.realpath(os.path.dirname(os.path.dirname(src))) == os.path.realpath(real.parent)
        if into_real and not beside_real:
            raise OSError(errno.EXDEV, "Invalid cross-device link")  # from another filesystem
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", across_filesystems)
    out = tmp_path / "out" / "g.dot"
    export_graph(_model(), out, x=torch.rand(16, 3) * 2 - 1, edge_plots=tmp_path / "out" / "pics", dpi=20)
    names = sorted(os.listdir(real))
    assert names and all(name.startswith("edge_") for name in names)
    assert str(tmp_path / "out" / "pics" / names[0]) in out.read_text()  # named via the link
    assert sorted(os.listdir(tmp_path / "out")) == ["g.dot", "pics"]
    assert sorted(os.listdir(tmp_path / "elsewhere")) == ["pics"]  # no staging left


@needs_dot
def test_png_dpi_sets_the_resolution(tmp_path):
    from matplotlib.image import imread

    model, x = _model(), torch.rand(32, 3) * 2 - 1
    export_graph(model, tmp_path / "lo.png", x=x, dpi=50)
    export_graph(model, tmp_path / "hi.png", x=x, dpi=100)
    lo, hi = imread(tmp_path / "lo.png"), imread(tmp_path / "hi.png")
    assert 1.8 < hi.shape[1] / lo.shape[1] < 2.2  # twice the dpi, twice the pixels (rounding margin)


def test_a_node_without_a_live_path_onwards_is_left_out_of_diagrams():
    """kantk discover's model [2, [1, 1], 1] with the product node's output edge masked: the graph
    and the activation plot drew x2 feeding a product node that reaches nothing. Now that node, its
    sub-nodes and the edges into them are left out; the sum node's edges stay."""
    from kantk.pruners import connected_masks

    model = kantk.KAN([2, [1, 1], 1], seed=0)
    with torch.no_grad():
        model.layers[1].mask[0, 1] = 0  # the product node (node 1) no longer feeds the output
    assert [m.tolist() for m in connected_masks(model)] == [
        [[True, True], [False, False], [False, False]],
        [[True, False]],
    ]
    graph = to_networkx(model, torch.rand(32, 2))
    assert sorted(graph.nodes) == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert graph.number_of_edges() == 3
    assert "×" not in to_graphviz(graph).source


def test_a_node_no_input_reaches_is_left_out_of_diagrams():
    """A product node one of whose factors had no live edge computes 0 whatever its other factor,
    yet x1, x2 -> it -> y1 was drawn (with formula 0); a hidden node without live incoming edges
    gives its output edge a constant. Both paths are left out; the model's others stay."""
    from kantk.pruners import connected_masks

    model = kantk.KAN([2, [1, 1], 1], seed=0)  # node 0 sums sub-node 0; node 1 multiplies 1 and 2
    with torch.no_grad():
        model.layers[0].mask[2, :] = 0  # the product's second factor is fed by nothing
    assert [m.tolist() for m in connected_masks(model)] == [
        [[True, True], [False, False], [False, False]],
        [[True, False]],
    ]
    graph = to_networkx(model, torch.rand(32, 2))
    assert sorted(graph.nodes) == [(0, 0), (0, 1), (1, 0), (2, 0)] and graph.number_of_edges() == 3
    with torch.no_grad():
        model.layers[0].mask[0, :] = 0  # the sum node is fed by nothing too: a constant output
    assert not any(m.any() for m in connected_masks(model))
    # a product of two fed factors stays
    other = kantk.KAN([2, [0, 1], 1], seed=0)
    assert all(m.all() for m in connected_masks(other))


def test_edge_labels_keep_significant_digits():
    """kantk discover's edge 2.83e-5*x + 0.0112 was labelled 0.011 (3 decimals): a constant beside
    a picture of a slope. Constants keep 3 significant digits."""
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "x", fit_params=False)
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0] = torch.tensor([1.0, 0.0, 2.83e-5, 0.0112])
    (_, _, edge), *_ = to_networkx(model).edges(data=True)
    import sympy

    expr = sympy.parse_expr(edge["expression"])  # the test's own trusted text
    x = sympy.Symbol("x")
    assert float(expr.diff(x)) == pytest.approx(2.83e-5, rel=1e-3)
    assert float(expr.subs(x, 0)) == pytest.approx(0.0112, rel=1e-3)


def test_round_off_constants_added_in_a_label_are_dropped_factors_are_not():
    """Significant digits must not turn round-off into text (sin(3.14x + 1.73e-17)): an added
    constant 1e-9 times the largest one goes; a small factor (4.57e-5*exp(9x)) stays."""
    import sympy

    from kantk.export import _round_floats, short_math

    x = sympy.Symbol("x")
    noisy = sympy.Float(0.3771) * sympy.sin(sympy.Float(3.14159) * x + sympy.Float(1.73e-17)) - sympy.Float(
        2.69e-17
    )
    assert short_math(_round_floats(noisy, 3)) == "0.377sin(3.14x)"
    small = sympy.Float(4.57e-5) * sympy.exp(sympy.Float(9.0) * x)
    assert short_math(_round_floats(small, 3)) == short_math(sympy.Float(4.57e-5) * sympy.exp(9 * x))


@needs_dot
def test_names_with_backslashes_are_shown_as_written(tmp_path):
    """Graphviz read dir\\name's "\\n" as a line break and "\\N" as the node id; a name ending in a
    backslash broke the DOT source (syntax error)."""
    names = ["dir\\name", "ratio\\"]
    export_graph(kantk.KAN([2, 1], seed=0), tmp_path / "g.svg", "svg", var_names=names, out_names=["T\\N"])
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    for name in [*names, "T\\N"]:
        assert f">{name}<" in svg, name


def test_names_with_html_entities_are_shown_as_written(tmp_path):
    """Graphviz decodes entities in plain labels too: a CSV column "&alpha;" was drawn as α and
    "&lt;b&gt;" as <b>."""
    import html

    names = ["&alpha;", "a&b"]
    export_graph(
        kantk.KAN([2, 1], seed=0), tmp_path / "g.svg", "svg", var_names=names, out_names=["&lt;b&gt;"]
    )
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    for name in [*names, "&lt;b&gt;"]:
        assert f">{html.escape(name, quote=False)}<" in svg, name  # the SVG text, once decoded, is the name


def test_an_output_product_node_keeps_its_name():
    dot = to_graphviz(kantk.KAN([2, [0, 1]], seed=0), out_names=["energy"])
    assert "energy ×" in dot.source


@pytest.mark.parametrize(
    ("fn", "params", "want"),
    [
        ("sin", (2.0, 1.5, 2e9, 0.0), "2.0e+9*sin(2*x + 1.5)"),  # the shift went beside the factor
        ("x^2", (2.0, 1.5, 2e9, 0.0), "8.0e+9*(x + 0.75)**2"),
        ("sin", (3.14, 1.7e-17, 1.0, 0.0), "sin(3.14*x)"),  # round-off beside 3.14 still goes
        ("x^2", (-1.0, 6.79e-18, 0.376, -0.678), "0.376*x**2 - 0.678"),  # beside x's coefficient 1
    ],
)
def test_edge_labels_keep_shifts_and_print_large_constants_short(fn, params, want):
    import sympy

    model = kantk.KAN([1, 1], seed=0)
    lib = resolve_library("default")
    model.layers[0].set_symbolic_edge(0, 0, lib[fn], "default", params)
    expression = to_networkx(model).edges[(0, 0), (1, 0)]["expression"]
    assert sympy.simplify(sympy.sympify(expression) - sympy.sympify(want)) == 0, expression
    assert len(expression) <= len(want) + 4, expression
    source = to_graphviz(model).source  # the diagram's label, read back from that text
    assert "e+" not in want or "e+9" in source, source
    assert "000000" not in source, source


def test_the_json_file_is_strict_json(tmp_path):
    """A NaN importance (samples outside a sqrt edge's domain) was written as a bare NaN."""
    model = kantk.KAN([2, 1], seed=0)
    lib = resolve_library("default")
    model.layers[0].set_symbolic_edge(0, 0, lib["sqrt"], "default", (1.0, 0.0, 1.0, 0.0))
    x = torch.rand(50, 2) * 2 - 1
    export_graph(model, tmp_path / "g.json", "json", x)
    text = (tmp_path / "g.json").read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    # and the graph read back still draws (a null importance is no importance)
    assert "√" in to_graphviz(nx.node_link_graph(data, edges="links")).source


def test_a_symbolic_edge_with_its_numeric_branch_on_says_so():
    """Both branches add up in the model and in symbolic_formula, but the graph said only sin(x)."""
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sin", fit_params=False)
    edge = to_networkx(model).edges[(0, 0), (1, 0)]
    assert edge["kind"] == "symbolic" and "also_numeric" not in edge
    with torch.no_grad():
        model.layers[0].mask[0, 0] = 1
    edge = to_networkx(model).edges[(0, 0), (1, 0)]
    assert edge["kind"] == "symbolic" and edge["also_numeric"] is True
    assert "sin(x) + numeric" in to_graphviz(model).source


def test_a_plugin_node_operation_nan_on_some_values_is_drawn():
    """A geometric mean (sqrt of the product) is NaN on half the random trial values, and the
    liveness test read NaN as "constant": the live node was left out of every diagram."""
    from kantk.pruners import connected_masks

    class GeoMean(kantk.NodeOperation):
        def forward(self, x):
            return x.prod(dim=-1).sqrt()

        def sympy(self, args):
            import sympy

            return sympy.sqrt(sympy.Mul(*args))

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_node_operations():
            yield kantk.NodeOperationSpec("geomean", GeoMean)

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, {"sum": 1, "geomean": 1}, 1], seed=0, registry=registry)
    assert all(bool(m.all()) for m in connected_masks(model))


@needs_dot
@pytest.mark.parametrize("name", ["a&b <c>", 'q"x'])
def test_a_dot_with_edge_plots_in_a_folder_with_html_characters_renders_its_pictures(tmp_path, name):
    """The pictures' folder went into the DOT's ``IMG SRC`` unescaped: ``kantk export -o
    'a&b <c>.dot' --edge-plots`` said it wrote the file, and dot then refused it (not well-formed)."""
    import html
    import subprocess

    out, folder = tmp_path / f"{name}.dot", tmp_path / f"{name}_edges"
    export_graph(_model(), out, x=torch.rand(16, 3) * 2 - 1, edge_plots=folder, dpi=20)
    pictures = sorted(os.listdir(folder))
    done = subprocess.run(["dot", "-Tsvg", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert pictures and str(folder / pictures[0]) in html.unescape(done.stdout)


def test_a_layer_whose_scores_are_all_zero_is_drawn_faint_as_in_the_activation_plot():
    """Samples on which nothing varies score every edge 0: the diagram drew them all at full colour
    and pen width 3, the activation plot at its faintest."""
    import re

    model = _model()
    x = torch.tensor([[0.3, -0.2, 0.1]]).repeat(16, 1)  # constant inputs: every score 0
    widths = [float(w) for w in re.findall(r"penwidth=\"?([0-9.]+)", to_graphviz(model, x).source)]
    unscored = [float(w) for w in re.findall(r"penwidth=\"?([0-9.]+)", to_graphviz(model).source)]
    assert widths and max(widths) <= 0.6  # the thinnest edges (0.4; 0.6: node-operation wires)
    assert unscored and max(unscored) == 3.0  # without samples importance is unknown: drawn fully
