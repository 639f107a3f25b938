"""Built-in regularisers: registered as plugins, and their values checked by hand on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

import kantk
from kantk.regularisers import (
    CoefficientL1Regulariser,
    CoefficientSmoothnessRegulariser,
    L1EntropyRegulariser,
    build_regularisers,
    regularisation,
)

SQRT2 = math.sqrt(2.0)


def _h(p: float) -> float:
    """One term of pykan's entropy: -p log2(p + 1e-4)."""
    return -p * math.log2(p + 1e-4)


def _linear_kan(widths, base_weights):
    """A KAN whose edges are exactly phi(x) = w_b * x: identity base branch, zero spline."""
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN(widths, base_activation="identity", seed=0)
    with torch.no_grad():
        for layer, w in zip(model.layers, base_weights):
            layer.coef.zero_()
            layer.scale_base.copy_(torch.tensor(w))
    return model


# Two samples, so each column's (unbiased) std is |difference| / sqrt(2): 0.9 and 1.9.
X = [[0.0, 0.0], [0.9 * SQRT2, 1.9 * SQRT2]]


def test_builtins_are_registered_through_the_hook():
    names = kantk.list_regularisers()
    assert {"l1_entropy", "coef_l1", "coef_smoothness"} <= set(names)
    registry = kantk.default_registry()
    assert registry.regularisers.owner("l1_entropy") == "kantk.regularisers.l1_entropy"
    assert registry.regularisers.get("l1_entropy").factory is L1EntropyRegulariser
    assert registry.regularisers.get("coef_l1").factory is CoefficientL1Regulariser
    assert registry.regularisers.get("coef_smoothness").factory is CoefficientSmoothnessRegulariser


def test_l1_entropy_one_layer_by_hand():
    model = _linear_kan([2, 1], [[[1.0, -2.0]]])
    x = torch.tensor(X)
    # A = std(phi) / (std(x) + 0.1) = [0.9 * 1 / 1.0, 1.9 * 2 / 2.0]
    a = [0.9, 1.9]
    l1 = sum(a)
    h_row = sum(_h(v / (sum(a) + 1)) for v in a)  # one row: its mean is itself
    h_col = (_h(a[0] / (a[0] + 1)) + _h(a[1] / (a[1] + 1))) / 2  # one output: each column alone
    expected = 1.0 * l1 + 2.0 * (h_row + h_col)
    value = L1EntropyRegulariser()(model, x)
    assert value.dim() == 0
    assert value.item() == pytest.approx(expected, rel=1e-12)
    l1_only = L1EntropyRegulariser(l1=1.0, entropy=0.0)(model, x)
    assert l1_only.item() == pytest.approx(l1, rel=1e-12)
    entropy_only = L1EntropyRegulariser(l1=0.0, entropy=1.0)(model, x)
    assert entropy_only.item() == pytest.approx(h_row + h_col, rel=1e-12)


def test_l1_entropy_sums_over_layers_by_hand():
    model = _linear_kan([2, 1, 1], [[[1.0, -2.0]], [[0.5]]])
    x = torch.tensor(X)
    a1 = [0.9, 1.9]
    first = sum(a1) + 2.0 * (
        sum(_h(v / (sum(a1) + 1)) for v in a1) + (_h(a1[0] / (a1[0] + 1)) + _h(a1[1] / (a1[1] + 1))) / 2
    )
    # hidden node h = x1 - 2 x2 = [0, -2.9 sqrt2]: std 2.9; edge 0.5 h: std 1.45
    a2 = 1.45 / (2.9 + 0.1)
    p = a2 / (a2 + 1)
    second = a2 + 2.0 * (_h(p) + _h(p))
    assert L1EntropyRegulariser()(model, x).item() == pytest.approx(first + second, rel=1e-12)


def test_l1_entropy_shares_layer_inputs_and_is_differentiable():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(32, 2) * 2 - 1
    reg = L1EntropyRegulariser()
    shared = reg(model, x, layer_inputs=model.layer_inputs(x))
    assert shared.item() == pytest.approx(reg(model, x).item(), rel=1e-12)
    shared.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.layers[0].coef.grad.abs().sum() > 0


