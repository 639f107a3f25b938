"""The symbolic branch of KANLayer: c * f(a * x + b) + d on chosen edges."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import kantk
from kantk.layer import KANLayer
from kantk.symbolic import get_library

LIB = get_library("default")


def _layer_with_symbolic_edges() -> KANLayer:
    layer = KANLayer(3, 2, basis="bspline")
    layer.set_symbolic_edge(0, 1, LIB["sin"], "default", (2.0, 0.5, 1.5, -0.25))
    layer.set_symbolic_edge(1, 1, LIB["sin"], "default", (-1.0, 0.0, 0.5, 0.1))
    layer.set_symbolic_edge(1, 2, LIB["x^2"], "default", (1.0, 0.3, -2.0, 0.0))
    return layer


def test_set_symbolic_edges_fixes_many_at_once_and_checks_every_edge_first():
    """set_symbolic_edge regrouped the layer's functions by scanning all out * in names on every
    call (formula_to_kan: 8.6 s for a 725-character formula, 0.8 s in one batch), and a bad
    ``affine`` was refused after the layer had gained its symbolic parameters."""
    one_by_one = _layer_with_symbolic_edges()
    batched = KANLayer(3, 2, basis="bspline")
    batched.load_state_dict({k: v for k, v in one_by_one.state_dict().items() if "symbolic" not in k})
    batched.set_symbolic_edges(
        [
            (0, 1, LIB["sin"], "default", (2.0, 0.5, 1.5, -0.25)),
            (1, 1, LIB["sin"], "default", (-1.0, 0.0, 0.5, 0.1)),
            (1, 2, LIB["x^2"], "default", (1.0, 0.3, -2.0, 0.0)),
        ]
    )
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batched(x), one_by_one(x))
    assert [(g.function.name, g.qs, g.ps) for g in batched._symbolic_groups] == [
        ("sin", (0, 1), (1, 1)),
        ("x^2", (1,), (2,)),
    ]
    fresh = KANLayer(3, 2)
    with pytest.raises(ValueError, match="4 numbers"):
        fresh.set_symbolic_edges([(0, 0, LIB["sin"], "default", None), (0, 1, LIB["sin"], "default", (1, 2))])
    with pytest.raises(IndexError):
        fresh.set_symbolic_edges([(0, 0, LIB["sin"], "default", None), (5, 0, LIB["sin"], "default", None)])
    assert not fresh.has_symbolic and fresh.mask.all()  # nothing changed


def test_no_symbolic_state_until_used():
    layer = KANLayer(3, 2)
    assert not layer.has_symbolic
    assert "symbolic_affine" not in dict(layer.named_parameters())
    assert set(layer.state_dict()) == {"coef", "scale_base", "scale_sp", "mask"} | {
        f"basis.{k}" for k in layer.basis.state_dict()
    }
    assert "symbolic" not in layer.config()
    # nor (out, in) tables of names: a wide layer built a Python list of out * in entries
    assert layer._symbolic_names is None and layer._symbolic_libraries is None
    assert layer.symbolic_edges() == [] and layer.symbolic_function(1, 2) is None
    assert layer._symbolic_names is None
    assert layer.symbolic_names == [[None] * 3] * 2  # made on first use


def test_forward_adds_symbolic_edges_and_switches_numeric_off():
    layer = _layer_with_symbolic_edges()
    x = torch.rand(16, 3) * 2 - 1
    numeric = layer.numeric_activations(x)  # masked: symbolic edges give 0
    assert torch.equal(numeric[:, 0, 1], torch.zeros(16))
    expected = numeric.sum(-1)
    expected[:, 0] += 1.5 * torch.sin(2 * x[:, 1] + 0.5) - 0.25
    expected[:, 1] += 0.5 * torch.sin(-x[:, 1]) + 0.1
    expected[:, 1] += -2.0 * (x[:, 2] + 0.3) ** 2
    torch.testing.assert_close(layer(x), expected)
    acts = layer.activations(x)
    torch.testing.assert_close(acts.sum(-1), layer(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts[:, 1, 2], -2.0 * (x[:, 2] + 0.3) ** 2)
    assert layer.live_edges().all()
    assert sorted(layer.symbolic_edges()) == [(0, 1), (1, 1), (1, 2)]


def test_affine_parameters_get_gradients():
    layer = _layer_with_symbolic_edges()
    x = torch.rand(16, 3) * 2 - 1
    layer(x).square().sum().backward()
    grad = layer.symbolic_affine.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad[layer.symbolic_mask.bool()].abs().sum(-1) > 0).all()
    assert (grad[~layer.symbolic_mask.bool()] == 0).all()


def test_clear_restores_numeric_edge():
    layer = KANLayer(2, 2)
    x = torch.rand(8, 2)
    before = layer(x)
    layer.set_symbolic_edge(1, 0, LIB["exp"], "default")
    assert not torch.allclose(layer(x), before)
    layer.clear_symbolic_edge(1, 0)
    torch.testing.assert_close(layer(x), before)
    with pytest.raises(ValueError, match="not symbolic"):
        layer.clear_symbolic_edge(1, 0)
    with pytest.raises(IndexError, match="outside"):
        layer.set_symbolic_edge(2, 0, LIB["exp"], "default")


def test_config_round_trip_through_from_config_and_copies():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([3, 2], seed=0)
    model.layers[0] = _layer_with_symbolic_edges().double()
    config = model.config()
    assert config["layers"][0]["symbolic"]["functions"] == [[None, "sin", None], [None, "sin", "x^2"]]
    rebuilt = kantk.KAN.from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(10, 3, dtype=torch.float64)
    torch.testing.assert_close(rebuilt(x), model(x))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(clone(x), model(x))
    assert "symbolic_edges=3" in repr(model)


def test_copy_symbolic_from_a_subset_of_edges():
    source = _layer_with_symbolic_edges()
    small = KANLayer(2, 1)
    small.copy_symbolic_from(source, rows=torch.tensor([1]), cols=torch.tensor([1, 2]))
    assert small.symbolic_names == [["sin", "x^2"]]
    torch.testing.assert_close(small.symbolic_affine[0], source.symbolic_affine[1, 1:])
    with pytest.raises(ValueError, match="do not fit"):
        small.copy_symbolic_from(source)


def test_load_symbolic_config_errors():
    layer = KANLayer(2, 1)
    with pytest.raises(ValueError, match="1 x 2"):
        layer.load_symbolic_config({"functions": [["sin"]], "libraries": [["default"]]})
    with pytest.raises(kantk.UnknownComponentError, match="library 'mine'"):
        layer.load_symbolic_config({"functions": [["sin", None]], "libraries": [["mine", None]]})


def test_save_load_keeps_symbolic_edges(tmp_path):
    model = kantk.KAN([3, 2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 1, 0, "sin")
    kantk.fix_symbolic(model, 1, 0, 0, "exp")
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 1] = torch.tensor([2.0, 0.5, 1.5, -0.25])
    kantk.save(model, tmp_path / "m.kantk")
    loaded = kantk.load(tmp_path / "m.kantk")
    x = torch.rand(12, 3)
    assert torch.equal(loaded(x), model(x))
    assert loaded.config() == model.config()
    assert loaded.layers[1].symbolic_names == [["exp", None]]


_FUNCTIONS = ("sin", "x^2", "tanh", "x")


def _symbolic_table(n_out: int, n_in: int, numeric_every: int = 0) -> dict[str, list[list[str | None]]]:
    """A ``"symbolic"`` config entry cycling through :data:`_FUNCTIONS`.

    Every ``numeric_every``-th edge is numeric."""
    names: list[list[str | None]] = [
        [
            None if numeric_every and (q * n_in + p) % numeric_every == 0 else _FUNCTIONS[(q + 2 * p) % 4]
            for p in range(n_in)
        ]
        for q in range(n_out)
    ]
    libraries = [[None if name is None else "default" for name in row] for row in names]
    return {"functions": names, "libraries": libraries}


def test_load_symbolic_config_matches_setting_each_edge():
    table = _symbolic_table(5, 7, numeric_every=3)
    by_edge = KANLayer(7, 5)
    for q, row in enumerate(table["functions"]):
        for p, name in enumerate(row):
            if name is not None:
                by_edge.set_symbolic_edge(q, p, LIB[name], "default")
    at_once = KANLayer(7, 5)
    at_once.load_symbolic_config(table)
    assert at_once.symbolic_names == by_edge.symbolic_names == table["functions"]
    assert at_once.symbolic_libraries == by_edge.symbolic_libraries
    assert torch.equal(at_once.mask, by_edge.mask)
    assert torch.equal(at_once.symbolic_mask, by_edge.symbolic_mask)
    assert torch.equal(at_once.symbolic_affine, by_edge.symbolic_affine)

    def groups(layer: KANLayer) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        return sorted((g.function.name, g.qs, g.ps) for g in layer._symbolic_groups)

    assert groups(at_once) == groups(by_edge)
    at_once.load_state_dict(by_edge.state_dict())
    x = torch.rand(8, 7) * 2 - 1
    assert torch.equal(at_once(x), by_edge(x))


def test_load_symbolic_config_that_fails_leaves_the_layer_unchanged():
    layer = _layer_with_symbolic_edges()
    before = (copy.deepcopy(layer.symbolic_names), layer.mask.clone(), layer.symbolic_mask.clone())
    table = _symbolic_table(2, 3)
    table["functions"][1][2] = "no_such_function"
    with pytest.raises(kantk.UnknownComponentError):
        layer.load_symbolic_config(table)
    assert layer.symbolic_names == before[0]
    assert torch.equal(layer.mask, before[1]) and torch.equal(layer.symbolic_mask, before[2])


def test_many_symbolic_edges_load_with_a_constant_number_of_group_rebuilds(tmp_path, monkeypatch):
    """A 40 x 40 all-symbolic layer: same outputs after load, groups rebuilt once per layer, not per edge.

    A model file is untrusted: loading must stay linear in its size (issue 16). Rebuilding the
    groups per edge made loading quadratic in the number of symbolic edges.
    """
    model = kantk.KAN([40, 40, 3], seed=0)
    model.layers[0].load_symbolic_config(_symbolic_table(40, 40))
    kantk.fix_symbolic(model, 1, 5, 2, "sin", fit_params=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.layers:
            layer.symbolic_affine.copy_(torch.rand(layer.symbolic_affine.shape, generator=generator) - 0.5)
    assert len(model.layers[0].symbolic_edges()) == 1600
    path = tmp_path / "many.kantk"
    kantk.save(model, path)

    calls: list[KANLayer] = []
    rebuild = KANLayer._rebuild_symbolic_groups

    def counting_rebuild(self: KANLayer) -> None:
        calls.append(self)
        rebuild(self)

    monkeypatch.setattr(KANLayer, "_rebuild_symbolic_groups", counting_rebuild)
    loaded = kantk.load(path)
    assert len(calls) <= 2 * len(model.layers)
    assert loaded.config() == model.config()
    assert len(loaded.layers[0]._symbolic_groups) == len(_FUNCTIONS)
    x = torch.rand(16, 40, generator=generator) * 2 - 1
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_symbolic_edges_under_bf16_autocast(basis):
    """Chebyshev's and RBF's edge sums come back in bfloat16 under autocast; adding the float32
    symbolic terms with index_add refused mixed dtypes (kantk.fit(precision="bf16-mixed") after
    auto_symbolic failed)."""
    layer = KANLayer(2, 3, basis)
    layer.set_symbolic_edge(1, 0, LIB["sin"], "default", (2.0, 0.5, 1.5, -0.25))
    x = torch.rand(16, 2) * 2 - 1
    want, acts = layer(x), layer.activations(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_acts = layer(x), layer.activations(x)
    # bfloat16 keeps 8 bits: 2**-8 relative, on sums of a few terms of size ~1
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    torch.testing.assert_close(got_acts.float(), acts, atol=0.05, rtol=0.05)


def test_a_layer_pickled_before_the_lazy_tables_loads():
    """torch.save(model) of an older kantk kept the tables as symbolic_names/symbolic_libraries in
    the instance dict; they are properties now and read _symbolic_names (AttributeError)."""
    layer = _layer_with_symbolic_edges()
    state = dict(layer.__dict__)
    state["symbolic_names"] = state.pop("_symbolic_names")
    state["symbolic_libraries"] = state.pop("_symbolic_libraries")
    old = KANLayer.__new__(KANLayer)
    old.__setstate__(state)
    assert old.symbolic_edges() == layer.symbolic_edges() and old.symbolic_names == layer.symbolic_names
    assert old.config() == layer.config()
