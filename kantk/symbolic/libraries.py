"""The built-in symbolic libraries ``default`` (pykan's 29 functions) and ``minimal`` (10).

Complexities are pykan 0.2.8's. sympy is imported only when a formula is built, not here.

Singular-safe forms, used only by the affine search (the layer's forward and the formulas use the
exact functions):

========================  =========================================================================
function                  safe form
========================  =========================================================================
``1/x^n`` (n = 1..5)      ``z`` pushed away from 0 to ``|z| >= POLE_BOUND**(-1/n)`` (sign kept), so
                          ``|f| <= POLE_BOUND``
``sqrt``, ``x^0.5``,      NaN for ``z < 0`` (outside the real domain: the candidate is rejected)
``x^1.5``
``1/sqrt(x)``,            NaN for ``z < 0``; ``z`` raised to at least ``POLE_BOUND**-2``
``1/x^0.5``
``log``                   NaN for ``z <= 0``; ``z`` raised to at least ``LOG_FLOOR``
``tan``                   values clipped to ``[-POLE_BOUND, POLE_BOUND]``
``arcsin``, ``arccos``    NaN for ``|z| > 1`` (torch's own behaviour: no separate safe form)
``arctanh``               NaN for ``|z| >= 1`` (where torch gives +-Inf)
``exp``                   ``z`` clipped to at most ``EXP_MAX``
========================  =========================================================================

The fitted parameters are then checked with the exact function on every sample (see
:mod:`kantk.symbolic.fitting`), so a candidate is never reported better than the model computes.

Real domains (:class:`kantk.symbolic.records.Domain`), which the fit keeps ``a * x + b`` inside on
the edge's input range plus a margin: ``1/x^n`` no pole at 0; ``sqrt``, ``x^0.5``, ``x^1.5``
``[0, inf)``; ``1/sqrt(x)``, ``1/x^0.5``, ``log`` ``(0, inf)``; ``tan`` no pole ``pi/2 + k pi``;
``arcsin``, ``arccos`` ``[-1, 1]``; ``arctanh`` ``(-1, 1)``; the others everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from kantk.plugins import hookimpl
from kantk.symbolic.records import Domain, SymbolicFunction
from kantk.types import SymbolicLibrarySpec

#: Largest magnitude a safe pole function returns.
POLE_BOUND = 1e4
#: Smallest argument the safe logarithm sees (log(1e-12) ~ -27.6).
LOG_FLOOR = 1e-12
#: Largest argument the safe exponential sees (exp(50) ~ 5e21).
EXP_MAX = 50.0


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _sympy():
    import sympy

    return sympy


@dataclass(frozen=True)
class Power:
    """``x ** (num / den)`` for torch tensors and sympy expressions alike (exact)."""

    num: int
    den: int = 1

    def __call__(self, x: Any) -> Any:
        if _is_tensor(x):
            return x**self.num if self.den == 1 else x ** (self.num / self.den)
        return x ** _sympy().Rational(self.num, self.den)


@dataclass(frozen=True)
class SafePower:
    """Singular-safe ``x ** (num / den)``: NaN outside the real domain, bounded near 0."""

    num: int
    den: int = 1

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        p = self.num / self.den
        if self.den != 1:  # fractional power: real only for z >= 0
            out_of_domain = z < 0
            z = z.clamp_min(0)
        if p < 0:
            eps = POLE_BOUND ** (1.0 / p)  # |z| >= eps  =>  |z ** p| <= POLE_BOUND
            if self.den != 1:
                z = z.clamp_min(eps)
            else:
                z = torch.where(z.abs() < eps, torch.copysign(torch.full_like(z, eps), z), z)
        out = z**self.num if self.den == 1 else z**p
        if self.den != 1:
            out = torch.where(out_of_domain, torch.full_like(out, math.nan), out)
        return out


@dataclass(frozen=True)
class SympyFunction:
    """A named sympy function, ``getattr(sympy, name)(x)``."""

    name: str

    def __call__(self, x: Any) -> Any:
        return getattr(_sympy(), self.name)(x)


@dataclass(frozen=True)
class Zero:
    """The constant 0 (torch zeros of ``x``'s shape, or sympy's 0)."""

    def __call__(self, x: Any) -> Any:
        return torch.zeros_like(x) if _is_tensor(x) else _sympy().Integer(0)


@dataclass(frozen=True)
class Gaussian:
    """``exp(-x**2)``."""

    def __call__(self, x: Any) -> Any:
        return torch.exp(-x * x) if _is_tensor(x) else _sympy().exp(-(x**2))


def _nan_where(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, torch.full_like(values, math.nan), values)


def safe_log(z: torch.Tensor) -> torch.Tensor:
    """``log(z)``; NaN for ``z <= 0``, argument at least ``LOG_FLOOR``."""
    return _nan_where(z <= 0, torch.log(z.clamp_min(LOG_FLOOR)))


def safe_tan(z: torch.Tensor) -> torch.Tensor:
    """``tan(z)`` clipped to ``[-POLE_BOUND, POLE_BOUND]``."""
    return torch.tan(z).clamp(-POLE_BOUND, POLE_BOUND)


def safe_arctanh(z: torch.Tensor) -> torch.Tensor:
    """``arctanh(z)``; NaN for ``|z| >= 1``."""
    return _nan_where(z.abs() >= 1, torch.arctanh(z))


def safe_exp(z: torch.Tensor) -> torch.Tensor:
    """``exp(z)`` with ``z`` clipped to at most ``EXP_MAX``."""
    return torch.exp(z.clamp_max(EXP_MAX))


def _fn(
    name: str,
    torch_fn: Any,
    sympy_fn: Any,
    complexity: float,
    safe: Any = None,
    description: str = "",
    domain: Domain | None = None,
) -> SymbolicFunction:
    return SymbolicFunction(name, torch_fn, sympy_fn, complexity, safe, description, domain)


#: Real domains of the built-in functions that have one.
NONNEGATIVE = Domain(0.0, low_closed=True)
POSITIVE = Domain(0.0)
NO_POLE_AT_ZERO = Domain(pole=0.0)
CLOSED_UNIT = Domain(-1.0, 1.0, low_closed=True, high_closed=True)
OPEN_UNIT = Domain(-1.0, 1.0)
TAN_DOMAIN = Domain(pole=math.pi / 2, pole_period=math.pi)


def default_functions() -> list[SymbolicFunction]:
    """pykan 0.2.8's ``SYMBOLIC_LIB``: 29 functions, in its order, with its complexities."""
    inverse = [
        _fn(f"1/x{'' if n == 1 else f'^{n}'}", Power(-n), Power(-n), c, SafePower(-n), domain=NO_POLE_AT_ZERO)
        for n, c in ((1, 2), (2, 2), (3, 3), (4, 4), (5, 5))
    ]
    return [
        _fn("x", Power(1), Power(1), 1, description="identity"),
        _fn("x^2", Power(2), Power(2), 2),
        _fn("x^3", Power(3), Power(3), 3),
        _fn("x^4", Power(4), Power(4), 3),
        _fn("x^5", Power(5), Power(5), 3),
        *inverse,
        _fn("sqrt", torch.sqrt, Power(1, 2), 2, SafePower(1, 2), domain=NONNEGATIVE),
        _fn("x^0.5", Power(1, 2), Power(1, 2), 2, SafePower(1, 2), domain=NONNEGATIVE),
        _fn("x^1.5", Power(3, 2), Power(3, 2), 4, SafePower(3, 2), domain=NONNEGATIVE),
        _fn("1/sqrt(x)", Power(-1, 2), Power(-1, 2), 2, SafePower(-1, 2), domain=POSITIVE),
        _fn("1/x^0.5", Power(-1, 2), Power(-1, 2), 2, SafePower(-1, 2), domain=POSITIVE),
        _fn("exp", torch.exp, SympyFunction("exp"), 2, safe_exp),
        _fn("log", torch.log, SympyFunction("log"), 2, safe_log, domain=POSITIVE),
        _fn("abs", torch.abs, SympyFunction("Abs"), 3),
        _fn("sin", torch.sin, SympyFunction("sin"), 2),
        _fn("cos", torch.cos, SympyFunction("cos"), 2),
        _fn("tan", torch.tan, SympyFunction("tan"), 3, safe_tan, domain=TAN_DOMAIN),
        _fn("tanh", torch.tanh, SympyFunction("tanh"), 3),
        _fn("sgn", torch.sign, SympyFunction("sign"), 3),
        _fn("arcsin", torch.arcsin, SympyFunction("asin"), 4, domain=CLOSED_UNIT),
        _fn("arccos", torch.arccos, SympyFunction("acos"), 4, domain=CLOSED_UNIT),
        _fn("arctan", torch.arctan, SympyFunction("atan"), 4),
        _fn("arctanh", torch.arctanh, SympyFunction("atanh"), 4, safe_arctanh, domain=OPEN_UNIT),
        _fn("0", Zero(), Zero(), 0, description="the constant 0 (a negligible edge)"),
        _fn("gaussian", Gaussian(), Gaussian(), 3, description="exp(-x^2)"),
    ]


#: The functions of pykan's tutorials' short list (``lib=[...]`` in its "hello KAN" example).
MINIMAL_NAMES = ("x", "x^2", "x^3", "x^4", "exp", "log", "sqrt", "tanh", "sin", "abs")


def minimal_functions() -> list[SymbolicFunction]:
    """x, x^2, x^3, x^4, exp, log, sqrt, tanh, sin, abs (the ``default`` records)."""
    by_name = {fn.name: fn for fn in default_functions()}
    return [by_name[name] for name in MINIMAL_NAMES]


@hookimpl
def kantk_symbolic_libraries():
    yield SymbolicLibrarySpec(
        "default",
        default_functions,
        "pykan's 29 functions: powers, inverses, roots, exp, log, trig, 0, gaussian",
    )
    yield SymbolicLibrarySpec(
        "minimal", minimal_functions, "x, x^2, x^3, x^4, exp, log, sqrt, tanh, sin, abs"
    )
