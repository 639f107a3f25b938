from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import kantk
from kantk.kanpiler import PRODUCTS, formula_to_kan
from kantk.symbolic.formula import formula_to_callable, round_constants


def _points(n: int, lo: float | list[float], hi: float | list[float], seed: int = 0) -> torch.Tensor:
    """200 points uniform in the box [lo, hi] (numbers, or one bound per variable)."""
    gen = torch.Generator().manual_seed(seed)
    lo_t, hi_t = (torch.as_tensor(v, dtype=torch.float64).expand(n) for v in (lo, hi))
    return torch.rand(200, n, generator=gen, dtype=torch.float64) * (hi_t - lo_t) + lo_t


def _reference(formulas: list[str], x: torch.Tensor) -> torch.Tensor:
    exprs = [kantk.parse_formula(f) for f in formulas]
    names = [f"x{k + 1}" for k in range(x.shape[1])]
    return torch.as_tensor(formula_to_callable(exprs, names)(x.numpy()))


def _equivalent(formula: sp.Expr, target: sp.Expr) -> bool:
    """Same function symbolically: floats made exact, the difference simplified, and whatever
    constant is left must vanish to 1e-9 (the unrounded formula carries float round-off)."""
    snapped = round_constants(formula, 10, snap_only=True)  # 3.14159.. -> pi, 1.0 -> 1
    diff = sp.simplify(sp.nsimplify(snapped, rational=True) - target)
    return round_constants(sp.expand(diff.evalf()), 9) == 0


# name, formula, product construction, input range (where the formula is real)
ROUND_TRIPS = [
    ("seed", "exp(sin(pi*x1) + x2**2)", "squares", (-1.0, 1.0)),
    ("Feynman I.6.20a", "exp(-x1**2/2)/sqrt(2*pi)", "squares", (-3.0, 3.0)),
    ("Feynman I.14.3 U = m g z", "x1*x2*x3", "squares", (-2.0, 2.0)),
    (
        "Feynman I.10.7 m0/sqrt(1 - v^2/c^2)",
        "x1/sqrt(1 - x2**2/x3**2)",
        "squares",
        ([1.0, 0.1, 1.0], [2.0, 0.9, 2.0]),
    ),
    ("Feynman I.12.4 q/(4 pi eps r^2)", "x1/(4*pi*x2*x3**2)", "log", (1.0, 5.0)),
    ("Feynman I.14.3 (log products)", "x1*x2*x3", "log", (1.0, 5.0)),
    # sympy distributes rational factors only: pi*(x1 + x2) was refused ("cannot compile x1 + x2")
    ("irrational times a sum", "pi*(x1 + x2)", "squares", (-1.0, 1.0)),
    ("irrational times a sum (mult)", "pi*(x1 + x2)", "mult", (-1.0, 1.0)),
    ("a sum over sqrt(2)", "(x1 + 1)/sqrt(2) + sin(pi*(x1 - x2)/3)", "squares", (-1.0, 1.0)),
    # halves differing by a constant: A - B was a number and the product was refused
    ("x1*(x1 + 1)", "x1*(x1 + 1)", "squares", (-2.0, 2.0)),
    ("(x1 + 1)*(x1 - 1)", "(x1 + 1)*(x1 - 1)", "squares", (-2.0, 2.0)),
    ("x1*x2*(x2 + 2)", "x1*x2*(x2 + 2)", "squares", (-2.0, 2.0)),
    # an even power of a negative base under log products: 2*log(x1) was NaN for x1 < 0
    ("even powers (log products)", "x1**2*x2/x1**4", "log", ([-3.0, 0.5], [-0.5, 3.0])),
]


