from __future__ import annotations

import dataclasses

import pytest
import torch

import kantk
from kantk.model import default_dtype


def _linear_model(weights: list[float]) -> kantk.KAN:
    """KAN([len(weights), 1]) computing y = sum_p w_p x_p (identity base, no spline part)."""
    with default_dtype(torch.float64):
        model = kantk.KAN([len(weights), 1], base_activation="identity", seed=0)
    with torch.no_grad():
        model.layers[0].coef.zero_()
        model.layers[0].scale_base.copy_(torch.tensor([weights], dtype=torch.float64))
    return model


def test_shapes_and_types():
    model = kantk.KAN([3, 4, 2], seed=0)
    scores = kantk.attribution(model, torch.rand(64, 3) * 2 - 1)
    assert isinstance(scores, kantk.Attribution)
    assert [tuple(e.shape) for e in scores.edge_scores] == [(4, 3), (2, 4)]
    assert [tuple(n.shape) for n in scores.node_scores] == [(3,), (4,), (2,)]
    assert [tuple(n.shape) for n in scores.in_scores] == [(3,), (4,), (2,)]
    assert scores.feature_scores is scores.node_scores[0]
    assert scores.widths == [3, 4, 2]
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.feature_scores = torch.zeros(3)  # type: ignore[misc]


