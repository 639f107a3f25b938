"""One contract every registered symbolic library (built-in or plugin) must meet."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import sympy
import torch

import kantk
from kantk.symbolic import SymbolicFunction, get_library

LIBRARIES = kantk.list_symbolic_libraries()
FUNCTIONS = [(lib, name) for lib in LIBRARIES for name in get_library(lib)]

# Inside every built-in function's real domain, and away from its poles.
Z = torch.tensor([-0.93, -0.71, -0.4, -0.13, 0.11, 0.37, 0.62, 0.88], dtype=torch.float64)


def test_builtin_libraries_are_registered():
    assert {"default", "minimal"} <= set(LIBRARIES)
    assert len(get_library("default")) == 29
    assert list(get_library("minimal")) == [
        "x",
        "x^2",
        "x^3",
        "x^4",
        "exp",
        "log",
        "sqrt",
        "tanh",
        "sin",
        "abs",
    ]


@pytest.mark.parametrize("library", LIBRARIES)
def test_library_yields_unique_records(library):
    records = list(kantk.default_registry().symbolic_libraries.get(library).functions())
    assert records, f"symbolic library {library!r} is empty"
    assert all(isinstance(r, SymbolicFunction) for r in records)
    names = [r.name for r in records]
    assert len(names) == len(set(names))
    assert all(r.complexity >= 0 for r in records)


@pytest.mark.parametrize(("library", "name"), FUNCTIONS)
def test_torch_is_elementwise_and_sympy_agrees(library, name):
    fn = get_library(library)[name]
    z2 = Z.reshape(2, 4)
    values = fn.torch_fn(z2)
    assert values.shape == z2.shape and values.dtype == torch.float64
    sym = sympy.Symbol("z")
    expr = sympy.sympify(fn.sympy_fn(sym))
    f = sympy.lambdify(sym, expr, modules="numpy")
    for z, v in zip(Z.tolist(), values.flatten().tolist()):
        if not math.isfinite(v):
            continue
        got = complex(f(z))
        assert abs(got.imag) < 1e-12 and got.real == pytest.approx(v, rel=1e-9, abs=1e-12), (name, z)


@pytest.mark.parametrize(("library", "name"), FUNCTIONS)
def test_safe_form_is_exact_where_finite_and_never_infinite(library, name):
    fn = get_library(library)[name]
    z = torch.cat([Z, torch.tensor([0.0, -3.0, 3.0, 1e-9, -1e-9, 40.0, 1.0, -1.0], dtype=torch.float64)])
    exact = fn.torch_fn(z)
    safe = fn.safe(z)
    assert not torch.isinf(safe).any(), f"{name}: the safe form must be finite or NaN (out of domain)"
    moderate = torch.isfinite(exact) & (exact.abs() < 1e3)
    inside = moderate & (z.abs() < 2)
    torch.testing.assert_close(safe[inside], exact[inside], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("library", LIBRARIES)
def test_records_survive_pickle_and_deepcopy(library):
    lib = get_library(library)
    for fn in lib.functions:
        for clone in (pickle.loads(pickle.dumps(fn)), copy.deepcopy(fn)):
            torch.testing.assert_close(clone.torch_fn(Z), fn.torch_fn(Z), equal_nan=True)
