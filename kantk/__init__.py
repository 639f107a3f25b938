"""kantk: a plugin-based toolkit for Kolmogorov-Arnold Networks in PyTorch.

Every public name is imported on first use (PEP 562 module ``__getattr__``): ``import kantk``
itself loads no torch, sympy, networkx, matplotlib nor Lightning, so the ``kantk`` command prints
its help at once and ``import kantk`` costs what the names you use cost. ``from kantk import KAN``,
``kantk.KAN``, ``__all__`` and ``dir(kantk)`` work as with eager imports.
"""

# ruff: noqa: F401  (the TYPE_CHECKING imports at the end are for type checkers; __all__ is built from _LAZY)

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import types as _types  # not 'types': kantk.types, the submodule, would replace it
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ---------------------------------------------------------------------------------------------
# THE PUBLIC NAMES: name -> module that defines it. To export a new name, add ONE line here
# (keep it sorted by module); __all__ and dir(kantk) are built from this table, and the name is
# imported on first use. A name exported under another name than in its module: see _RENAMED.
# ---------------------------------------------------------------------------------------------
_LAZY: dict[str, str] = {
    "Attribution": "kantk.attribution",
    "attribution": "kantk.attribution",
    "MLP": "kantk.baselines",
    "count_parameters": "kantk.baselines",
    "native_status": "kantk.bases.bspline.native_build",
    "check_dataset": "kantk.data",
    "create_dataset": "kantk.data",
    "load_csv": "kantk.data",
    "split_dataset": "kantk.data",
    "render_graph": "kantk.export",
    "to_graphviz": "kantk.export",
    "to_networkx": "kantk.export",
    "parse_formula": "kantk.formula_parser",
    "refine": "kantk.grids",
    "KantkFileError": "kantk.io",
    "load": "kantk.io",
    "save": "kantk.io",
    "formula_to_kan": "kantk.kanpiler",
    "KANLayer": "kantk.layer",
    "KAN": "kantk.model",
    "NodeOperation": "kantk.nodes",
    "Discovery": "kantk.pipeline",
    "discover": "kantk.pipeline",
    "plot_activations": "kantk.plotting",  # matplotlib
    "PluginError": "kantk.plugins",
    "hookimpl": "kantk.plugins",
    "prune": "kantk.pruning",
    "Registry": "kantk.registry",
    "UnknownComponentError": "kantk.registry",
    "default_registry": "kantk.registry",
    "list_bases": "kantk.registry",
    "list_node_operations": "kantk.registry",
    "list_pruners": "kantk.registry",
    "list_regularisers": "kantk.registry",
    "list_symbolic_libraries": "kantk.registry",
    "reset_default_registry": "kantk.registry",
    "SymbolicFunction": "kantk.symbolic",
    "SymbolicLibrary": "kantk.symbolic",
    "auto_symbolic": "kantk.symbolic.api",
    "fix_symbolic": "kantk.symbolic.api",
    "suggest_symbolic": "kantk.symbolic.api",
    "unfix_symbolic": "kantk.symbolic.api",
    "formula_to_callable": "kantk.symbolic.formula",
    "formula_to_latex": "kantk.symbolic.formula",
    "symbolic_formula": "kantk.symbolic.formula",
    "improve_symbolic": "kantk.symbolic.refit",
    "refit_symbolic": "kantk.symbolic.refit",
    "History": "kantk.training",  # Lightning
    "fit": "kantk.training",  # Lightning
    "BasisSpec": "kantk.types",
    "NodeOperationSpec": "kantk.types",
    "PrunerSpec": "kantk.types",
    "RegulariserSpec": "kantk.types",
    "SymbolicLibrarySpec": "kantk.types",
}
#: Exported names that have another name in their module: exported name -> name in the module.
_RENAMED: dict[str, str] = {"native_status": "status"}
#: Subpackages reachable as attributes without an import statement (``kantk.lightning.KANModule``).
_SUBMODULES = ("lightning", "feynman", "hypothesis", "surgery")

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if not name.startswith("_") and name.isidentifier():
        # any other module, as the docs name them (kantk.export.export_graph): it worked only once
        # something had imported it
        import importlib.util

        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'kantk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


class _Package(_types.ModuleType):
    """The ``kantk`` module object: importing a submodule that shares its name with a public name
    (``kantk.attribution``, the module, and ``kantk.attribution``, the function) must not replace
    the public name, as it would by Python's usual ``setattr(package, submodule_name, module)``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name in _LAZY
            and isinstance(value, _types.ModuleType)
            and value.__name__ == f"{__name__}.{name}"
            and _LAZY[name] == value.__name__
        ):
            value = getattr(value, _RENAMED.get(name, name))
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from kantk.attribution import Attribution, attribution
    from kantk.baselines import MLP, count_parameters
    from kantk.bases.bspline.native_build import status as native_status
    from kantk.data import check_dataset, create_dataset, load_csv, split_dataset
    from kantk.export import render_graph, to_graphviz, to_networkx
    from kantk.formula_parser import parse_formula
    from kantk.grids import refine
    from kantk.io import KantkFileError, load, save
    from kantk.kanpiler import formula_to_kan
    from kantk.layer import KANLayer
    from kantk.model import KAN
    from kantk.nodes import NodeOperation
    from kantk.pipeline import Discovery, discover
    from kantk.plotting import plot_activations
    from kantk.plugins import PluginError, hookimpl
    from kantk.pruning import prune
    from kantk.registry import (
        Registry,
        UnknownComponentError,
        default_registry,
        list_bases,
        list_node_operations,
        list_pruners,
        list_regularisers,
        list_symbolic_libraries,
        reset_default_registry,
    )
    from kantk.symbolic import SymbolicFunction, SymbolicLibrary
    from kantk.symbolic.api import auto_symbolic, fix_symbolic, suggest_symbolic, unfix_symbolic
    from kantk.symbolic.formula import formula_to_callable, formula_to_latex, symbolic_formula
    from kantk.symbolic.refit import improve_symbolic, refit_symbolic
    from kantk.training import History, fit
    from kantk.types import BasisSpec, NodeOperationSpec, PrunerSpec, RegulariserSpec, SymbolicLibrarySpec