def test_known_answer_on_a_linear_model():
    # y = 2 x1 + 0.1 x2 + 0 x3: edge score = std(w_p x_p) / (std(y) + 1e-4 * std(y)), output score 1
    # (the guard is relative to the largest spread of the layer's nodes: here y's own).
    x = torch.rand(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    model = _linear_model([2.0, 0.1, 0.0])
    scores = kantk.attribution(model, x)
    y_std = (2.0 * x[:, 0] + 0.1 * x[:, 1]).std()
    expected = torch.stack([2.0 * x[:, 0].std(), 0.1 * x[:, 1].std(), torch.tensor(0.0, dtype=torch.float64)])
    expected = expected / (y_std + 1e-4 * y_std)
    torch.testing.assert_close(scores.edge_scores[0][0], expected)
    torch.testing.assert_close(scores.feature_scores, expected)
    torch.testing.assert_close(scores.node_scores[1], torch.ones(1, dtype=torch.float64))
    assert scores.feature_scores[2] == 0 and scores.feature_scores.argmin() == 2


@pytest.mark.parametrize("unit", [1e-3, 1e-7, 1e4])
def test_scores_and_pruning_do_not_depend_on_the_units_of_the_target(unit):
    # pykan's absolute 1e-4 guard scored an exact model of 1e-5 * f near 0 everywhere, and prune
    # kept 2 of its 10 edges (at 1e-7: none); relative to the layer's spread the scores are the same
    x = torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    formula = "sin(x1) + x2**2 + x1*x3"
    reference = kantk.formula_to_kan(formula, dtype=torch.float64)
    scaled = kantk.formula_to_kan(f"{unit}*({formula})", dtype=torch.float64)
    torch.testing.assert_close(
        kantk.attribution(scaled, x).feature_scores, kantk.attribution(reference, x).feature_scores
    )
    live = [int(layer.live_edges().sum()) for layer in kantk.prune(scaled, x).layers]
    assert live == [int(layer.live_edges().sum()) for layer in kantk.prune(reference, x).layers]
    assert sum(live) == 10


def test_a_layer_of_constant_nodes_scores_finite():
    model = _linear_model([0.0, 0.0, 0.0])  # y = 0 whatever x: every spread 0, guard 1e-4
    scores = kantk.attribution(model, torch.rand(16, 3, dtype=torch.float64))
    assert torch.equal(scores.feature_scores, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_output_constant_to_round_off_scores_zero(dtype):
    """A product node with a dead factor: the output is constant, but its standard deviation is
    round-off (about 2e-18, not 0), so the guard shrank with it and the output edge scored 1.0,
    which flowed back to both inputs (pykan's absolute guard gives 0)."""
    with default_dtype(dtype):
        model = kantk.KAN([2, [0, 1], 1], seed=0)
        for i in range(2):
            model = kantk.surgery.remove_edge(model, 0, i, 1)
        x = torch.rand(200, 2) * 2 - 1
    y = model(x).detach()
    assert float(y.max() - y.min()) == 0.0
    scores = kantk.attribution(model, x)
    assert torch.equal(scores.feature_scores, torch.zeros(2, dtype=dtype))
    assert all(float(e.max()) < 1e-6 for e in scores.edge_scores)  # below any pruning threshold
    # a real spread far below the values (inputs 1000 + u, spread 3e-4 of the largest) still counts
    live = _linear_model([1e-6, 0.0, 0.0])
    x = 1000 + torch.rand(16, 3, dtype=torch.float64)
    assert float(kantk.attribution(live, x).feature_scores[0]) > 0.5
    # and so does a small one in float32: y = 1000 + 0.01 u (128 distinct values) scored its edge
    # 28.5 when a floor of 64 eps zeroed the node's spread but not its edge's
    with default_dtype(torch.float32):
        small = kantk.KAN([2, 1], base_activation="identity", seed=0)
    with torch.no_grad():
        small.layers[0].coef.zero_()
        small.layers[0].scale_base.copy_(torch.tensor([[1.0, 1e-2]]))
    u = torch.rand(256, generator=torch.Generator().manual_seed(0))
    scores = kantk.attribution(small, torch.stack([torch.full((256,), 1000.0), u], 1))
    assert float(scores.edge_scores[0][0, 0]) == 0.0 and 0.99 < float(scores.edge_scores[0][0, 1]) <= 1.0


def test_scores_propagate_from_the_outputs():
    model = kantk.KAN([3, 4, 2], seed=1)
    scores = kantk.attribution(model, torch.rand(128, 3) * 2 - 1)
    torch.testing.assert_close(scores.node_scores[-1], torch.full((2,), 0.5))  # pykan: mean over outputs
    for l, edge in enumerate(scores.edge_scores):
        torch.testing.assert_close(scores.node_scores[l], edge.sum(dim=0))  # outgoing
        torch.testing.assert_close(scores.in_scores[l + 1], edge.sum(dim=1))  # incoming
    assert torch.equal(scores.in_scores[0], torch.zeros(3))
    assert all((e >= 0).all() for e in scores.edge_scores)


def test_out_scores_weight_the_outputs_linearly():
    model = kantk.KAN([2, 3, 2], seed=2)
    x = torch.rand(64, 2) * 2 - 1
    first = kantk.attribution(model, x, out_scores=torch.tensor([1.0, 0.0]))
    second = kantk.attribution(model, x, out_scores=torch.tensor([0.0, 1.0]))
    both = kantk.attribution(model, x, out_scores=torch.tensor([1.0, 1.0]))
    default = kantk.attribution(model, x)
    torch.testing.assert_close(first.feature_scores + second.feature_scores, both.feature_scores)
    torch.testing.assert_close(both.feature_scores / 2, default.feature_scores)


def test_masked_edges_and_dead_nodes_score_zero():
    model = kantk.KAN([2, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0  # input 2 disconnected
        model.layers[1].mask[0, 2] = 0  # hidden node 3 feeds nothing
    scores = kantk.attribution(model, torch.rand(64, 2) * 2 - 1)
    assert torch.equal(scores.edge_scores[0][:, 1], torch.zeros(3))
    assert scores.feature_scores[1] == 0 and scores.feature_scores[0] > 0
    assert scores.node_scores[1][2] == 0
    assert torch.equal(scores.edge_scores[0][2], torch.zeros(2))  # nothing flows back through it


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_model_is_left_unchanged_and_no_graph_is_built(basis):
    model = kantk.KAN([2, 3, 1], basis=basis, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = kantk.attribution(model, torch.rand(32, 2) * 2 - 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not scores.feature_scores.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_says_what_is_expected():
    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.raises(TypeError, match="expects a kantk.KAN"):
        kantk.attribution(torch.nn.Linear(2, 1), torch.rand(8, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        kantk.attribution(model, torch.rand(8, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        kantk.attribution(model, torch.rand(1, 2))
    with pytest.raises(ValueError, match="NaN or Inf"):
        kantk.attribution(model, torch.tensor([[0.0, float("nan")], [0.1, 0.2]]))
    with pytest.raises(ValueError, match=r"out_scores must have shape \(1,\)"):
        kantk.attribution(model, torch.rand(8, 2), out_scores=torch.ones(2))
    for bad in ([float("nan")], [-1.0], [float("inf")]):  # NaN and negative feature scores came out
        with pytest.raises(ValueError, match="out_scores must be finite numbers >= 0"):
            kantk.attribution(model, torch.rand(8, 2), out_scores=bad)