@pytest.mark.parametrize(("name", "formula", "product", "box"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_formula_round_trips_and_model_is_exact(name, formula, product, box):
    model = formula_to_kan(formula, product=product, dtype=torch.float64)
    target = kantk.parse_formula(formula)
    x = _points(model.widths[0], *box)
    # exact at initialisation: only float round-off (1e-12 leaves ~1e3 ulps of margin)
    torch.testing.assert_close(model(x), _reference([formula], x), rtol=1e-12, atol=1e-12)
    (exact,) = kantk.symbolic_formula(model, digits=None)
    assert _equivalent(exact, target), (name, exact)


@pytest.mark.parametrize(
    ("formula", "product", "box"),
    [
        ("exp(sin(pi*x1) + x2**2)", "squares", (-1.0, 1.0)),
        ("x1*x2*x3", "squares", (-2.0, 2.0)),
        ("x1/sqrt(1 - x2**2/x3**2)", "squares", ([1.0, 0.1, 1.0], [2.0, 0.9, 2.0])),
        ("x1*x2*x3", "log", (1.0, 5.0)),
    ],
)
def test_default_rounding_gives_the_formula_back_exactly(formula, product, box):
    model = formula_to_kan(formula, product=product, dtype=torch.float64)
    (got,) = kantk.symbolic_formula(model, x=_points(model.widths[0], *box))
    assert sp.simplify(got - kantk.parse_formula(formula)) == 0, got


def test_seed_formula_has_pykans_shape():
    model = formula_to_kan("exp(sin(pi*x1) + x2**2)")
    assert model.widths == [2, 1, 1]
    assert model.layers[0].symbolic_names == [["sin", "x^2"]]
    assert model.layers[1].symbolic_names == [["exp"]]


def test_products_by_squares_work_for_negative_inputs():
    model = formula_to_kan("3*x1*x2 - x2", dtype=torch.float64)
    x = _points(2, -3.0, 3.0)
    torch.testing.assert_close(model(x)[:, 0], 3 * x[:, 0] * x[:, 1] - x[:, 1], rtol=1e-12, atol=1e-12)


def test_two_functions_of_one_node_and_several_outputs():
    model = formula_to_kan(["x1 + sin(x1)", "x1", "x1**2 + 2"], dtype=torch.float64)
    x = _points(1, -2.0, 2.0)
    want = torch.stack([x[:, 0] + torch.sin(x[:, 0]), x[:, 0], x[:, 0] ** 2 + 2], dim=1)
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)


def test_unused_variables_and_sympy_input():
    a, b, c = sp.symbols("a b c")
    model = formula_to_kan(sp.sin(a) * b, variables=[a, b, c], dtype=torch.float64)
    assert model.widths[0] == 3
    x = _points(3, -1.0, 1.0)
    torch.testing.assert_close(model(x)[:, 0], torch.sin(x[:, 0]) * x[:, 1], rtol=1e-12, atol=1e-12)
    (formula,) = kantk.symbolic_formula(model, var_names=["a", "b", "c"])
    assert sp.simplify(formula - sp.sin(a) * b) == 0


def test_variable_names_find_symbols_with_assumptions():
    """variables=["a", "theta"] built plain symbols, which differ from the formula's
    Symbol("a", positive=True): "the formula uses a, theta, not among the variables [a, theta]"."""
    a, theta = sp.Symbol("a", positive=True), sp.Symbol("theta", real=True)
    model = formula_to_kan(a * sp.sin(theta) + 1, variables=["theta", "a"], dtype=torch.float64)
    x = _points(2, 0.5, 2.0)
    torch.testing.assert_close(model(x)[:, 0], x[:, 1] * torch.sin(x[:, 0]) + 1, rtol=1e-12, atol=1e-12)


def test_a_formula_past_the_model_size_bound_is_refused_before_it_is_built(monkeypatch):
    """A 3,500-character formula compiled to 44 layers 701 wide (334 million numbers, 2 GB):
    formula_to_kan bounded layers and widths only. The count includes the symbolic edges'
    state (the meta build without it was 104 million numbers short)."""
    import kantk.kanpiler as kanpiler
    from kantk.model import planned_numbers

    formula = "x1*x2 + x2*x3 + sin(sin(sin(x1)))"
    model = formula_to_kan(formula)
    held = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    assert planned_numbers(model.width_spec, symbolic=True, mult_arity=2) == held
    monkeypatch.setattr(kanpiler, "MAX_MODEL_NUMBERS", held - 1)
    built = []
    monkeypatch.setattr(kanpiler, "KAN", lambda *a, **k: built.append(1))
    with pytest.raises(ValueError, match=rf"needs a model of {held:,} numbers .*builds at most"):
        formula_to_kan(formula)
    assert not built


def test_model_is_trainable_from_the_formula():
    torch.manual_seed(0)
    model = formula_to_kan("sin(x1) + x2**2", dtype=torch.float64)
    x = _points(2, -1.0, 1.0)
    y = (1.5 * torch.sin(x[:, 0]) + x[:, 1] ** 2 + 0.3).unsqueeze(1)  # the same form, other constants
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=0.05)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first  # trains the affine constants towards the data


