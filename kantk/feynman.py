"""The Feynman equations of the KAN paper's Feynman table, as datasets.

Liu et al. 2024 ("KAN: Kolmogorov-Arnold Networks", arXiv 2404.19756, section 3.3, Table 2) fit
27 equations from the Feynman Lectures (the AI Feynman collection, Udrescu & Tegmark 2020) in
their dimensionless forms. :func:`equations` lists them, :func:`equation` looks one up by its
number, and :func:`dataset` samples one as :func:`kantk.create_dataset` does::

    import kantk
    eq = kantk.feynman.equation("I.16.6")          # (a + b)/(1 + a*b)
    data = kantk.feynman.dataset("I.16.6", seed=0)  # train/test inputs and labels, float64

Each record holds the formula in ``x1 .. xn`` (create_dataset's names, read by kantk's safe
parser :func:`kantk.parse_formula`), the paper's names of those variables, and the ranges they
are drawn from (uniformly).

**Ranges.** The paper's table gives the formulas and variables but not the ranges of the
dimensionless variables, so the ranges here are kantk's choice, made by these rules (and kept
where ``examples/feynman.py`` already used them):

* angles their physical range: a phase in [0, 2 pi], the angle between two vectors in [0, pi],
  an angle of incidence in [0, pi/2];
* signed dimensionless quantities in [-1, 1];
* positive ratios (masses, distances, temperatures, volumes) in [0.5, 2]; amplitudes and
  densities (``n0``, ``a`` of I.37.4) in [0, 1] or [0.1, 1];
* narrower where the formula needs it: I.16.6's a, b in [-0.8, 0.8] (on the paper text's
  (-1, 1)^2, f jumps at the corners), I.15.3x's b = u/c in [-0.9, 0.9], the squared distances
  of I.9.18 in [1, 4], the arguments of ``arcsin`` and the denominators of I.30.3 away from
  their singularities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sympy
    import torch

__all__ = ["FeynmanEquation", "dataset", "equation", "equations", "names"]

_TWO_PI = 2 * math.pi
_PI = math.pi
_HALF_PI = math.pi / 2


@dataclass(frozen=True)
class FeynmanEquation:
    """One row of the paper's Feynman table.

    Attributes:
        name: The equation's number in the Feynman Lectures, e.g. ``"I.6.2b"``.
        original: The original formula, as the paper writes it (for reading, not parsed).
        display: The dimensionless formula in the paper's variable names (for reading).
        formula: The dimensionless formula in ``x1 .. xn``, parsed by :func:`kantk.parse_formula`.
        variables: The paper's names of ``x1 .. xn``.
        ranges: ``(low, high)`` of each variable; samples are uniform on these.
    """

    name: str
    original: str
    display: str
    formula: str
    variables: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]

    @property
    def n_vars(self) -> int:
        """Number of input variables."""
        return len(self.variables)

    def expression(self, named: bool = True) -> sympy.Expr:
        """The formula as a sympy expression.

        Args:
            named: Use the paper's variable names (real sympy symbols, e.g. ``theta1``) instead of
                ``x1 .. xn``.
        """
        import sympy

        from kantk.formula_parser import parse_formula

        expr = parse_formula(self.formula, self.n_vars, allow_comparison=False)
        if not named:
            return expr
        xs = sympy.symbols(f"x1:{self.n_vars + 1}")
        by_name = {s.name: s for s in expr.free_symbols}
        subs = {by_name[x.name]: s for x, s in zip(xs, self.symbols()) if x.name in by_name}
        return expr.xreplace(subs)

    def symbols(self) -> list[sympy.Symbol]:
        """Sympy symbols named as the paper's variables, in the order of ``x1 .. xn``.

        Real; positive (or nonnegative) where the range is, so ``sqrt(sigma**2)`` is ``sigma``.
        """
        import sympy

        return [
            sympy.Symbol(
                v, real=True, positive=True if lo > 0 else None, nonnegative=True if lo >= 0 else None
            )
            for v, (lo, _) in zip(self.variables, self.ranges)
        ]


def _eq(
    name: str,
    original: str,
    display: str,
    formula: str,
    variables: Sequence[str],
    ranges: Sequence[tuple[float, float]],
) -> FeynmanEquation:
    return FeynmanEquation(
        name, original, display, formula, tuple(variables), tuple((float(a), float(b)) for a, b in ranges)
    )


_SIGNED = (-1.0, 1.0)
_RATIO = (0.5, 2.0)
_UNIT = (0.0, 1.0)

#: The 27 equations, in the paper's order.
_EQUATIONS: tuple[FeynmanEquation, ...] = (
    _eq(
        "I.6.2",
        "exp(-theta^2/(2 sigma^2))/sqrt(2 pi sigma^2)",
        "exp(-theta^2/(2 sigma^2))/sqrt(2 pi sigma^2)",
        "exp(-x1**2/(2*x2**2))/sqrt(2*pi*x2**2)",
        ["theta", "sigma"],
        [(-1.5, 1.5), (0.5, 2.0)],
    ),
    _eq(
        "I.6.2b",
        "exp(-(theta-theta1)^2/(2 sigma^2))/sqrt(2 pi sigma^2)",
        "exp(-(theta-theta1)^2/(2 sigma^2))/sqrt(2 pi sigma^2)",
        "exp(-(x1-x2)**2/(2*x3**2))/sqrt(2*pi*x3**2)",
        ["theta", "theta1", "sigma"],
        [(-1.5, 1.5), (-1.5, 1.5), (0.5, 2.0)],
    ),
    _eq(
        "I.9.18",
        "G m1 m2/((x2-x1)^2+(y2-y1)^2+(z2-z1)^2)",
        "a/((b-1)^2+(c-d)^2+(e-f)^2)",
        "x1/((x2-1)**2 + (x3-x4)**2 + (x5-x6)**2)",
        ["a", "b", "c", "d", "e", "f"],
        # every squared distance in [1, 4]
        [_SIGNED, (-1.0, 0.0), (-1.0, -0.5), (0.5, 1.0), (-1.0, -0.5), (0.5, 1.0)],
    ),
    _eq(
        "I.12.11",
        "q(Ef + B v sin(theta))",
        "1 + a sin(theta)",
        "1 + x1*sin(x2)",
        ["a", "theta"],
        [_SIGNED, (0.0, _PI)],
    ),
    _eq(
        "I.13.12",
        "G m1 m2 (1/r2 - 1/r1)",
        "a (1/b - 1)",
        "x1*(1/x2 - 1)",
        ["a", "b"],
        [_SIGNED, _RATIO],
    ),
    _eq(
        "I.15.3x",
        "(x - u t)/sqrt(1 - (u/c)^2)",
        "(1-a)/sqrt(1-b^2)",
        "(1 - x1)/sqrt(1 - x2**2)",
        ["a", "b"],
        [_SIGNED, (-0.9, 0.9)],
    ),
    _eq(
        "I.16.6",
        "(u+v)/(1+u v/c^2)",
        "(a+b)/(1+a b)",
        "(x1 + x2)/(1 + x1*x2)",
        ["a", "b"],
        [(-0.8, 0.8), (-0.8, 0.8)],
    ),
    _eq(
        "I.18.4",
        "(m1 r1 + m2 r2)/(m1 + m2)",
        "(1+a b)/(1+a)",
        "(1 + x1*x2)/(1 + x1)",
        ["a", "b"],
        [_RATIO, _SIGNED],
    ),
    _eq(
        "I.26.2",
        "arcsin(n sin(theta2))",
        "arcsin(n sin(theta2))",
        "asin(x1*sin(x2))",
        ["n", "theta2"],
        [(0.0, 0.9), (0.0, _HALF_PI)],
    ),
    _eq(
        "I.27.6",
        "1/(1/d1 + n/d2)",
        "1/(1+a b)",
        "1/(1 + x1*x2)",
        ["a", "b"],
        [_RATIO, _RATIO],
    ),
    _eq(
        "I.29.16",
        "sqrt(x1^2 + x2^2 - 2 x1 x2 cos(theta1-theta2))",
        "sqrt(1+a^2-2 a cos(theta1-theta2))",
        "sqrt(1 + x1**2 - 2*x1*cos(x2 - x3))",
        ["a", "theta1", "theta2"],
        [_SIGNED, (0.0, _TWO_PI), (0.0, _TWO_PI)],
    ),
    _eq(
        "I.30.3",
        "I0 sin^2(n theta/2)/sin^2(theta/2)",
        "sin^2(n theta/2)/sin^2(theta/2)",
        "sin(x1*x2/2)**2/sin(x2/2)**2",
        ["n", "theta"],
        [(1.0, 3.0), (0.5, 2.5)],  # sin(theta/2) >= 0.24
    ),
    _eq(
        "I.30.5",
        "arcsin(lambda/(n d))",
        "arcsin(a/n)",
        "asin(x1/x2)",
        ["a", "n"],
        [_UNIT, (1.5, 3.0)],  # a/n <= 2/3
    ),
    _eq(
        "I.37.4",
        "I1 + I2 + 2 sqrt(I1 I2) cos(delta)",
        "1+a+2 sqrt(a) cos(delta)",
        "1 + x1 + 2*sqrt(x1)*cos(x2)",
        ["a", "delta"],
        [(0.1, 1.0), (0.0, _TWO_PI)],
    ),
    _eq(
        "I.40.1",
        "n0 exp(-m g x/(kb T))",
        "n0 exp(-a)",
        "x1*exp(-x2)",
        ["n0", "a"],
        [_UNIT, (0.0, 2.0)],
    ),
    _eq(
        "I.44.4",
        "n kb T ln(V2/V1)",
        "n ln(a)",
        "x1*log(x2)",
        ["n", "a"],
        [_UNIT, _RATIO],
    ),
    _eq(
        "I.50.26",
        "x1 (cos(omega t) + alpha cos^2(omega t))",
        "cos(a) + alpha cos^2(a)",
        "cos(x1) + x2*cos(x1)**2",
        ["a", "alpha"],
        [(0.0, _TWO_PI), _SIGNED],
    ),
    _eq(
        "II.2.42",
        "k (T2 - T1) A/d",
        "(a-1) b",
        "(x1 - 1)*x2",
        ["a", "b"],
        [_RATIO, _RATIO],
    ),
    _eq(
        "II.6.15a",
        "3/(4 pi epsilon) pd z/r^5 sqrt(x^2+y^2)",
        "1/(4 pi) c sqrt(a^2+b^2)",
        "x3*sqrt(x1**2 + x2**2)/(4*pi)",
        ["a", "b", "c"],
        [_SIGNED, _SIGNED, _UNIT],
    ),
    _eq(
        "II.11.7",
        "n0 (1 + pd Ef cos(theta)/(kb T))",
        "n0 (1 + a cos(theta))",
        "x1*(1 + x2*cos(x3))",
        ["n0", "a", "theta"],
        [_UNIT, _SIGNED, (0.0, _PI)],
    ),
    _eq(
        "II.11.27",
        "n alpha/(1 - n alpha/3) epsilon Ef",
        "n alpha/(1 - n alpha/3)",
        "x1*x2/(1 - x1*x2/3)",
        ["n", "alpha"],
        [_UNIT, _UNIT],
    ),
    _eq(
        "II.35.18",
        "n0/(exp(mu B/(kb T)) + exp(-mu B/(kb T)))",
        "n0/(exp(a)+exp(-a))",
        "x1/(exp(x2) + exp(-x2))",
        ["n0", "a"],
        [_UNIT, (-2.0, 2.0)],
    ),
    _eq(
        "II.36.38",
        "mu B/(kb T) + mu alpha M/(epsilon c^2 kb T)",
        "a + alpha b",
        "x1 + x2*x3",
        ["a", "alpha", "b"],
        [_SIGNED, _SIGNED, _SIGNED],
    ),
    _eq(
        "II.38.3",
        "Y A x/d",
        "a/b",
        "x1/x2",
        ["a", "b"],
        [_SIGNED, _RATIO],
    ),
    _eq(
        "III.9.52",
        "pd Ef t/hbar sin^2((omega-omega0) t/2)/((omega-omega0) t/2)^2",
        "a sin^2((b-c)/2)/((b-c)/2)^2",
        "x1*sin((x2 - x3)/2)**2/((x2 - x3)/2)**2",
        ["a", "b", "c"],
        [_UNIT, _SIGNED, _SIGNED],
    ),
    _eq(
        "III.10.19",
        "mu sqrt(Bx^2 + By^2 + Bz^2)",
        "sqrt(1+a^2+b^2)",
        "sqrt(1 + x1**2 + x2**2)",
        ["a", "b"],
        [_SIGNED, _SIGNED],
    ),
    _eq(
        "III.17.37",
        "beta (1 + alpha cos(theta))",
        "beta (1+alpha cos(theta))",
        "x2*(1 + x1*cos(x3))",
        ["alpha", "beta", "theta"],
        [_SIGNED, _UNIT, (0.0, _PI)],
    ),
)

_BY_NAME = {eq.name: eq for eq in _EQUATIONS}


def equations() -> list[FeynmanEquation]:
    """The 27 equations of the paper's Feynman table, in its order."""
    return list(_EQUATIONS)


