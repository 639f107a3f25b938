"""kantk: a plugin-based toolkit for Kolmogorov-Arnold Networks in PyTorch."""

from __future__ import annotations

from kantk.attribution import Attribution, attribution
from kantk.bases.bspline.native_build import status as native_status
from kantk.data import check_dataset, create_dataset, load_csv, split_dataset
from kantk.formula_parser import parse_formula
from kantk.grids import refine
from kantk.io import KantkFileError, load, save
from kantk.layer import KANLayer
from kantk.model import KAN
from kantk.plugins import PluginError, hookimpl
from kantk.pruning import prune
from kantk.registry import (
    Registry,
    UnknownComponentError,
    default_registry,
    list_bases,
    list_pruners,
    list_regularisers,
    list_symbolic_libraries,
    reset_default_registry,
)
from kantk.symbolic import SymbolicFunction, SymbolicLibrary
from kantk.symbolic.api import auto_symbolic, fix_symbolic, suggest_symbolic, unfix_symbolic
from kantk.symbolic.formula import formula_to_callable, formula_to_latex, symbolic_formula
from kantk.types import BasisSpec, PrunerSpec, RegulariserSpec, SymbolicLibrarySpec

# Training imports Lightning (seconds); load it on first use of kantk.fit / kantk.lightning.
_LAZY = {"fit": "kantk.training", "History": "kantk.training"}
_LAZY["plot_activations"] = "kantk.plotting"  # matplotlib loads on first use
_LAZY.update(to_networkx="kantk.export", to_graphviz="kantk.export", render_graph="kantk.export")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "lightning":
        import importlib

        return importlib.import_module("kantk.lightning")
    raise AttributeError(f"module 'kantk' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "KAN",
    "Attribution",
    "BasisSpec",
    "History",
    "KANLayer",
    "KantkFileError",
    "PluginError",
    "PrunerSpec",
    "Registry",
    "RegulariserSpec",
    "SymbolicFunction",
    "SymbolicLibrary",
    "SymbolicLibrarySpec",
    "UnknownComponentError",
    "attribution",
    "auto_symbolic",
    "check_dataset",
    "create_dataset",
    "default_registry",
    "fit",
    "fix_symbolic",
    "formula_to_callable",
    "formula_to_latex",
    "hookimpl",
    "list_bases",
    "list_pruners",
    "list_regularisers",
    "list_symbolic_libraries",
    "load",
    "load_csv",
    "native_status",
    "parse_formula",
    "refine",
    "render_graph",
    "to_graphviz",
    "to_networkx",
    "plot_activations",
    "prune",
    "reset_default_registry",
    "save",
    "split_dataset",
    "suggest_symbolic",
    "symbolic_formula",
    "unfix_symbolic",
]
