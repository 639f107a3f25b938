from __future__ import annotations

from pathlib import Path

import pytest
import torch

import kantk
from kantk.model import default_dtype
from kantk.pruners import PruneDecision
from kantk.pruning import PrunePlan, apply_masks, normalise_decision, plan_pruning, shrink

BASES = {
    "bspline": {"grid_size": 5, "order": 3},
    "chebyshev": {"degree": 4},
    "rbf": {"num_centers": 6},
}


def _kill_hidden_nodes(model: kantk.KAN, layer: int, nodes: list[int]) -> None:
    """Zero every coefficient and scale of the edges into and out of hidden ``nodes``."""
    with torch.no_grad():
        into, out_of = model.layers[layer - 1], model.layers[layer]
        for j in nodes:
            for t in (into.coef, into.scale_base, into.scale_sp):
                t[j].zero_()
            for t in (out_of.coef, out_of.scale_base, out_of.scale_sp):
                t[:, j].zero_()


def _state(model: kantk.KAN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("basis", sorted(BASES))
def test_dead_hidden_nodes_are_removed_and_outputs_kept(basis):
    with default_dtype(torch.float64):
        model = kantk.KAN([3, 6, 4, 2], basis=basis, basis_kwargs=BASES[basis], seed=0)
    x = torch.rand(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.update_grid(x)  # per-input grids, so slicing the basis buffers matters
    _kill_hidden_nodes(model, 1, [1, 4])
    _kill_hidden_nodes(model, 2, [0])
    before = _state(model)

    small = kantk.prune(model, x, node_th=1e-2, edge_th=0.0)

    assert small.widths == [3, 4, 3, 2]
    assert isinstance(small, kantk.KAN) and small is not model
    torch.testing.assert_close(small(x), model(x), atol=1e-6, rtol=0)  # dead nodes contributed nothing
    x_new = torch.rand(50, 3, dtype=torch.float64) * 4 - 2  # also off the data, where extrapolating
    torch.testing.assert_close(small(x_new), model(x_new), atol=1e-6, rtol=0)
    assert _same_state(before, _state(model))
    assert small.layers[0].coef.dtype == torch.float64
    assert all(layer.basis_name == basis for layer in small.layers)


def test_kept_tensors_are_the_right_slices():
    model = kantk.KAN([2, 5, 1], seed=3)
    x = torch.rand(128, 2) * 2 - 1
    model.update_grid(x)
    _kill_hidden_nodes(model, 1, [0, 2, 3])
    plan = plan_pruning(model, x, edge_th=0.0)
    assert [k.tolist() for k in plan.kept_nodes] == [[0, 1], [1, 4], [0]]
    small = shrink(model, plan)
    keep = torch.tensor([1, 4])
    assert torch.equal(small.layers[0].coef, model.layers[0].coef[keep])
    assert torch.equal(small.layers[1].scale_sp, model.layers[1].scale_sp[:, keep])
    assert torch.equal(small.layers[0].basis.grid, model.layers[0].basis.grid)  # inputs all kept
    assert torch.equal(small.layers[1].basis.grid, model.layers[1].basis.grid[keep])


@pytest.mark.parametrize("basis", sorted(BASES))
def test_pruning_inputs_slices_the_basis_buffers(basis):
    model = kantk.KAN([3, 4, 1], basis=basis, basis_kwargs=BASES[basis], seed=0)
    x = torch.rand(128, 3) * torch.tensor([1.0, 3.0, 0.5])
    model.update_grid(x)
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0  # input 2 is cut off
    plan = plan_pruning(model, x, prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert plan.kept_nodes[0].tolist() == [0, 2]
    small = shrink(model, plan)
    assert small.widths == [2, 4, 1]
    for key, value in model.layers[0].basis.state_dict().items():
        sliced = small.layers[0].basis.state_dict()[key]
        if value.dim() and value.shape[0] == 3:
            assert torch.equal(sliced, value[[0, 2]]), key
    torch.testing.assert_close(small(x[:, [0, 2]]), model(x), atol=1e-6, rtol=0)


def test_output_equals_the_masked_original_when_live_nodes_go():
    model = kantk.KAN([2, 5, 3, 1], seed=4)
    x = torch.rand(200, 2) * 2 - 1
    plan = plan_pruning(model, x, pruner="topk_edges", k=1)
    small = shrink(model, plan)
    reference = apply_masks(model, plan)
    assert small.widths == plan.widths and small.widths[1] < 5
    torch.testing.assert_close(small(x), reference(x), atol=1e-6, rtol=0)
    # the reference is really masked: edges of removed nodes are gone from it
    removed = sorted(set(range(5)) - set(plan.kept_nodes[1].tolist()))
    assert (reference.layers[0].mask[removed] == 0).all()
    assert (reference.layers[1].mask[:, removed] == 0).all()


def test_nodes_left_without_outgoing_edges_cascade_away():
    model = kantk.KAN([2, 3, 3, 1], seed=0)
    masks = [
        torch.ones(3, 2, dtype=torch.bool),
        torch.ones(3, 3, dtype=torch.bool),
        torch.ones(1, 3, dtype=torch.bool),
    ]
    masks[2][0, 1:] = False  # only node 0 of hidden layer 2 reaches the output
    masks[1][0, 2] = False  # ...and it listens to hidden nodes 0 and 1 of layer 1 only
    plan = normalise_decision(model, masks)
    assert [k.tolist() for k in plan.kept_nodes] == [[0, 1], [0, 1], [0], [0]]
    assert plan.edge_masks[0][2].sum() == 0  # node 2 of layer 1 lost its outgoing edge -> its inputs too


def test_a_node_kept_alive_by_a_constant_is_kept():
    # no incoming edges, but its (constant) outgoing edges still shift the output: it stays
    model = kantk.KAN([2, 2, 1], seed=0)
    masks = [torch.tensor([[True, True], [False, False]]), torch.ones(1, 2, dtype=torch.bool)]
    plan = normalise_decision(model, masks)
    assert plan.widths == [2, 2, 1]


def test_a_product_node_that_lost_a_factor_keeps_no_edges_into_its_other_factors():
    # x3 + 0.04*x1*(x1 + x2): the threshold pruner removed the edges into the factor x1 + x2, so
    # the product is 0 whatever the factor x1 does; its edge would train for nothing
    model = kantk.formula_to_kan("x3 + 0.04*x1*(x1 + x2)", product="mult", dtype=torch.float64)
    live = [layer.live_edges() for layer in model.layers]
    factors = model.layers[0].live_edges()[:, :2].any(dim=1).nonzero().flatten().tolist()
    assert len(factors) == 2  # the sub-nodes x1 and x1 + x2
    masks = [m.clone() for m in live]
    masks[0][factors[1]] = False
    plan = normalise_decision(model, masks)
    assert not plan.edge_masks[0][factors].any()  # both factors left without edges
    assert plan.edge_masks[0].sum() == 1 and plan.widths == model.widths  # x3's edge; the node stays
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    asked = apply_masks(model, PrunePlan(plan.kept_nodes, tuple(masks), None))
    torch.testing.assert_close(apply_masks(model, plan)(x), asked(x))  # the function the decision asked for


def test_fed_nodes_tells_which_nodes_an_input_reaches():
    from kantk.pruners import fed_nodes

    model = kantk.formula_to_kan("x3 + 0.04*x1*(x1 + x2)", product="mult", dtype=torch.float64)
    live = [layer.live_edges() for layer in model.layers]
    assert [f.tolist() for f in fed_nodes(model, live)] == [[True] * 3, [True, True], [True]]
    factors = live[0][:, :2].any(dim=1).nonzero().flatten().tolist()
    emptied = [m.clone() for m in live]
    emptied[0][factors[1]] = False  # the factor x1 + x2 loses its edges: the product is 0
    fed = fed_nodes(model, emptied)
    assert fed[1].tolist().count(False) == 1 and fed[2].tolist() == [True]  # x3 still reaches y


def test_the_threshold_pruner_keeps_a_nearly_constant_factor_of_a_kept_product():
    # x1 * (x2 -> 3 + 1e-6 x2): the factor's edge scores near 0 (its spread is tiny), so it was
    # removed and the product became 0 (RMSE 1.7 after a refit); it scales the product: it stays
    model = kantk.formula_to_kan("x1*x2", product="mult", dtype=torch.float64)
    layer = model.layers[0]
    (edge,) = [(q, p) for q, p in layer.symbolic_edges() if p == 1]
    with torch.no_grad():
        layer.symbolic_affine[edge] = torch.tensor([1.0, 0.0, 1e-6, 3.0], dtype=torch.float64)
    x = torch.rand(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(kantk.attribution(model, x).edge_scores[0][edge]) < 3e-2  # below edge_th
    for prune_inputs in (False, True):  # the factor's input scores low too: it stays with its edge
        pruned = kantk.prune(model, x, prune_inputs=prune_inputs)
        assert pruned.widths == [2, 1, 1]
        torch.testing.assert_close(pruned(x), model(x))
    # a factor fed by a hidden node that scores below node_th: the node stays with the edge
    deep = kantk.formula_to_kan("sin(x1 + x2)*(3 + 1e-7*sin(x2 + x3))", product="mult", dtype=torch.float64)
    x3 = torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kept = kantk.prune(deep, x3)
    assert float((kept(x3) - deep(x3)).abs().max()) < 1e-5 * float(deep(x3).abs().max())
    # the factor's hidden source scores low and so does its only edge in: both stay (kept without
    # its edge in, the node was 0 and so was the product)
    hidden = kantk.KAN([2, 2, [0, 1], 1], seed=0).double()
    for l, i, j, name, abcd in [
        (0, 0, 0, "x", [1, 0, 1, 0]),
        (0, 1, 1, "x", [1, 0, 5e-7, 2.0]),  # h2 = 2 + 5e-7 x2
        (1, 0, 0, "x", [1, 0, 1, 0]),
        (1, 1, 1, "x", [1, 0, 1, 0]),
        (2, 0, 0, "x", [1, 0, 1, 0]),  # y = x1 * h2
    ]:
        kantk.fix_symbolic(hidden, l, i, j, name, fit_params=False)
        with torch.no_grad():
            hidden.layers[l].symbolic_affine[j, i] = torch.tensor(abcd, dtype=torch.float64)
    for layer in hidden.layers:
        with torch.no_grad():
            layer.mask.zero_()
    torch.testing.assert_close(hidden(x), x[:, :1] * (2 + 5e-7 * x[:, 1:]))
    assert float((kantk.prune(hidden, x)(x) - hidden(x)).abs().max()) < 1e-5
    # a product node that loses every factor's edges goes the way of a sum node: all removed
    with pytest.warns(UserWarning, match="would remove every node of the hidden layer 1"):
        weak = kantk.prune(model, x, node_th=0.0, edge_th=10.0)
    assert int(weak.layers[0].live_edges().sum()) == 0


def test_inputs_are_kept_unless_asked():
    model = kantk.KAN([3, 2, 1], seed=0)
    masks = [torch.tensor([[True, False, True], [True, False, True]]), torch.ones(1, 2, dtype=torch.bool)]
    assert normalise_decision(model, masks).widths == [3, 2, 1]
    assert normalise_decision(model, masks, prune_inputs=True).widths == [2, 2, 1]
    chosen = PruneDecision(tuple(masks), input_nodes=torch.tensor([0]))
    assert normalise_decision(model, chosen, prune_inputs=True).kept_nodes[0].tolist() == [0]


def test_a_layer_never_vanishes():
    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(64, 2) * 2 - 1
    with pytest.warns(UserWarning, match="every node of the hidden layer 1"):
        small = kantk.prune(model, x, node_th=1e9)
    assert small.widths == [2, 1, 1]
    assert torch.equal(small(x), torch.zeros(64, 1))  # nothing left: KAN outputs are sums of live edges


def test_masked_edges_stay_masked():
    model = kantk.KAN([2, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].mask[1, 0] = 0
    plan = plan_pruning(model, pruner="magnitude", threshold=0.0)
    assert not plan.edge_masks[0][1, 0]
    small = shrink(model, plan)
    assert small.layers[0].mask[1, 0] == 0


def test_original_is_untouched_and_rng_is_not_consumed():
    model = kantk.KAN([3, 5, 2], seed=0)
    x = torch.rand(64, 3) * 2 - 1
    before = _state(model)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    kantk.prune(model, x, pruner="topk_edges", k=1)
    assert torch.equal(torch.rand(3), expected)
    assert _same_state(before, _state(model))


def test_prune_keeps_training_mode_and_the_result_trains():
    model = kantk.KAN([2, 4, 1], seed=0)
    model.eval()
    small = kantk.prune(model, torch.rand(32, 2), pruner="topk_edges", k=1)
    assert not small.training
    small(torch.rand(8, 2)).sum().backward()
    assert all(p.grad is not None for p in small.parameters())


def test_frozen_parameters_stay_frozen():
    """A frozen scale_sp (docs/interpretability.md's strictly local updates) stays frozen in the
    pruned model, as refine keeps the flags; the others still learn."""
    model = kantk.KAN([2, 4, 1], seed=0)
    for layer in model.layers:
        layer.scale_sp.requires_grad_(False)
    small = kantk.prune(model, torch.rand(32, 2), pruner="topk_edges", k=1)
    flags = {name: p.requires_grad for name, p in small.named_parameters()}
    assert flags == {name: not name.endswith("scale_sp") for name in flags}
    assert any(name.endswith("scale_sp") for name in flags)
    small(torch.rand(8, 2)).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in small.parameters())


def test_unknown_pruner_and_options_are_reported():
    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(16, 2)
    with pytest.raises(
        kantk.UnknownComponentError, match="known pruner names: .*magnitude.*threshold.*topk_edges"
    ):
        kantk.prune(model, x, pruner="nope")
    with pytest.raises(
        ValueError, match=r"does not accept 'node_threshold'; accepted options: edge_th, input_th, node_th"
    ):
        kantk.prune(model, x, node_threshold=0.1)
    with pytest.raises(ValueError, match="node_th must be a number >= 0"):
        kantk.prune(model, x, node_th=-1)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        kantk.prune(model, x, pruner="topk_edges", k=0)
    with pytest.raises(ValueError, match="pass samples"):
        kantk.prune(model, pruner="threshold")
    with pytest.raises(TypeError, match="expects a kantk.KAN"):
        kantk.prune(torch.nn.Linear(2, 1), x)


def test_a_malformed_decision_is_named():
    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match=r"edge mask 1 has shape \(2, 2\), expected \(1, 3\)"):
        normalise_decision(model, [torch.ones(3, 2), torch.ones(2, 2)], pruner="bad")
    with pytest.raises(ValueError, match="returned 1 edge masks"):
        normalise_decision(model, [torch.ones(3, 2)], pruner="bad")
    with pytest.raises(TypeError, match="PruneDecision or a list"):
        normalise_decision(model, "everything", pruner="bad")
    with pytest.raises(ValueError, match=r"hidden layer 1: expected node indices in \[0, 3\)"):
        normalise_decision(model, PruneDecision((torch.ones(3, 2), torch.ones(1, 3)), (torch.tensor([5]),)))
    # floats are named as such; [] (a float32 tensor to torch) keeps no node, as an empty mask does
    edges = (torch.ones(3, 2), torch.ones(1, 3))
    with pytest.raises(
        ValueError, match=r"hidden layer 1: node indices must be ints in \[0, 3\), got torch.float32"
    ):
        normalise_decision(model, PruneDecision(edges, ([0.5, 1.0],)))
    with pytest.warns(
        UserWarning, match="would remove every node of the hidden layer 1; keeping node 0"
    ) as shown:
        plan = normalise_decision(model, PruneDecision(edges, ([],)))
        kantk.prune(model, torch.rand(20, 2), node_th=1e9)  # the same through a pruner: warned at this line
    assert plan.kept_nodes[1].tolist() == [0] and not bool(plan.edge_masks[0][0].any())
    assert all(Path(w.filename).name == "test_pruning.py" for w in shown), [w.filename for w in shown]
    # None where a mask or an index belongs was torch's "Could not infer dtype of NoneType", which
    # the command line called an internal error of kantk's and which named no pruner
    from kantk.cli import describe_error
    from kantk.plugins import PluginOutputError

    with pytest.raises(
        PluginOutputError, match="pruner 'bad': edge mask 0 is not a tensor of 0/1 or bool"
    ) as raised:
        normalise_decision(model, [None, None], pruner="bad")
    assert describe_error(raised.value).startswith("kantk: pruner 'bad': edge mask 0")
    with pytest.raises(PluginOutputError, match="pruner 'bad': hidden layer 1: expected node indices"):
        normalise_decision(
            model, PruneDecision((torch.ones(3, 2), torch.ones(1, 3)), ([None],)), pruner="bad"
        )


def test_a_plugin_pruner_is_used_by_name():
    class KeepFirstHidden:
        needs_data = False

        def __call__(self, model, x, scores):
            masks = [l.mask != 0 for l in model.layers]
            return PruneDecision(tuple(masks), hidden_nodes=(torch.tensor([0]),))

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_pruners():
            yield kantk.PrunerSpec("keep_first_hidden", KeepFirstHidden)

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, 4, 1], seed=0, registry=registry)
    small = kantk.prune(model, pruner="keep_first_hidden", registry=registry)
    assert small.widths == [2, 1, 1]
    x = torch.rand(16, 2)
    plan = plan_pruning(model, pruner="keep_first_hidden", registry=registry)
    torch.testing.assert_close(small(x), apply_masks(model, plan)(x), atol=1e-6, rtol=0)


def test_a_plugin_pruner_that_changes_the_model_is_named_and_the_model_stays():
    """hooks.md: the pruner must not change the model; one that did (``coef.mul_(0)``) changed the
    user's model without a word."""
    from kantk.plugins import PluginOutputError

    class Zeroing:
        needs_data = False

        def __call__(self, model, x, scores):
            model.layers[0].coef.data.mul_(0)
            return [layer.mask != 0 for layer in model.layers]

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_pruners():
            yield kantk.PrunerSpec("zeroing_test", Zeroing)

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, 3, 1], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        PluginOutputError, match=r"pruner 'zeroing_test' of plugin .* changed the model it was given"
    ):
        kantk.prune(model, pruner="zeroing_test", registry=registry)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_symbolic_edges_survive_pruning():
    model = kantk.KAN([2, 3, 1], seed=0)
    from kantk.symbolic.library import get_library

    sin = get_library("minimal")["sin"]
    model.layers[0].set_symbolic_edge(2, 1, sin, "minimal", affine=(2.0, 0.1, 1.5, -0.2))
    model.layers[1].set_symbolic_edge(0, 2, sin, "minimal")
    _kill_hidden_nodes(model, 1, [0])
    x = torch.rand(64, 2) * 2 - 1

    for pruner, options in (("threshold", {"edge_th": 0.0}), ("magnitude", {"threshold": 1e-6})):
        small = kantk.prune(model, None if pruner == "magnitude" else x, pruner=pruner, **options)
        assert small.widths == [2, 2, 1], pruner  # dead node 0 goes; node 2 lives on symbolic edges
        torch.testing.assert_close(small(x), model(x), atol=1e-6, rtol=0)
        layer = small.layers[0]
        assert layer.symbolic_edges() == [(1, 1)] and layer.symbolic_names[1][1] == "sin"
        assert torch.equal(layer.symbolic_affine[1, 1], model.layers[0].symbolic_affine[2, 1])
        assert small.layers[1].symbolic_edges() == [(0, 1)]

    # removing a symbolic edge switches off both of its branches in the reference
    plan = normalise_decision(model, [l.live_edges() & ~(l.symbolic_mask != 0) for l in model.layers])
    reference = apply_masks(model, plan)
    assert reference.layers[0].symbolic_mask.sum() == 0
    torch.testing.assert_close(shrink(model, plan)(x), reference(x), atol=1e-6, rtol=0)