def test_model_saves_and_loads(tmp_path):
    model = formula_to_kan("x1*x2 + exp(-x1**2)", dtype=torch.float64)
    path = tmp_path / "compiled.kan"
    kantk.save(model, path)
    loaded = kantk.load(path)
    x = _points(2, -1.0, 1.0)
    torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("sinh(x1)", "cannot compile"),
        ("x1**7", "exponents"),
        ("x1**x2", "cannot compile"),
        ("x1 > 2", "comparison"),
        ("__import__('os')", "formula"),
    ],
)
def test_bad_formulas_are_refused_with_a_reason(formula, message):
    with pytest.raises(ValueError, match=message):
        formula_to_kan(formula)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown product 'nope'; valid products: squares, log, mult"):
        formula_to_kan("x1*x2", product="nope")  # "mult" is multiplication nodes
    with pytest.raises(ValueError, match="variables must be an int >= 1, got 0"):
        formula_to_kan("2", variables=0)  # a constant: no variable to refuse first
    with pytest.raises(TypeError, match="variables must be a count.*, got True"):
        formula_to_kan("x1", variables=True)
    with pytest.raises(ValueError, match="x3"):
        formula_to_kan("x1 + x3", variables=2)
    with pytest.raises(TypeError):
        formula_to_kan(3.0)


def test_power_of_variables_with_log_products():
    model = formula_to_kan("x1**x2", product="log", dtype=torch.float64)
    x = _points(2, 1.0, 3.0)
    torch.testing.assert_close(model(x)[:, 0], x[:, 0] ** x[:, 1], rtol=1e-10, atol=1e-10)
    assert np.isfinite(model(x).detach().numpy()).all()


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("x1**x2", lambda a, b: a**b),
        ("exp(x1)**x2", lambda a, b: torch.exp(a) ** b),
        ("3*x1**(x2 + 1)/x2**2", lambda a, b: 3 * a ** (b + 1) / b**2),
    ],
)
def test_a_power_of_a_positive_base_compiles_for_any_base_and_exponent(text, reference):
    """x ** y became exp(y * log(x)) with y * log(x) itself a product of logs: NaN for any base
    below 1 or negative exponent (0.5 ** 2), though the docs promise positive bases."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(200, generator=g, dtype=torch.float64) * 2.9 + 0.1  # (0.1, 3)
    exponent = torch.rand(200, generator=g, dtype=torch.float64) * 4 - 2  # (-2, 2)
    if text.startswith("exp"):
        base = base * 2 - 3  # exp(x1) is positive for any x1
    x = torch.stack([base, exponent], dim=1)
    model = formula_to_kan(text, product="log", dtype=torch.float64)
    torch.testing.assert_close(model(x)[:, 0], reference(x[:, 0], x[:, 1]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x1 + sqrt(-1)", ": I;"),
        ("1/0 + x1", "a division by zero"),  # refused by the parser already
        ("x1 + log(-1)", "log(-1)"),  # refused by the parser already
        ("x1 + 10**400", "100"),
    ],
)
def test_a_constant_that_is_not_a_finite_real_number_is_a_one_line_value_error(text, shown):
    with pytest.raises(ValueError, match="not a finite (real )?number") as info:
        formula_to_kan(text)
    message = str(info.value)
    assert "\n" not in message and shown in message, message


def test_the_compiled_model_takes_its_variables_in_order_and_var_names_names_them():
    """formula_to_kan("x2*x3") takes two inputs, x2 and x3 by position (a two-column CSV); its
    formula reads x1*x2 by default, and var_names gives the formula's names back."""
    torch.set_default_dtype(torch.float64)  # the conftest restores float32
    model = formula_to_kan("x2*x3")
    assert model.widths[0] == 2 and model.input_columns is None
    (expr,) = kantk.symbolic_formula(model, var_names=["x2", "x3"])
    assert sp.simplify(expr - sp.sympify("x2*x3")) == 0, expr
    data = _points(2, -1.0, 1.0)
    torch.testing.assert_close(model(data)[:, 0], data[:, 0] * data[:, 1])
    model = formula_to_kan("x2 - x1", variables=["x2", "x1"])
    (expr,) = kantk.symbolic_formula(model, var_names=["x2", "x1"])
    assert sp.simplify(expr - sp.sympify("x2 - x1")) == 0, expr


