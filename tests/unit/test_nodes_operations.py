"""Every operation on a model handles product nodes: attribution, prune, refine, export, plot,
surgery, update_grid (the model itself and save/load: tests/unit/test_nodes.py)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

import kantk
from kantk import surgery
from kantk.model import default_dtype
from kantk.pruners import PruneDecision
from kantk.pruning import apply_masks, normalise_decision, shrink


def _model() -> kantk.KAN:
    """Sum and product nodes, mixed arities, product nodes in the output layer too (float64
    throughout: grids built in float64, so refinement is exact to float64 round-off)."""
    with default_dtype(torch.float64):
        return kantk.KAN([3, [1, 2], [1, 1], [1, 1]], mult_arity=[[], [2, 3], [2], [2]], seed=0)


def _x(n: int = 3, batch: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, n, generator=gen, dtype=torch.float64) * 2 - 1


def test_attribution_scores_subnodes_with_their_node_score():
    model = _model()
    scores = kantk.attribution(model, _x())
    assert scores.widths == model.widths == [3, 3, 2, 2]
    assert [tuple(e.shape) for e in scores.edge_scores] == [(6, 3), (3, 3), (3, 2)]
    assert [tuple(s.shape) for s in scores.in_scores] == [(3,), (3,), (2,), (2,)]
    assert [tuple(s.shape) for s in scores.subnode_scores] == [(6,), (3,), (3,)]
    layout = model.layers[0].nodes
    for j in range(3):  # every sub-node carries its node's score
        for q in layout.subnodes(j):
            assert scores.subnode_scores[0][q] == scores.node_scores[1][j]
    # a node's incoming score sums the edges into all its sub-nodes
    want = torch.stack([scores.edge_scores[0][list(layout.subnodes(j))].sum() for j in range(3)])
    assert torch.allclose(scores.in_scores[1], want)


def test_prune_removes_a_product_node_with_all_its_subnodes():
    model = _model()
    x = _x()
    masks = tuple(layer.mask > 0 for layer in model.layers)
    decision = PruneDecision(masks, (torch.tensor([0, 2]), torch.tensor([0, 1])))
    plan = normalise_decision(model, decision)
    assert not plan.edge_masks[0][1:3].any()  # node 1's sub-nodes lose their incoming edges
    small = shrink(model, plan)
    assert small.width_spec == [3, [1, 1], [1, 1], [1, 1]] and small.mult_arity == [[], [3], [2], [2]]
    assert small.layers[0].out_features == 1 + 3
    assert torch.allclose(small(x), apply_masks(model, plan)(x), rtol=0, atol=1e-12)  # float64 rounding


@pytest.mark.parametrize("pruner", kantk.list_pruners())
def test_every_pruner_gives_a_consistent_smaller_model(pruner):
    model = _model()
    x = _x()
    options = {"threshold": 0.05} if pruner == "threshold" else {}
    small = kantk.prune(model, x, pruner=pruner, **options)
    plan = kantk.pruning.plan_pruning(model, x, pruner=pruner, **options)
    assert small.widths == plan.widths
    assert torch.allclose(small(x), apply_masks(model, plan)(x), rtol=0, atol=1e-12)
    rebuilt = kantk.KAN.from_config(small.config())
    assert rebuilt.width_spec == small.width_spec


def test_pruning_every_product_node_of_a_layer_leaves_plain_widths():
    model = kantk.KAN([2, [2, 1], 1], seed=0).double()
    masks = tuple(layer.mask > 0 for layer in model.layers)
    plan = normalise_decision(model, PruneDecision(masks, (torch.tensor([0, 1]),)))
    small = shrink(model, plan)
    assert small.width_spec == [2, 2, 1] and not small.has_node_operations
    assert "mult_arity" not in small.config()


def test_refine_keeps_the_function_and_the_nodes():
    model = _model()
    x = _x()
    finer = kantk.refine(model, grid_size=10)
    assert finer.width_spec == model.width_spec and finer.mult_arity == model.mult_arity
    assert finer.layers[0].basis.grid_size == 10
    assert torch.allclose(finer(x), model(x), rtol=0, atol=1e-10)  # exact knot insertion, float64


def test_update_grid_on_a_product_model_keeps_it_working():
    model = _model()
    x = _x() * 2
    model.update_grid(x)
    assert torch.isfinite(model(x)).all()


def test_networkx_graph_has_subnode_vertices():
    pytest.importorskip("networkx")
    import networkx as nx

    model = _model()
    graph = kantk.to_networkx(model, _x())
    assert graph.nodes[(1, 1)]["op"] == "mult" and graph.nodes[(1, 0)]["op"] == "sum"
    assert graph.nodes[(2, 1)]["op"] == "mult" and graph.nodes[(3, 1)]["op"] == "mult"
    subs = sorted(n for n in graph.nodes if len(n) == 3 and n[0] == 1)
    assert subs == [(1, 1, 0), (1, 1, 1), (1, 2, 0), (1, 2, 1), (1, 2, 2)]
    assert graph.edges[(1, 2, 2), (1, 2)]["kind"] == "node_operation"
    # the KAN edge x3 -> sub-node 5 (node 2's third) ends in that sub-node's vertex
    assert graph.edges[(0, 2), (1, 2, 2)]["subnode"] == 5
    kan_edges = [d for _, _, d in graph.edges(data=True) if d["kind"] != "node_operation"]
    assert len(kan_edges) == sum(int(layer.mask.sum()) for layer in model.layers)
    back = nx.node_link_graph(json.loads(json.dumps(nx.node_link_data(graph, edges="links"))), edges="links")
    assert back.number_of_edges() == graph.number_of_edges()


def test_graphviz_draws_product_nodes():
    pytest.importorskip("graphviz")
    model = _model()
    kantk.fix_symbolic(model, 0, 0, 1, "x")
    source = kantk.to_graphviz(model, _x()).source
    assert "×" in source and "n1_2_2" in source
    assert "e0_0_1" in source  # the symbolic edge's box names its sub-node row


@pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"), reason="Graphviz 'dot' missing")
def test_export_renders_a_product_model(tmp_path):
    out = kantk.export.export_graph(_model(), tmp_path / "g.svg", x=_x())
    assert os.path.getsize(out) > 0


def test_plot_draws_every_edge_and_the_product_nodes(tmp_path):
    from kantk.plotting import EDGE_GID

    model = _model()
    fig = kantk.plot_activations(model, _x(), path=tmp_path / "p.png")
    curves = [ln for ax in fig.axes for ln in ax.lines if str(ln.get_gid()).startswith(EDGE_GID + "/")]
    assert len(curves) == sum(int(layer.mask.sum()) for layer in model.layers)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("×") == 4  # two product nodes in layer 1, one in layer 2, one output
    assert (tmp_path / "p.png").stat().st_size > 0


def test_surgery_remove_node_cuts_every_subnode():
    model = _model()
    cut = surgery.remove_node(model, 1, 2)
    assert not cut.layers[0].mask[3:6].any() and not cut.layers[1].mask[:, 2].any()
    assert model.layers[0].mask.all()  # the original is untouched


@pytest.mark.parametrize(
    ("op", "spec"), [("sum", [3, [3, 2], [1, 1], [1, 1]]), ("mult", [3, [1, 4], [1, 1], [1, 1]])]
)
def test_surgery_expand_width_keeps_the_function(op, spec):
    model = _model()
    bigger = surgery.expand_width(model, 1, 2, op=op)
    assert bigger.width_spec == spec
    x = _x()
    assert torch.allclose(bigger(x), model(x), rtol=0, atol=1e-12)


def test_surgery_expand_width_puts_new_sum_nodes_before_the_product_nodes():
    """On a layer of product nodes only, the new sum node went after them ([2, {'mult': 1,
    'sum': 1}, 1]), so node indices differed from pykan's [n_sum, n_mult] spelling."""
    with default_dtype(torch.float64):
        model = kantk.KAN([2, [0, 1], 1], seed=0)
    bigger = surgery.expand_width(model, 1, 1, op="sum")
    assert bigger.width_spec == [2, [1, 1], 1]
    assert [g.op for g in bigger.layers[0].nodes.groups] == ["sum", "mult"]
    x = _x(2)
    assert torch.allclose(bigger(x), model(x), rtol=0, atol=1e-12)
    assert torch.equal(bigger.layers[1].coef[:, 1], model.layers[1].coef[:, 0])  # the product node moved