def test_single_threshold_option_sets_every_threshold():
    import kantk as _k
    from kantk.pruners.threshold import ThresholdPruner

    pruner = ThresholdPruner(threshold=0.05)
    assert (pruner.node_th, pruner.edge_th, pruner.input_th) == (0.05, 0.05, 0.05)
    with pytest.raises(ValueError, match="not both"):
        ThresholdPruner(node_th=0.1, threshold=0.05)
    model = _k.KAN([2, 3, 1], seed=0)
    small = _k.prune(model, torch.rand(50, 2) * 2 - 1, pruner="threshold", threshold=1e-2)
    assert small.widths[0] == 2


def test_pruned_inputs_record_their_data_columns(tmp_path):
    """pykan's ``input_id``: after pruning inputs the model knows which data columns it takes, the
    record survives copies, a second pruning, ``refine``, save/load and checkpoints, and the default
    input names follow it."""
    model = kantk.KAN([4, 3, 1], seed=0)
    x = torch.rand(64, 4) * 2 - 1
    assert model.input_columns is None and model.input_names() == ["x1", "x2", "x3", "x4"]
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0
    once = kantk.prune(model, x, prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert once.input_columns == [0, 2, 3] and once.input_names() == ["x1", "x3", "x4"]
    assert once.config()["input_columns"] == [0, 2, 3]
    torch.testing.assert_close(once(x[:, once.input_columns]), model(x), atol=1e-6, rtol=0)
    with torch.no_grad():
        once.layers[0].mask[:, 0] = 0  # data column 0, input 0 of the pruned model
    twice = kantk.prune(once, x[:, once.input_columns], prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert twice.input_columns == [2, 3]  # columns of the original data, not of once's inputs
    assert kantk.refine(twice, 7).input_columns == [2, 3]
    kantk.save(twice, tmp_path / "m.kantk")
    assert kantk.load(tmp_path / "m.kantk").input_columns == [2, 3]
    with pytest.warns(UserWarning, match="still numeric"):
        numeric = kantk.symbolic_formula(twice, x=x[:, [2, 3]])[0]
    assert {"x3", "x4"} <= {str(s) for s in numeric.free_symbols}  # inside f_l_i_j(x3), ...
    symbolic = kantk.refine(twice, 5)  # a copy to fix symbolically
    kantk.auto_symbolic(symbolic, x[:, [2, 3]], r2_threshold=float("-inf"))
    assert {str(s) for s in kantk.symbolic_formula(symbolic, digits=None)[0].free_symbols} <= {"x3", "x4"}
    assert {str(s) for s in kantk.symbolic_formula(symbolic, digits=None)[0].free_symbols} & {"x3", "x4"}
    kept_all = kantk.prune(model, x, prune_inputs=False, node_th=0.0, edge_th=0.0)
    assert kept_all.input_columns is None  # no input removed: nothing to record
    with torch.no_grad():
        model.layers[0].mask[:, 3] = 0  # now the last input too
    first = kantk.prune(model, x, prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert first.input_columns == [0, 2]
    # the last columns removed: recorded, so x[:, first.input_columns] never becomes x[:, None]
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 1
    last_gone = kantk.prune(model, x, prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert last_gone.input_columns == [0, 1, 2]
    torch.testing.assert_close(last_gone.select_inputs(x), x[:, :3])
    torch.testing.assert_close(twice.select_inputs(x), x[:, [2, 3]])
    assert kantk.KAN([4, 1]).select_inputs(x) is x
    with pytest.raises(
        ValueError, match=r"at least 4 columns \(its inputs are data columns \[3, 4\]\), got 3"
    ):
        twice.select_inputs(x[:, :3])
    assert kantk.to_networkx(twice, x[:, [2, 3]]).nodes[(0, 0)]["label"] == "x3"


def test_input_columns_in_a_checkpoint(tmp_path):
    import lightning.pytorch as pl

    from kantk.lightning import KANModule

    model = kantk.KAN([3, 2, 1], seed=0)
    model.input_columns = [1, 4, 7]
    module = KANModule.from_model(model)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = KANModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu", weights_only=True)
    assert loaded.model.input_columns == [1, 4, 7]


def test_data_of_all_columns_for_a_model_pruned_to_some_names_select_inputs():
    """After prune_inputs, fit and auto_symbolic on the original data said only "3 features but
    the model expects 2": the message now names the columns and select_inputs."""
    model = kantk.KAN([2, 1, 1], seed=0)
    model.input_columns = [0, 2]
    x = torch.rand(40, 3)
    data = {"train_input": x, "train_label": x[:, :1]}
    hint = (
        r"takes the data columns x\[:, \[0, 2\]\] \(0-based; columns 1, 3 counting from 1\) of 3 "
        r"\(it was pruned with prune_inputs\): pass model\.select_inputs"
    )
    with pytest.raises(ValueError, match=hint):
        kantk.fit(model, data, steps=1, progress=False)
    with pytest.raises(ValueError, match=hint):
        model(x)  # said only "expects input of shape (..., 2), got (40, 3)"
    with pytest.raises(ValueError, match=hint):
        kantk.auto_symbolic(model, x)
    with pytest.raises(ValueError, match=hint):
        model.update_grid(x)
    kantk.fit(model, {**data, "train_input": model.select_inputs(x)}, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"expects samples of shape \(batch, 2\), got \(40, 1\)$"):
        kantk.attribution(model, x[:, :1])  # fewer columns: no hint


def test_prune_refuses_samples_on_which_the_model_is_not_finite():
    """One symbolic sqrt edge on negative samples made every edge's score NaN, and prune (kantk
    prune too, exit 0) removed every edge: the model became a constant."""
    model = kantk.KAN([2, 2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sqrt", fit_params=False)
    kantk.fix_symbolic(model, 0, 1, 0, "x", fit_params=False)
    kantk.fix_symbolic(model, 1, 0, 0, "x", fit_params=False)
    x = torch.rand(100, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"layer 0's outputs are NaN or infinite on \d+ of the 100 samples"):
        kantk.prune(model, x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert kantk.prune(model, x.abs()).widths[0] == 2  # on samples inside sqrt's domain it prunes


def test_a_model_fitted_on_a_csv_dataset_records_its_inputs_header_names(tmp_path):
    """kantk.fit on a kantk.load_csv dataset records the inputs' header names (KAN.column_names);
    save/load, checkpoints and prune_inputs keep them (the kept inputs' names), and data without
    names or with unusable ones leaves the model's as they were."""
    import lightning.pytorch as pl

    from kantk.lightning import KANModule
    from kantk.model import record_column_names

    rows = torch.rand(40, 4, generator=torch.Generator().manual_seed(0))
    lines = "\n".join(",".join(f"{v:.6f}" for v in row) for row in rows.tolist())
    (tmp_path / "d.csv").write_text("T,y,p,V\n" + lines + "\n")
    data = kantk.load_csv(tmp_path / "d.csv", label_columns="y")
    model = kantk.KAN([3, 2, 1], seed=0)
    assert model.column_names is None and "column_names" not in model.config()
    kantk.fit(model, data, steps=1, progress=False)
    assert model.column_names == ["T", "p", "V"]
    # the default names of formulas, diagrams and plots (they were x1, x2, x3: the same model read
    # T, p, V to a command given the CSV file and x1, x2, x3 to one without it)
    assert model.input_names() == ["T", "p", "V"]
    kantk.fit(model, {k: v for k, v in data.items()}, steps=1, progress=False)  # no names: kept
    assert model.column_names == ["T", "p", "V"]
    kantk.save(model, tmp_path / "m.kantk")
    assert kantk.load(tmp_path / "m.kantk").column_names == ["T", "p", "V"]
    module = KANModule.from_model(model)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = KANModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu", weights_only=True)
    assert loaded.model.column_names == ["T", "p", "V"]
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0  # input p goes
    pruned = kantk.prune(model, data["train_input"], prune_inputs=True, node_th=0.0, edge_th=0.0)
    assert pruned.input_columns == [0, 2] and pruned.column_names == ["T", "V"]
    assert pruned.input_names() == ["T", "V"]
    assert {str(s) for s in kantk.symbolic_formula(pruned)[0].free_symbols} <= {"T", "V"}
    named = kantk.KAN([2, 1], seed=0)
    record_column_names(named, ["temp (K)", "p"])  # not a name a formula can hold: x1, x2
    assert named.column_names == ["temp (K)", "p"] and named.input_names() == ["x1", "x2"]
    record_column_names(pruned, ["a", "b", "c"])  # names of the data it was pruned from
    assert pruned.column_names == ["a", "c"]
    for unusable in (None, ["a"], ["a", "a"], "ab", ["a", "b" * 101]):
        record_column_names(pruned, unusable)
        assert pruned.column_names == ["a", "c"]
