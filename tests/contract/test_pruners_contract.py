"""One contract every registered pruner (built-in or plugin) must meet."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

import kantk
from kantk.pruners import PruneDecision
from kantk.pruning import apply_masks, normalise_decision, plan_pruning, shrink

PRUNERS = kantk.list_pruners()
BASES = kantk.list_bases()


def _trained_looking_model(basis: str = "bspline") -> tuple[kantk.KAN, torch.Tensor]:
    """A [3, 5, 4, 2] model with a spread of edge strengths and one edge already masked."""
    model = kantk.KAN([3, 5, 4, 2], basis=basis, seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(128, 3, generator=gen) * 2 - 1
    with torch.no_grad():
        for layer in model.layers:  # most edges strong, some nearly off
            strength = torch.where(torch.rand(layer.scale_sp.shape, generator=gen) < 0.4, 1e-3, 1.0)
            layer.scale_sp.mul_(strength)
            layer.scale_base.mul_(strength)
        model.layers[1].mask[2, 3] = 0
    return model, x


def _build(name: str):
    return kantk.default_registry().pruners.get(name).factory()


def _call(name: str, model: kantk.KAN, x: torch.Tensor | None):
    pruner = _build(name)
    scores = None if x is None else kantk.attribution(model, x)
    return pruner(model, x, scores)


def test_the_builtins_are_registered():
    assert {"threshold", "topk_edges", "magnitude"} <= set(PRUNERS)


@pytest.mark.parametrize("name", PRUNERS)
def test_returns_a_decision_of_the_right_shapes(name):
    model, x = _trained_looking_model()
    decision = _call(name, model, x)
    assert isinstance(decision, (PruneDecision, Sequence))
    masks = decision.edge_masks if isinstance(decision, PruneDecision) else decision
    assert [tuple(m.shape) for m in masks] == [tuple(layer.mask.shape) for layer in model.layers]
    if isinstance(decision, PruneDecision) and decision.hidden_nodes is not None:
        assert len(decision.hidden_nodes) == len(model.widths) - 2
    plan = normalise_decision(model, decision, pruner=name)  # consistent, or it raises
    assert plan.widths[-1] == model.widths[-1] and plan.widths[0] == model.widths[0]


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("name", PRUNERS)
def test_pruned_model_computes_what_the_masked_original_does(name, basis):
    model, x = _trained_looking_model(basis)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_pruning(model, x, pruner=name)
    small = shrink(model, plan)
    assert isinstance(small, kantk.KAN)
    assert small.widths == plan.widths
    assert small.widths[0] == 3 and small.widths[-1] == 2
    assert all(new <= old for new, old in zip(small.widths, model.widths))
    assert [layer.basis_name for layer in small.layers] == [basis] * 3
    torch.testing.assert_close(small(x), apply_masks(model, plan)(x), atol=1e-6, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    assert not plan.edge_masks[1][2, 3]  # a masked edge never comes back


@pytest.mark.parametrize("name", PRUNERS)
def test_input_pruning(name):
    model, x = _trained_looking_model()
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0  # input 2 feeds nothing: any pruner may drop it
    plan = plan_pruning(model, x, pruner=name, prune_inputs=True)
    kept = plan.kept_nodes[0]
    assert 1 not in kept.tolist()
    small = kantk.prune(model, x, pruner=name, prune_inputs=True)
    assert small.widths[0] == kept.numel()
    torch.testing.assert_close(small(x[:, kept]), apply_masks(model, plan)(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", PRUNERS)
def test_deterministic_and_leaves_the_model_alone(name):
    model, x = _trained_looking_model()
    first = plan_pruning(model, x, pruner=name)
    second = plan_pruning(model, x, pruner=name)
    assert all(torch.equal(a, b) for a, b in zip(first.kept_nodes, second.kept_nodes))
    assert all(torch.equal(a, b) for a, b in zip(first.edge_masks, second.edge_masks))


@pytest.mark.parametrize("name", PRUNERS)
def test_data_requirement_is_declared(name):
    model, _ = _trained_looking_model()
    if getattr(_build(name), "needs_data", True):
        with pytest.raises(ValueError, match="pass samples"):
            kantk.prune(model, pruner=name)
    else:
        small = kantk.prune(model, pruner=name)
        assert small.widths[-1] == model.widths[-1]


@pytest.mark.parametrize("name", PRUNERS)
def test_unknown_option_lists_the_accepted_ones(name):
    model, x = _trained_looking_model()
    with pytest.raises(
        ValueError, match=f"pruner '{name}' does not accept 'no_such_option'; accepted options"
    ):
        kantk.prune(model, x, pruner=name, no_such_option=1)
