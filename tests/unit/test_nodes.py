"""Node operations in a model: product nodes (KAN 2.0's MultKAN), the spelling, save/load, formula."""

from __future__ import annotations

import json

import pytest
import torch

import kantk
from kantk.nodes import NodeLayout, parse_widths


def _x(n: int, batch: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, generator=gen, dtype=torch.float64) * 2 - 1


def test_pykan_spelling_gives_node_counts_and_subnodes():
    model = kantk.KAN([2, [0, 1], 1], seed=0)
    assert model.widths == [2, 1, 1]
    assert model.width_spec == [2, [0, 1], 1]
    assert model.layers[0].out_features == 2 and model.layers[0].out_nodes == 1  # two sub-nodes
    assert model.layers[1].nodes is None
    assert model.has_node_operations


def test_pykan_all_list_spelling_is_the_same_model():
    model = kantk.KAN([[2, 0], [0, 1], [1, 0]], seed=0)
    assert model.width_spec == [2, [0, 1], 1] and model.widths == [2, 1, 1]
    assert model.config() == kantk.KAN([2, [0, 1], 1], seed=0).config()


def test_product_node_multiplies_its_subnodes():
    model = kantk.KAN([3, [1, 2], 2], mult_arity=3, seed=0).double()
    x = _x(3)
    layer = model.layers[0]
    sub = layer.subnode_values(x)  # (batch, 1 + 2 * 3)
    assert sub.shape == (32, 7)
    nodes = layer(x)
    want = torch.stack([sub[:, 0], sub[:, 1:4].prod(dim=1), sub[:, 4:7].prod(dim=1)], dim=1)
    assert torch.equal(nodes, want)
    assert torch.equal(model(x), model.layers[1](want))


def test_per_node_arity_lists_like_pykan():
    model = kantk.KAN([2, [1, 2], 1], mult_arity=[[], [2, 3], []], seed=0)
    assert model.layers[0].out_features == 1 + 2 + 3
    assert model.mult_arity == [[], [2, 3], []]
    rebuilt = kantk.KAN.from_config(json.loads(json.dumps(model.config())))
    assert rebuilt.config() == model.config()


def test_plain_widths_unchanged():
    model = kantk.KAN([2, 3, 1], seed=0)
    config = model.config()
    assert config["widths"] == [2, 3, 1] and "mult_arity" not in config
    assert all("nodes" not in layer for layer in config["layers"])
    assert not model.has_node_operations and all(layer.nodes is None for layer in model.layers)
    # an all-sum spelling is the same model, parameter for parameter
    same = kantk.KAN([2, [3, 0], {"sum": 1}], seed=0)
    assert same.config() == config
    for a, b in zip(model.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)


