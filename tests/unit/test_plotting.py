from __future__ import annotations

import dataclasses
import math
import sys
import time

import pytest
import torch
from matplotlib.figure import Figure

import kantk
from kantk.plotting import EDGE_GID, LABEL_GID, symbolic_edge_labels


def _curves(fig: Figure) -> list:
    return [line for ax in fig.axes for line in ax.lines if str(line.get_gid()).startswith(EDGE_GID + "/")]


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.fixture
def model_and_data():
    model = kantk.KAN([3, 4, 2], seed=0)
    with torch.no_grad():
        model.layers[0].mask[1, 2] = 0
        model.layers[1].mask[0, :2] = 0
    return model, torch.rand(64, 3) * 2 - 1


def test_one_curve_per_unmasked_edge_and_nothing_written(model_and_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, x = model_and_data
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fig = kantk.plot_activations(model, x)
    assert isinstance(fig, Figure)
    live = sum(int((layer.mask != 0).sum()) for layer in model.layers)
    assert live == 12 + 8 - 3
    curves = _curves(fig)
    assert len(curves) == live
    gids = {c.get_gid() for c in curves}
    # (layer, i, j): the masked edges 2 -> 1 of layer 0 and 0 -> 0, 1 -> 0 of layer 1 are not drawn
    assert {f"{EDGE_GID}/0/2/1", f"{EDGE_GID}/1/0/0", f"{EDGE_GID}/1/1/0"}.isdisjoint(gids)
    assert {f"{EDGE_GID}/0/1/2", f"{EDGE_GID}/1/2/0", f"{EDGE_GID}/1/0/1"} <= gids
    assert list(tmp_path.iterdir()) == []  # nothing written without path=
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(0.0 <= c.get_alpha() <= 1.0 for c in curves)


def test_curves_span_the_inputs_range_and_follow_importance():
    # y = 2 x1 + 0.01 x2 (identity base, no spline): the x2 edge is far less important.
    model = kantk.KAN([2, 1], base_activation="identity", seed=0)
    with torch.no_grad():
        model.layers[0].coef.zero_()
        model.layers[0].scale_base.copy_(torch.tensor([[2.0, 0.01]]))
    x = torch.stack([torch.linspace(-1, 3, 50), torch.linspace(0, 1, 50)], dim=1)
    fig = kantk.plot_activations(model, x, n_points=25, min_alpha=0.0)
    by_gid = {c.get_gid(): c for c in _curves(fig)}
    strong, weak = by_gid[f"{EDGE_GID}/0/0/0"], by_gid[f"{EDGE_GID}/0/1/0"]  # x1 -> y, x2 -> y
    assert len(strong.get_xdata()) == 25
    assert strong.get_alpha() == pytest.approx(1.0)
    assert weak.get_alpha() < 0.05
    ys = strong.get_ydata()
    assert (ys[1:] > ys[:-1]).all()  # a rising line, drawn left to right


def test_names_and_labels(model_and_data):
    model, x = model_and_data
    fig = kantk.plot_activations(
        model, x, in_vars=["a", "b", "c"], out_vars=["u", "v"], title="net", edge_labels={(1, 3, 1): "sin(x)"}
    )
    texts = _texts(fig)
    assert {"a", "b", "c", "u", "v", "sin(x)"} <= set(texts)
    label = next(t for ax in fig.axes for t in ax.texts if t.get_text() == "sin(x)")
    assert label.get_gid() == f"{LABEL_GID}/1/3/1"  # edge h4 -> v: the order of kantk.fix_symbolic
    assert fig._suptitle is not None and fig._suptitle.get_text() == "net"


def test_symbolic_edges_are_drawn_and_labelled(model_and_data):
    model, x = model_and_data
    assert symbolic_edge_labels(model) == {}
    from kantk.symbolic.library import get_library

    model.layers[0].set_symbolic_edge(1, 2, get_library("minimal")["sin"], "minimal")  # masked edge 2 -> 1
    assert symbolic_edge_labels(model) == {(0, 2, 1): "sin"}  # (layer, i, j)
    fig = kantk.plot_activations(model, x)
    assert f"{EDGE_GID}/0/2/1" in {c.get_gid() for c in _curves(fig)}  # symbolic edges are live
    fixed = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(fixed, 0, 1, 2, "sin")  # the same (layer, i, j) names the same edge
    assert symbolic_edge_labels(fixed) == {(0, 1, 2): "sin"}
    assert "sin" in _texts(fig)
    with torch.no_grad():  # its numeric branch switched back on: the curve is sin plus it
        fixed.layers[0].mask[2, 1] = 1.0
    assert symbolic_edge_labels(fixed) == {(0, 1, 2): "sin + numeric"}  # as the diagram reads


def test_a_constant_edge_is_labelled_with_its_value_not_0():
    """The constant function is named "0"; the edge is its added constant d. A factor -0.193 into
    a product node was labelled 0 on the plot (read as a zero factor), -0.193 on the diagram."""
    model = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "0")
    kantk.fix_symbolic(model, 0, 1, 0, "0")
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0, 3] = -0.19312
        model.layers[0].symbolic_affine[0, 1, 3] = 2.0
    assert symbolic_edge_labels(model) == {(0, 0, 0): "-0.193", (0, 1, 0): "2"}
    with torch.no_grad():  # int() of these raised, or printed 21 digits
        model.layers[0].symbolic_affine[0, 0, 3] = float("inf")
        model.layers[0].symbolic_affine[0, 1, 3] = 1.23e20
    assert symbolic_edge_labels(model) == {(0, 0, 0): "inf", (0, 1, 0): "1.23e+20"}


