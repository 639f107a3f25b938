"""Symbolic function records and libraries: validation, composition without global state."""

from __future__ import annotations

import warnings

import pytest
import torch

import kantk
from kantk.symbolic import SymbolicFunction, SymbolicLibrary, compose_libraries, get_library, resolve_library


def _sinc() -> SymbolicFunction:
    return SymbolicFunction("sinc", torch.sinc, lambda x: __import__("sympy").sinc(x), 3)


def test_record_validation():
    with pytest.raises(ValueError, match="name"):
        SymbolicFunction("", torch.sin, torch.sin, 1)
    with pytest.raises(TypeError, match="torch_fn"):
        SymbolicFunction("s", 3, torch.sin, 1)
    with pytest.raises(ValueError, match="complexity"):
        SymbolicFunction("s", torch.sin, torch.sin, -1)
    fn = SymbolicFunction("s", torch.sin, torch.sin, 2)
    z = torch.linspace(-1, 1, 5)
    assert torch.equal(fn(z), torch.sin(z)) and torch.equal(fn.safe(z), torch.sin(z))


def test_library_lookup_lists_names_on_error():
    lib = get_library("minimal")
    assert lib["sin"].complexity == 2
    with pytest.raises(kantk.UnknownComponentError, match="its functions: x, x\\^2"):
        lib["sinh"]
    with pytest.raises(kantk.UnknownComponentError, match="default, minimal"):
        get_library("nope")


def test_pykan_complexities():
    lib = get_library("default")
    expected = {
        "x": 1,
        "x^2": 2,
        "x^4": 3,
        "1/x^5": 5,
        "sqrt": 2,
        "x^1.5": 4,
        "exp": 2,
        "abs": 3,
        "tan": 3,
        "arcsin": 4,
        "0": 0,
        "gaussian": 3,
    }
    assert {k: lib[k].complexity for k in expected} == expected


def test_resolve_library_forms():
    assert resolve_library("minimal").name == "minimal"
    subset = resolve_library(["x", "sin"])
    assert list(subset) == ["x", "sin"] and subset.source("sin") == "default"
    mixed = resolve_library(["x", _sinc()])
    assert (
        list(mixed) == ["x", "sinc"] and mixed.source("x") == "default" and mixed.source("sinc") == "custom"
    )
    with pytest.raises(TypeError, match="library must be"):
        resolve_library(3)
    with pytest.raises(ValueError, match="empty"):
        resolve_library([])


def test_compose_and_extend_without_global_state():
    before = list(get_library("minimal"))
    extended = get_library("minimal").with_functions(_sinc(), name="minimal+sinc")
    assert list(extended)[-1] == "sinc" and extended.source("sinc") == "minimal+sinc"
    assert extended.source("sin") == "minimal"
    assert list(get_library("minimal")) == before  # nothing registered or mutated
    both = compose_libraries("minimal", extended.subset(["sinc"]))
    assert both.name == "minimal+minimal+sinc" and "sinc" in both and "exp" in both
    with pytest.raises(ValueError, match="two functions"):
        SymbolicLibrary("dup", [_sinc(), _sinc()])


def test_plugin_library_through_a_registry():
    class Plugin:
        @kantk.hookimpl
        def kantk_symbolic_libraries(self):
            yield kantk.SymbolicLibrarySpec("mine", lambda: [_sinc()], "one function")

    registry = kantk.Registry.with_plugins(Plugin())
    assert "mine" in kantk.list_symbolic_libraries(registry)
    assert "mine" not in kantk.list_symbolic_libraries()
    assert list(get_library("mine", registry)) == ["sinc"]


def test_malformed_plugin_library():
    class Plugin:
        @kantk.hookimpl
        def kantk_symbolic_libraries(self):
            yield kantk.SymbolicLibrarySpec("bad", lambda: ["sin"], "not records")

    registry = kantk.Registry.with_plugins(Plugin())
    with pytest.raises(kantk.PluginError, match="bad"):
        get_library("bad", registry)


def test_a_function_computing_in_float32_fits_a_float64_model():
    """It failed in the fit with a raw "Float did not match Double" (the forward cast, the fit did not)."""
    import sympy

    sin32 = SymbolicFunction("sin32", lambda z: torch.sin(z.float()), sympy.sin, 2)
    x = torch.rand(100, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    model = kantk.KAN([1, 1], seed=0).double()
    ranked = kantk.suggest_symbolic(model, 0, 0, 0, x, library=["x", sin32])
    assert {c.name for c in ranked} == {"x", "sin32"}
    assert sin32.safe(x[:, 0]).dtype == torch.float64


def test_a_torch_function_returning_integers_or_complex_values_is_named():
    """(z > 0).long() failed deep in the fit with "Long did not match Double", a complex result
    with "expected scalar type Double but found ComplexDouble"."""
    z = torch.linspace(-1, 1, 5, dtype=torch.float64)
    step = SymbolicFunction("step", lambda t: (t > 0).long(), lambda t: t, 1)
    root = SymbolicFunction("croot", lambda t: torch.sqrt(t.to(torch.complex128)), lambda t: t, 1)
    for record in (step, root):
        with pytest.raises(TypeError, match=f"symbolic function '{record.name}' returned a tensor of dtype"):
            record(z)


def test_a_sympy_function_that_returns_no_expression_is_named():
    """A sympy_fn returning 1.5 turned the whole formula into a constant without a word, and one
    returning a string failed with "can't multiply sequence"."""
    for name, value in (("as_text", "sin(x)"), ("as_list", [1])):
        record = SymbolicFunction(name, torch.sin, lambda t, value=value: value, 2)
        lib = get_library("minimal").with_functions(record, name=f"minimal+{name}")
        model = kantk.KAN([1, 1], seed=0)
        kantk.fix_symbolic(model, 0, 0, 0, name, library=lib, fit_params=False)
        with pytest.raises(TypeError, match=f"symbolic function '{name}': its sympy_fn returned"):
            kantk.symbolic_formula(model)
    zero = SymbolicFunction("zero_number", lambda t: torch.zeros_like(t), lambda t: 0, 0.5)
    lib = get_library("minimal").with_functions(zero, name="minimal+zero_number")
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "zero_number", library=lib, fit_params=False)
    assert kantk.symbolic_formula(model)[0].is_number


def test_symbolic_formula_warns_when_a_records_sympy_form_is_not_its_torch_form():
    """torch.sinc is sin(pi*x)/(pi*x), sympy.sinc sin(x)/x: such a record's formula gave 0.84 where
    the model gave 0, with no warning (rounding was checked against the unrounded formula only)."""
    import sympy

    x = torch.linspace(-1, 1, 50, dtype=torch.float64).unsqueeze(1)
    for sympy_fn, warned in ((sympy.sinc, True), (lambda z: sympy.sinc(sympy.pi * z), False)):
        record = SymbolicFunction("sinc", torch.sinc, sympy_fn, 3)
        lib = get_library("minimal").with_functions(record, name="minimal+sinc")
        model = kantk.KAN([1, 1], seed=0).double()
        kantk.fix_symbolic(model, 0, 0, 0, "sinc", library=lib, fit_params=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kantk.symbolic_formula(model, x=x)
        found = [w for w in caught if "the formula differs from the model" in str(w.message)]
        assert bool(found) == warned, [str(w.message) for w in caught]
        if warned:  # it named no record ("a symbolic function's sympy form"): now the one that is wrong
            assert "the sympy form of function 'sinc' of library 'minimal+sinc' (at z = " in str(
                found[0].message
            )