def test_gradients_reach_every_parameter():
    model = kantk.KAN([2, [1, 1], 1], seed=0).double()
    model(_x(2)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_config_and_save_load_round_trip(tmp_path):
    model = kantk.KAN([3, {"sum": 1, "mult": 2}, [0, 1], 1], mult_arity=3, seed=0).double()
    path = tmp_path / "m.kantk"
    kantk.save(model, path)
    loaded = kantk.load(path)
    assert loaded.widths == model.widths == [3, 3, 1, 1]
    assert loaded.width_spec == [3, [1, 2], [0, 1], 1] and loaded.mult_arity == 3
    x = _x(3)
    assert torch.equal(loaded(x), model(x))


def test_load_refuses_nodes_that_disagree_with_widths(tmp_path):
    from safetensors.torch import save_file

    from kantk.io import CONFIG_KEY, FORMAT_KEY, FORMAT_VERSION

    model = kantk.KAN([2, [0, 1], 1], seed=0)
    config = model.config()
    config["layers"][0]["nodes"] = [["mult", 1, 3]]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "bad.kantk"
    save_file(tensors, path, metadata={FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: json.dumps(config)})
    with pytest.raises(kantk.KantkFileError, match=r"layers\[0\]\.nodes"):
        kantk.load(path)
    config["layers"][0].pop("nodes")
    config["widths"] = [2, [0, 10**7], 1]
    save_file(tensors, path, metadata={FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: json.dumps(config)})
    with pytest.raises(kantk.KantkFileError, match=r"widths\[1\]"):
        kantk.load(path)


def test_unknown_operation_names_the_known_ones(tmp_path):
    with pytest.raises(kantk.UnknownComponentError, match="known node operation names: mult, sum"):
        kantk.KAN([2, {"sum": 1, "max": 1}, 1])


@pytest.mark.parametrize(
    ("widths", "arity", "message"),
    [
        ([[1, 1], 3, 1], 2, "inputs"),
        ([2, [0, 0], 1], 2, "at least one node"),
        ([2, [1, -1], 1], 2, "widths"),
        ([2, [1, 1, 1], 1], 2, "widths"),
        ([2, "3", 1], 2, "widths"),
        ([2, [0, 1], 1], 0, "mult_arity"),
        ([2, [0, 1], 1], [2, 2], "mult_arity"),
        ([2, [0, 2], 1], [[], [2], []], "mult_arity"),
        ([2, 3, 1], [[], [2], []], "no product nodes"),
        # a flat per-layer list: its entries for layers without product nodes were dropped silently
        ([2, [1, 1], 1], [7, 3, 9], r"node layer 0 is 7 but that layer has no product nodes; give \[\]"),
    ],
)
def test_bad_spellings_say_what_is_accepted(widths, arity, message):
    with pytest.raises(ValueError, match=message):
        kantk.KAN(widths, mult_arity=arity)


def test_layout_select_keeps_groups_and_arities():
    _, layouts = parse_widths([2, {"sum": 2, "mult": 2}, 1], [[], [2, 3], []])
    layout = layouts[1]
    assert isinstance(layout, NodeLayout)
    assert layout.n_nodes == 4 and layout.n_sub == 2 + 2 + 3
    assert list(layout.subnodes(3)) == [4, 5, 6]
    assert layout.subnode_index([1, 3]).tolist() == [1, 4, 5, 6]
    kept = layout.select([0, 3])
    assert kept.config() == [["sum", 1, 1], ["mult", 1, 3]] and kept.spelling() == [1, 1]


def test_formula_shows_the_product():
    import sympy

    model = kantk.KAN([2, [0, 1], 1], seed=0).double()
    x1, x2 = sympy.symbols("x1 x2")
    kantk.fix_symbolic(model, 0, 0, 0, "x", fit_params=False)
    kantk.fix_symbolic(model, 0, 1, 1, "x", fit_params=False)
    kantk.fix_symbolic(model, 1, 0, 0, "x", fit_params=False)
    with torch.no_grad():  # the cross edges x1 -> sub-node 1, x2 -> sub-node 0 off
        model.layers[0].mask[1, 0] = 0
        model.layers[0].mask[0, 1] = 0
    (expr,) = kantk.symbolic_formula(model, digits=None)
    assert sympy.simplify(expr - x1 * x2) == 0
    x = _x(2)
    assert torch.allclose(model(x)[:, 0], x[:, 0] * x[:, 1], atol=1e-12)


def test_formula_matches_a_product_model_with_numeric_edges():
    model = kantk.KAN([2, [1, 1], 1], seed=0).double()
    x = _x(2, batch=64)
    with pytest.warns(UserWarning, match="still numeric"):
        exprs = kantk.symbolic_formula(model, digits=None, simplify=False)
    f = kantk.formula_to_callable(exprs, var_names=["x1", "x2"])
    assert abs(f(x.numpy())[:, 0] - model(x)[:, 0].detach().numpy()).max() < 1e-10  # float64 rounding


def test_formula_keeps_the_live_numeric_branch_of_a_symbolic_edge():
    model = kantk.KAN([2, 2, 1], seed=0).double()
    x = _x(2, batch=64)
    kantk.fix_symbolic(model, 0, 0, 1, "sin", fit_params=False)
    with torch.no_grad():
        model.layers[0].mask[1, 0] = 1  # both branches of edge 0 -> 1 are live
    assert (0, 0, 1) in kantk.symbolic.formula.numeric_edges(model)
    with pytest.warns(UserWarning, match="f_0_0_1"):
        exprs = kantk.symbolic_formula(model, digits=None, simplify=False)
    f = kantk.formula_to_callable(exprs, var_names=["x1", "x2"])
    assert abs(f(x.numpy())[:, 0] - model(x)[:, 0].detach().numpy()).max() < 1e-10


def test_update_grid_follows_the_node_values():
    model = kantk.KAN([2, [0, 1], 1], seed=0).double()
    x = _x(2, batch=200) * 3
    before = model(x)
    model.update_grid(x)
    layer1_grid = model.layers[1].basis.grid
    nodes = model.layers[0](x)
    assert layer1_grid[0, 3] <= nodes.min() + 1e-9 and layer1_grid[0, -4] >= nodes.max() - 1e-9
    assert torch.isfinite(model(x)).all() and before.shape == model(x).shape


def test_a_file_needing_an_unregistered_operation_names_it(tmp_path):
    class MaxNode(kantk.NodeOperation):
        def forward(self, x):
            return x.amax(dim=-1)

        def sympy(self, args):
            import sympy

            return sympy.Max(*args)

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_node_operations():
            yield kantk.NodeOperationSpec("max", MaxNode)

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, {"sum": 1, "max": 1}, 1], seed=0, registry=registry)
    assert model.width_spec == [2, {"sum": 1, "max": 1}, 1]
    kantk.save(model, tmp_path / "m.kantk")
    back = kantk.load(tmp_path / "m.kantk", registry=registry)
    x = _x(2).float()
    assert torch.equal(back(x), model(x))
    from kantk.io import MissingPluginError

    with pytest.raises(MissingPluginError, match="unknown node operation 'max'"):
        kantk.load(tmp_path / "m.kantk")