def test_path_writes_exactly_that_file(model_and_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, x = model_and_data
    kantk.plot_activations(model, x, path=tmp_path / "net.png", dpi=40)
    assert [p.name for p in tmp_path.iterdir()] == ["net.png"]
    assert (tmp_path / "net.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_pyplot_state(model_and_data):
    model, x = model_and_data
    fig = kantk.plot_activations(model, x)
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"
    if "matplotlib.pyplot" in sys.modules:  # loaded by someone else: the figure is not in its registry
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


@pytest.mark.parametrize("basis", ["chebyshev", "rbf"])
def test_other_bases_and_float64(basis):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 2, 1], basis=basis, seed=0)
    fig = kantk.plot_activations(model, torch.rand(16, 2, dtype=torch.float64))
    assert len(_curves(fig)) == 6


def test_bad_arguments_say_what_is_accepted(model_and_data):
    model, x = model_and_data
    with pytest.raises(ValueError, match="in_vars must be a list of 3 names"):
        kantk.plot_activations(model, x, in_vars=["a"])
    with pytest.raises(ValueError, match="out_vars must be a list of 2 names"):
        kantk.plot_activations(model, x, out_vars="uv")
    with pytest.raises(ValueError, match="n_points must be an int >= 2"):
        kantk.plot_activations(model, x, n_points=1)
    with pytest.raises(ValueError, match=r"min_alpha must be a number in \[0, 1\]"):
        kantk.plot_activations(model, x, min_alpha=2)
    for bad in (True, float("nan")):  # True is an int to Python, not an opacity; NaN passed no bound
        with pytest.raises(ValueError, match=r"min_alpha must be a number in \[0, 1\], got"):
            kantk.plot_activations(model, x, min_alpha=bad)
    with pytest.raises(ValueError, match="n_points must be an int >= 2, got True"):
        kantk.plot_activations(model, x, n_points=True)
    for dpi in (
        0,
        -5,
        True,
        float("nan"),
        float("inf"),
    ):  # each used to pass (a broken figure or savefig error)
        with pytest.raises(ValueError, match="dpi must be a finite number > 0"):
            kantk.plot_activations(model, x, dpi=dpi)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        kantk.plot_activations(model, x[:, :2])
    # [3, 4, 2]: (layer 1, out 1, in 3), the old key order, names no edge (layer 1 has 2 outputs)
    with pytest.raises(
        IndexError, match=r"edge_labels \(1, 1, 3\): j \(output node of layer 1\) must be .* \[0, 1\]"
    ):
        kantk.plot_activations(model, x, edge_labels={(1, 1, 3): "sin"})
    with pytest.raises(
        IndexError, match=r"edge_labels: layer must be an int in \[0, 1\] for KAN\[3, 4, 2\], got 2"
    ):
        kantk.plot_activations(model, x, edge_labels={(2, 0, 0): "sin"})
    with pytest.raises(ValueError, match=r"edge_labels keys must be \(layer, i, j\) tuples, got 'x1'"):
        kantk.plot_activations(model, x, edge_labels={"x1": "sin"})
    with pytest.raises(ValueError, match="scores must be a kantk.Attribution of this model"):
        kantk.plot_activations(model, x, scores=kantk.attribution(kantk.KAN([3, 2, 2], seed=0), x))