def names() -> list[str]:
    """The equations' numbers (``"I.6.2"`` ... ``"III.17.37"``), in the paper's order."""
    return [eq.name for eq in _EQUATIONS]


def equation(name: str) -> FeynmanEquation:
    """The equation numbered ``name`` (e.g. ``"I.6.2b"``).

    Raises:
        ValueError: ``name`` is not one of :func:`names`.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        shown = repr(name)[:40]
        raise ValueError(f"unknown Feynman equation {shown}; known: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def dataset(
    name: str,
    n_train: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Samples of one equation on its ranges: :func:`kantk.create_dataset`'s dict.

    Args:
        name: The equation's number, e.g. ``"I.6.2b"`` (see :func:`names`).
        n_train, n_test: Number of training and test samples.
        seed: Seeds the sampling.
        dtype: Floating dtype (default float64: these are benchmarks of exact recovery).
        device: Where the tensors live (default CPU).
        **kwargs: Passed on to :func:`kantk.create_dataset` (``normalize_input``, ``normalize_label``).

    Returns:
        ``{"train_input", "train_label", "test_input", "test_label"}``; inputs ``(n, n_vars)`` in
        the order of ``equation(name).variables``, labels ``(n, 1)``.

    Raises:
        ValueError: An unknown name or a bad size (create_dataset's checks).
    """
    import torch

    from kantk.data import create_dataset

    eq = equation(name)
    return create_dataset(
        eq.formula,
        n_vars=eq.n_vars,
        ranges=list(eq.ranges),
        train_num=n_train,
        test_num=n_test,
        seed=seed,
        dtype=dtype or torch.float64,
        device=device,
        **kwargs,
    )