def test_l1_entropy_needs_two_samples():
    model = kantk.KAN([2, 1], seed=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        L1EntropyRegulariser()(model, torch.zeros(1, 2))


def _coef_model():
    model = kantk.KAN([2, 1, 1], seed=0)  # B-splines, G=5, k=3: 8 coefficients per edge
    with torch.no_grad():
        model.layers[0].coef.copy_(torch.arange(16.0).reshape(1, 2, 8) - 7.5)  # |c| mean 4, steps of 1
        model.layers[1].coef.copy_(torch.tensor([0.0, 2.0] * 4).reshape(1, 1, 8))  # |c| mean 1, steps of 2
    return model


def test_coef_l1_by_hand():
    value = CoefficientL1Regulariser()(_coef_model(), torch.zeros(4, 2))
    assert value.item() == pytest.approx(4.0 + 1.0)


def test_coef_smoothness_by_hand():
    value = CoefficientSmoothnessRegulariser()(_coef_model(), torch.zeros(4, 2))
    assert value.item() == pytest.approx(1.0 + 2.0)


def test_coef_regularisers_have_gradients():
    model = _coef_model()
    (CoefficientL1Regulariser()(model) + CoefficientSmoothnessRegulariser()(model)).backward()
    assert model.layers[0].coef.grad.abs().sum() > 0 and model.layers[1].coef.grad.abs().sum() > 0


def test_build_regularisers_weights_and_options():
    regs = build_regularisers({"l1_entropy": {"weight": 1e-3, "entropy": 0.5}, "coef_l1": 0.1})
    assert [(r.name, r.weight) for r in regs] == [("l1_entropy", 1e-3), ("coef_l1", 0.1)]
    assert regs[0].fn.entropy == 0.5 and regs[0].needs_layer_inputs and not regs[1].needs_layer_inputs
    assert build_regularisers(None) == [] and build_regularisers({}) == []


def test_regularisation_is_the_weighted_sum():
    model = _coef_model()
    x = torch.rand(16, 2)
    regs = build_regularisers({"coef_l1": 0.5, "coef_smoothness": {"weight": 2.0}})
    assert regularisation(regs, model, x).item() == pytest.approx(0.5 * 5.0 + 2.0 * 3.0)
    assert regularisation([], model, x).item() == 0.0


def test_unknown_regulariser_lists_known_names():
    with pytest.raises(kantk.UnknownComponentError) as info:
        build_regularisers({"l2_entropy": 1.0})
    assert "known regulariser names: coef_l1, coef_smoothness, l1_entropy" in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"l1_entropy": {"weight": 1.0, "lamb": 2}}, "accepted options: weight, entropy, input_eps, l1"),
        ({"coef_l1": -1.0}, "finite number >= 0"),
        ({"coef_l1": float("nan")}, "finite number >= 0"),
        ({"l1_entropy": {"l1": -1}}, "l1_entropy option l1 must be a finite number >= 0, got -1"),
        ({"l1_entropy": {"entropy": float("inf")}}, "option entropy must be a finite number >= 0"),
        ({"l1_entropy": {"input_eps": True}}, "option input_eps must be a finite number >= 0, got True"),
    ],
)
def test_bad_regulariser_options(config, message):
    with pytest.raises(ValueError) as info:
        build_regularisers(config)
    assert message in str(info.value)


def test_a_required_option_left_out_is_the_users_error_not_the_plugins():
    """A factory argument without a default, not given: "PluginTypeError: regulariser 'needs_p' of
    plugin ... raised TypeError: __init__() missing 1 required positional argument: 'p'"."""

    class NeedsP:
        def __init__(self, p, q=1.0):
            self.p = p

        def __call__(self, model, x):
            return sum(layer.coef.abs().pow(self.p).sum() for layer in model.layers)

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_regularisers():
            yield kantk.RegulariserSpec("needs_p_test", NeedsP)

    registry = kantk.Registry.with_plugins(Plugin)
    for config in ({"needs_p_test": 0.1}, {"needs_p_test": {"weight": 0.1, "q": 2.0}}):
        with pytest.raises(
            ValueError, match=r"^regulariser 'needs_p_test' needs 'p' in its options \(no default\)"
        ):
            build_regularisers(config, registry)
    (built,) = build_regularisers({"needs_p_test": {"weight": 0.1, "p": 2}}, registry)
    assert built.weight == 0.1


def test_a_regulariser_that_returns_more_than_one_number_is_named():
    """A plugin regulariser returning a vector failed in backward ("grad can be implicitly created
    only for scalar outputs"); now the sum says which regulariser and what it returned."""
    from kantk.regularisers import WeightedRegulariser, regularisation

    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(8, 2)
    per_layer = WeightedRegulariser(
        "per_layer", 1.0, lambda m, x: torch.stack([l.coef.abs().mean() for l in m.layers])
    )
    with pytest.raises(
        ValueError, match=r"regulariser 'per_layer' returned \(2,\); a regulariser returns one number"
    ):
        regularisation([per_layer], model, x)
    nothing = WeightedRegulariser("nothing", 2.0, lambda m, x: 0)  # nothing to penalise: accepted
    assert float(regularisation([nothing], model, x)) == 0.0


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (lambda m, x: float(m.layers[0].coef.abs().mean()), "the number"),  # .item() / float()
        (lambda m, x: m.layers[0].coef.abs().mean().detach(), "a tensor without a gradient"),
    ],
)
def test_a_penalty_without_a_gradient_is_named(fn, what):
    """A plugin ending in .item() was logged as "reg" and regularised nothing (the model trained
    exactly as without it); a warning names it (not an error: coef_l1 on frozen coefficients has
    no gradient either, and is harmless)."""
    import warnings

    from kantk.regularisers import WeightedRegulariser, regularisation

    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.warns(UserWarning, match=rf"regulariser 'cut' returned {what}.*trains nothing"):
        regularisation([WeightedRegulariser("cut", 1.0, fn)], model, torch.rand(8, 2))
    with torch.no_grad(), warnings.catch_warnings():  # evaluation: nothing to train, nothing to check
        warnings.simplefilter("error")
        regularisation([WeightedRegulariser("cut", 1.0, fn)], model, torch.rand(8, 2))
