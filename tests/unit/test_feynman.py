"""kantk.feynman: the paper's Feynman table as datasets, and the exact-recovery check."""

from __future__ import annotations

import pytest
import sympy
import torch

import kantk
from kantk import feynman


def test_the_papers_27_equations_in_order() -> None:
    names = feynman.names()
    assert len(names) == 27 and len(set(names)) == 27
    assert names[0] == "I.6.2" and names[-1] == "III.17.37"
    assert kantk.feynman.equation("I.16.6").display == "(a+b)/(1+a b)"


@pytest.mark.parametrize("name", feynman.names())
def test_every_formula_parses_and_is_finite_on_its_ranges(name: str) -> None:
    eq = feynman.equation(name)
    expr = kantk.parse_formula(eq.formula, eq.n_vars)  # kantk's safe parser accepts it
    assert {s.name for s in expr.free_symbols} <= {f"x{i + 1}" for i in range(eq.n_vars)}
    assert {s.name for s in eq.expression().free_symbols} <= set(eq.variables)
    assert len(eq.ranges) == eq.n_vars and all(lo < hi for lo, hi in eq.ranges)
    data = feynman.dataset(name, n_train=500, n_test=200, seed=3)
    x, y = data["train_input"], data["train_label"]
    assert x.shape == (500, eq.n_vars) and y.shape == (500, 1) and x.dtype == torch.float64
    assert torch.isfinite(y).all() and torch.isfinite(data["test_label"]).all()
    lo = torch.tensor([r[0] for r in eq.ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in eq.ranges], dtype=torch.float64)
    assert bool(((x >= lo) & (x <= hi)).all())
    assert feynman.matches(eq.expression(), name)  # the truth matches itself, by names ...
    assert feynman.matches(expr, name)  # ... and in x1 .. xn


def test_datasets_are_seeded() -> None:
    a = feynman.dataset("I.9.18", n_train=50, n_test=10, seed=1)
    b = feynman.dataset("I.9.18", n_train=50, n_test=10, seed=1)
    c = feynman.dataset("I.9.18", n_train=50, n_test=10, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["train_input"], c["train_input"])


def test_unknown_name_says_what_is_known() -> None:
    with pytest.raises(ValueError, match="unknown Feynman equation 'I.99'.*I.6.2"):
        feynman.dataset("I.99")


def test_matches_rounds_constants_only_so_far() -> None:
    a, b = sympy.symbols("a b")
    rapidity = sympy.tanh(sympy.atanh(a) + sympy.atanh(b))  # sympy cannot simplify it to (a+b)/(1+ab)
    assert feynman.matches(rapidity, "I.16.6")
    assert feynman.matches(1.0004 * rapidity + 0.0002, "I.16.6")  # within the rounding
    assert not feynman.matches(1.01 * rapidity, "I.16.6")  # 1% off: not exact
    assert not feynman.matches(a + b, "I.16.6")
    assert not feynman.matches(a / b + sympy.Symbol("z"), "II.38.3")  # a foreign variable
    assert not feynman.matches(sympy.Function("f_0_0_0")(a) / b, "II.38.3")  # a numeric edge
    theta, sigma = sympy.symbols("theta sigma")
    assert feynman.matches(0.39894 * sympy.exp(-0.5 * theta**2 / sigma**2) / sigma, "I.6.2")  # 1/sqrt(2 pi)
    assert feynman.round_constants(3.1416 * a + 0.3333) == sympy.pi * a + sympy.Rational(1, 3)