def test_a_path_without_an_image_suffix_is_refused(tmp_path):
    """path="figure" wrote figure.png, not the path given."""
    model = kantk.KAN([2, 1], seed=0)
    with pytest.raises(ValueError, match="needs an image suffix"):
        kantk.plot_activations(model, torch.rand(10, 2), path=tmp_path / "figure")
    assert list(tmp_path.iterdir()) == []


def test_edges_with_nan_on_part_of_the_range_keep_their_shape_and_their_layer_its_opacities():
    """A sqrt edge sampled on [-1, 1] was drawn flat (the NaN span), and its NaN score faded every
    other edge of the layer to min_alpha."""
    import numpy as np

    model = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sqrt", fit_params=False)
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    by_gid = {c.get_gid(): c for c in _curves(kantk.plot_activations(model, x))}
    y = np.asarray(by_gid[f"{EDGE_GID}/0/0/0"].get_ydata(), dtype=float)
    assert np.isnan(y).any() and len(np.unique(y[np.isfinite(y)])) > 10  # a gap, then the curve
    # the output is NaN, so every score is: importance unknown, drawn fully rather than faded
    assert all(c.get_alpha() == pytest.approx(1.0) for c in by_gid.values())
    scores = dataclasses.replace(kantk.attribution(model, x), edge_scores=(torch.tensor([[math.nan, 0.5]]),))
    by_gid = {c.get_gid(): c for c in _curves(kantk.plot_activations(model, x, scores=scores))}
    assert by_gid[f"{EDGE_GID}/0/1/0"].get_alpha() == pytest.approx(1.0)  # the top finite score
    # NaN at every point (all inputs below 0): drawn as nothing, not a crash
    by_gid = {c.get_gid(): c for c in _curves(kantk.plot_activations(model, -x.abs() - 0.1))}
    assert np.isnan(np.asarray(by_gid[f"{EDGE_GID}/0/0/0"].get_ydata(), dtype=float)).all()


def test_plain_text_escapes_dollar_signs():
    from kantk.plotting import plain_text

    assert plain_text("price $ (US$)") == r"price \$ (US\$)"
    fig = kantk.plot_activations(kantk.KAN([2, 1], seed=0), torch.rand(8, 2), in_vars=["a$^$b", "c"])
    with pytest.raises(ValueError):
        fig.canvas.draw()  # unescaped, "a$^$b" is mathtext that fails to parse
    fig = kantk.plot_activations(
        kantk.KAN([2, 1], seed=0), torch.rand(8, 2), in_vars=[plain_text("a$^$b"), "c"]
    )
    fig.canvas.draw()


@pytest.mark.parametrize("suffix", ["svg", "pdf", "png"])
def test_the_same_drawing_saves_byte_for_byte_the_same(tmp_path, suffix):
    """Figures kept under version control: two runs' svg (random clip-path ids, a date) and pdf
    (a creation date) differed."""
    model = kantk.KAN([2, 2, 1], seed=0)
    x = torch.rand(30, 2, generator=torch.Generator().manual_seed(0))
    paths = [tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"]
    for path in paths:
        kantk.plot_activations(model, x, path=path)
        if suffix == "pdf":
            time.sleep(1.1)  # the pdf's date has seconds: two saves in one second matched anyway
    assert paths[0].read_bytes() == paths[1].read_bytes()