#: Constants a found formula's floats may round to (times a fraction p/q with q <= 12).
_BASES = (
    "1",
    "pi",
    "1/pi",
    "sqrt(2)",
    "1/sqrt(2)",
    "sqrt(pi)",
    "1/sqrt(pi)",
    "sqrt(2*pi)",
    "1/sqrt(2*pi)",
    "E",
)


def round_constants(expr: sympy.Expr, rel: float = 1e-3, zero: float = 1e-3) -> sympy.Expr:
    """``expr`` with every float constant rounded to the simplest nearby number.

    A float ``c`` becomes 0 when ``|c| < zero``; else ``(p/q) * B`` for the first base ``B`` of
    ``1, pi, 1/pi, sqrt(2), 1/sqrt(2), sqrt(pi), 1/sqrt(pi), sqrt(2 pi), 1/sqrt(2 pi), E`` and
    fraction ``p/q`` within ``rel * |c|`` of ``c``, taking the smallest denominator ``q <= 12``
    (then the first base); a float that has no such neighbour stays as it is.
    """
    from fractions import Fraction

    import sympy

    bases = [(sympy.sympify(b), float(sympy.sympify(b))) for b in _BASES]

    def simple(c: float) -> sympy.Expr | None:
        if abs(c) < zero:
            return sympy.Integer(0)
        for q in range(1, 13):  # the smallest denominator first, then the bases in order
            for base, value in bases:
                p = round(c / value * q)
                if p != 0 and abs(p / q * value - c) <= rel * abs(c):
                    return sympy.Rational(Fraction(p, q).numerator, Fraction(p, q).denominator) * base
        return None

    subs = {}
    for f in expr.atoms(sympy.Float):
        new = simple(float(f))
        if new is not None:
            subs[f] = new
    return expr.xreplace(subs)


