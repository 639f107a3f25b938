"""The vectorised affine fit y ~ c * f(a * x + b) + d."""

from __future__ import annotations

import math

import pytest
import torch

from kantk.symbolic import SymbolicFunction, get_library
from kantk.symbolic.fitting import fit_affine, symbolic_scores

LIB = get_library("default")


def _x(n: int = 400, lo: float = -1.0, hi: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


@pytest.mark.parametrize(
    ("name", "params", "lo", "hi"),
    [
        ("sin", (3.0, 2.0, 5.0, 0.7), -1, 1),
        ("exp", (-1.5, 0.3, 0.8, -2.0), -1, 1),
        ("log", (2.0, 3.0, -1.2, 0.5), -1, 1),
        ("1/x", (1.0, 2.0, 0.5, 0.1), -1, 1),
        ("sqrt", (0.5, 1.0, 2.0, -1.0), 0, 4),
        ("tanh", (4.0, -1.0, 1.5, 0.2), -1, 1),
        ("gaussian", (2.0, 0.5, 3.0, 0.0), -1, 1),
        ("arcsin", (0.5, 0.2, 1.0, 1.0), -1, 1),
    ],
)
def test_recovers_known_parameters(name, params, lo, hi):
    a, b, c, d = params
    x = _x(lo=lo, hi=hi)
    y = c * LIB[name].torch_fn(a * x + b) + d
    fit = fit_affine(x, y, [LIB[name]])
    assert fit.params.shape == (1, 4) and fit.r2.shape == (1,)
    assert float(fit.r2[0]) > 1 - 1e-10
    # c * f(a x + b) + d itself is recovered (odd/even symmetries may flip the signs of a, b, c)
    got = fit.params[0]
    y_fit = got[2] * LIB[name].torch_fn(got[0] * x + got[1]) + got[3]
    torch.testing.assert_close(y_fit, y, rtol=1e-7, atol=1e-7)
    true = torch.tensor(params, dtype=torch.float64)
    if name == "tanh":  # odd and otherwise identifiable: unique up to (a, b, c) -> -(a, b, c)
        if got[0] < 0:
            got = got * torch.tensor([-1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
        torch.testing.assert_close(got, true, rtol=1e-6, atol=1e-8)
    if name == "exp":  # c e^(a x + b) + d: a, d and c e^b are identifiable
        torch.testing.assert_close(got[[0, 3]], true[[0, 3]], rtol=1e-6, atol=1e-8)
        assert float(got[2] * got[1].exp()) == pytest.approx(c * math.exp(b), rel=1e-6)


def test_vectorised_over_edges_and_functions():
    x = torch.stack([_x(seed=s) for s in range(3)])  # (3 edges, n)
    y = torch.stack([torch.sin(2 * x[0] + 1), 3 * x[1] ** 2 - 1, torch.exp(x[2])])
    functions = [LIB["sin"], LIB["x^2"], LIB["exp"], LIB["x"]]
    fit = fit_affine(x, y, functions)
    assert fit.params.shape == (4, 3, 4) and fit.r2.shape == (4, 3)
    assert fit.r2.diagonal().min() > 1 - 1e-10  # each edge's own function fits exactly
    assert fit.r2[3].max() < 0.999  # a line does not
    one = fit_affine(x[1], y[1], [LIB["x^2"]])  # same answer one edge at a time
    torch.testing.assert_close(one.r2, fit.r2[1, 1:2])


def test_identity_and_zero_are_reported_in_the_edge_coordinates():
    x = _x()
    fit = fit_affine(x, 2 * x + 1, [LIB["x"], LIB["0"]])
    torch.testing.assert_close(fit.params[0], torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64))
    assert float(fit.r2[0]) == pytest.approx(1.0)
    a, b, c, d = fit.params[1].tolist()
    assert (a, b, c) == (1.0, 0.0, 0.0) and d == pytest.approx(float((2 * x + 1).mean()))
    assert float(fit.r2[1]) == 0.0


def test_noisy_data_gives_r2_below_one():
    x = _x(1000)
    g = torch.Generator().manual_seed(1)
    y = torch.sin(3 * x) + 0.3 * torch.randn(1000, generator=g, dtype=torch.float64)
    fit = fit_affine(x, y, [LIB["sin"]])
    assert 0.6 < float(fit.r2[0]) < 0.95


def test_inputs_outside_search_scale_are_normalised():
    x = _x(lo=100.0, hi=300.0)  # a hidden layer may see any range
    y = torch.sin(0.02 * x - 3.0)
    fit = fit_affine(x, y, [LIB["sin"]])
    assert float(fit.r2[0]) > 1 - 1e-10


def test_no_admissible_candidate_gives_minus_inf():
    nowhere = SymbolicFunction("nowhere", lambda z: z * math.nan, lambda z: z, 1)
    fit = fit_affine(_x(), _x(), [nowhere, LIB["x"]])
    assert fit.r2[0] == -math.inf and fit.r2[1] > -math.inf


def test_constant_target():
    x = _x()
    fit = fit_affine(x, torch.full_like(x, 3.0), [LIB["0"], LIB["sin"]])
    assert fit.r2.tolist() == [1.0, 1.0]
    assert fit.params[0, 3] == pytest.approx(3.0)


def test_bad_input():
    with pytest.raises(ValueError, match="must both be"):
        fit_affine(torch.zeros(5), torch.zeros(6), [LIB["x"]])
    with pytest.raises(ValueError, match="finite"):
        fit_affine(torch.tensor([0.0, 1.0, math.nan]), torch.zeros(3), [LIB["x"]])
    for bad in ((1, -1), (-math.inf, math.inf), (-1e308, 1e308), (0, math.nan)):
        with pytest.raises(ValueError, match="a_range"):
            fit_affine(_x(), _x(), [LIB["x"]], a_range=bad)


@pytest.mark.parametrize(
    ("torch_fn", "sympy_fn", "target"),
    [
        (lambda z: z.clamp(-3, 3), lambda z: z, lambda x: (6 * x).clamp(-3, 3)),
        (lambda z: torch.relu(z + 2), lambda z: z, lambda x: torch.relu(4 * x)),
        (torch.nn.functional.hardsigmoid, lambda z: z, lambda x: torch.nn.functional.hardsigmoid(8 * x - 1)),
    ],
    ids=["clamp", "shifted_relu", "hardsigmoid"],
)
def test_functions_linear_near_zero_only_are_searched(torch_fn, sympy_fn, target):
    """Linear on the five probe points in [-1.5, 2.1], they were taken for affine: (a, b) stayed
    (1, 0), and hardsigmoid(8x - 1) fitted with r^2 0.90."""
    fn = SymbolicFunction("piecewise", torch_fn, sympy_fn, complexity=2)
    x = torch.linspace(-1, 1, 201, dtype=torch.float64)
    assert float(fit_affine(x, target(x), [fn]).r2[0]) > 1 - 1e-9


def test_scores_follow_pykan_rule():
    r2 = torch.tensor([0.99, 1.0, -math.inf], dtype=torch.float64)
    complexity = torch.tensor([2.0, 4.0, 1.0])
    scores = symbolic_scores(r2, complexity, weight_simple=0.8)
    expected = 0.8 * 2 + 0.2 * math.log2(1e-5 + 0.01)
    assert float(scores[0]) == pytest.approx(expected)
    assert float(scores[1]) == pytest.approx(0.8 * 4 + 0.2 * math.log2(1e-5))
    assert scores[2] == math.inf
    with pytest.raises(ValueError, match="weight_simple"):
        symbolic_scores(r2, complexity, 1.5)


def test_mapping_back_to_x_keeps_the_argument_in_the_domain():
    """sqrt fitted to data whose left part is 0: the best a x + b has its root on a sample, and
    the change back from normalised coordinates must not leave it at -3e-18 there (NaN).

    ``domain_margin=0``: only the samples bound the domain (the default margin keeps the root
    away from the samples altogether, see the domain tests below)."""
    g = torch.Generator().manual_seed(16)
    x = torch.rand(500, generator=g, dtype=torch.float64) * 8 - 0.2
    y = torch.sqrt(x.clamp(min=0)) + 0.01 * torch.randn(500, generator=g, dtype=torch.float64)
    fit = fit_affine(x, y, [LIB["sqrt"], LIB["log"], LIB["arctanh"]], domain_margin=0)
    for f, (a, b, _c, _d), r2 in zip([LIB["sqrt"], LIB["log"], LIB["arctanh"]], fit.params, fit.r2):
        if math.isfinite(float(r2)):  # an accepted candidate computes finite values on its data
            assert torch.isfinite(f.torch_fn(a * x + b)).all(), f.name
    assert float(fit.r2[0]) > 0.99


def test_score_floor_discounts_differences_below_it():
    """x (complexity 1, 1 - r2 = 1e-3) against sqrt (2, 1e-5): pykan's floor 1e-5 charges x 5.7
    bits (sqrt wins); a floor of 1e-4 (the layer's precision) charges it 3.3 bits, less than
    the 4 bits sqrt's extra complexity costs (x wins)."""
    r2 = torch.tensor([1 - 1e-3, 1 - 1e-5], dtype=torch.float64)
    complexity = torch.tensor([1.0, 2.0])
    pykan = symbolic_scores(r2, complexity)
    assert float(pykan[1]) < float(pykan[0])
    floored = symbolic_scores(r2, complexity, floor=1e-4)
    assert float(floored[0]) < float(floored[1])
    assert float(floored[0]) == pytest.approx(0.8 + 0.2 * math.log2(1e-4 + 1e-3))
    per_edge = symbolic_scores(torch.stack([r2, r2]), complexity, floor=torch.tensor([[1e-5], [1e-4]]))
    torch.testing.assert_close(per_edge, torch.stack([pykan, floored]))
    with pytest.raises(ValueError, match="floor"):
        symbolic_scores(r2, complexity, floor=0.0)