def test_surgery_expand_depth_and_edge_tools():
    model = _model()
    x = _x()
    deeper = surgery.expand_depth(model)
    assert deeper.width_spec == [*model.width_spec, 2]
    assert torch.allclose(deeper(x), model(x), rtol=0, atol=1e-12)
    fn = surgery.get_fun(model, 0, 2, 5)  # edge x3 -> sub-node 5
    t = torch.linspace(-1, 1, 5, dtype=torch.float64)
    assert fn(t).shape == (5,)
    r = surgery.edge_range(model, x, 1, 2, 2)
    assert r.x_min <= r.x_max


@pytest.mark.parametrize(
    ("formula", "spec", "arity"),
    [
        ("x1*x2", [2, [0, 1], 1], 2),
        ("x1*x2 + x3*x4", [4, [0, 2], 1], 2),
        ("x1*x2*x3", [3, [0, 1], 1], 3),
        ("sin(x1*x2) + x3", [3, [1, 1], 1], 2),
        ("(x1 + x2)*x3**2 - 3*x1/x2", [3, [0, 2], 1], 2),
    ],
)
def test_formula_to_kan_uses_multiplication_nodes(formula, spec, arity):
    import sympy

    with default_dtype(torch.float64):
        model = kantk.formula_to_kan(formula, product="mult")
    assert model.width_spec == spec and model.mult_arity == arity
    names = [f"x{i + 1}" for i in range(model.widths[0])]
    target = kantk.parse_formula(formula, names)
    (expr,) = kantk.symbolic_formula(model)
    assert sympy.simplify(expr - target) == 0
    x = _x(model.widths[0]) + 1.5  # away from x2 = 0 (the 1/x2 term)
    want = torch.as_tensor(kantk.formula_to_callable(target, names)(x.numpy()))
    assert torch.allclose(model(x)[:, 0], want, rtol=1e-12, atol=1e-12)  # exact at initialisation