def test_a_product_in_the_exponent_is_built_by_squares_all_the_way_down():
    """x1**(x2*x3): the halves of x2*x3*log(x1) were products of logs again (NaN on 27 of 50)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, generator=g, dtype=torch.float64) * 4 - 2
    x[:, 0] = x[:, 0].abs() * 1.45 + 0.1  # (0.1, 3)
    model = formula_to_kan("x1**(x2*x3)", product="log", dtype=torch.float64)
    torch.testing.assert_close(model(x)[:, 0], x[:, 0] ** (x[:, 1] * x[:, 2]), rtol=1e-9, atol=1e-9)


def test_a_number_to_a_formula_power_compiles_in_every_product_mode():
    """2**x1 was refused by "squares" and "mult" though it is exp(log(2) * x1); x1**x2 there now
    names product='log'."""
    x = _points(2, -1.0, 1.0)
    for product in PRODUCTS:
        model = formula_to_kan("3*2**x1 + x2", product=product, dtype=torch.float64)
        torch.testing.assert_close(model(x)[:, 0], 3 * 2 ** x[:, 0] + x[:, 1], rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="needs product='log'"):
        formula_to_kan("x1**x2")


def test_bad_variables_and_dtypes_get_their_own_messages():
    with pytest.raises(ValueError, match="variables lists a name twice"):
        formula_to_kan("x1*x2", variables=["x1", "x1"])  # said "unknown variable(s) x2"
    with pytest.raises(ValueError, match="dtype must be a floating-point torch dtype"):
        formula_to_kan("x1", dtype=torch.int64)  # torch's "nn.Module.to only accepts floating point"


def test_a_constant_output_compiles_with_a_library_without_the_zero_function():
    # the "minimal" library has no '0': "library 'minimal' has no function '0'", which no one wrote
    x = torch.rand(8, 1, dtype=torch.float64)
    model = kantk.formula_to_kan(["x1", "5"], library="minimal", dtype=torch.float64)
    torch.testing.assert_close(model(x), torch.cat([x, torch.full_like(x, 5.0)], dim=1))
    assert kantk.symbolic_formula(model) == [sp.Symbol("x1"), 5]
    # nor 'x': a function finite at 0, times 0 (log is not: it is skipped)
    model = kantk.formula_to_kan(["sin(x1)", "5"], library=["log", "sin"], dtype=torch.float64)
    x = torch.rand(8, 1, dtype=torch.float64) - 2  # where log is not real
    torch.testing.assert_close(model(x), torch.cat([torch.sin(x), torch.full_like(x, 5.0)], dim=1))