def matches(found: sympy.Expr, name: str, *, rel: float = 1e-8, points: int = 1000, seed: int = 1) -> bool:
    """Whether ``found``, its constants rounded (:func:`round_constants`), is the equation's formula.

    "Exact recovery" in ``benchmarks/feynman.py``: every float constant of ``found`` rounds to a
    simple number, ``found`` names only the equation's variables (by name: the paper's names or
    ``x1 .. xn``), and the rounded formula equals the true one on ``points`` samples of the ranges
    (drawn with ``seed``, not the training data): ``max |found - true| <= rel * (1 + rms(true))``.
    A constant-free formula that agrees to 1e-8 on 1000 random points is the same function up to
    round-off; this holds also where sympy cannot simplify the difference to 0 (``tanh(atanh(a)
    + atanh(b))`` for I.16.6).

    Args:
        found: A sympy expression, e.g. ``kantk.discover(...).formulas[0]``.
        name: The equation's number.
        rel: Tolerance relative to ``1 + rms(true)``.
        points, seed: The check's samples.
    """
    import numpy as np
    import sympy

    eq = equation(name)
    rounded = round_constants(sympy.sympify(found))
    if rounded.atoms(sympy.Float) or rounded.atoms(sympy.core.function.AppliedUndef):
        return False  # a constant that does not round, or a numeric edge shown as f_<l>_<i>_<j>(...)
    symbols = eq.symbols()
    known = {s.name: s for s in symbols} | {f"x{i + 1}": s for i, s in enumerate(symbols)}
    free = {s.name for s in rounded.free_symbols}
    if not free <= set(known):
        return False
    rounded = rounded.xreplace({s: known[s.name] for s in rounded.free_symbols})
    data = dataset(name, n_train=points, n_test=0, seed=seed)
    x = data["train_input"].numpy()
    truth = data["train_label"].numpy()[:, 0]
    try:
        with np.errstate(all="ignore"):
            value = sympy.lambdify(symbols, rounded, "numpy")(*x.T)
    except (NameError, TypeError, ValueError, ZeroDivisionError):  # not evaluable: not the formula
        return False
    value = np.broadcast_to(np.asarray(value, dtype=complex), truth.shape)
    if not np.all(np.isfinite(value)) or np.max(np.abs(value.imag)) > 0:
        return False
    scale = 1.0 + float(np.sqrt(np.mean(truth**2)))
    return bool(np.max(np.abs(value.real - truth)) <= rel * scale)
