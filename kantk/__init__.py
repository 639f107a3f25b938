"""kantk: a plugin-based toolkit for Kolmogorov-Arnold Networks in PyTorch."""
from __future__ import annotations

from kantk.plugins import PluginError, hookimpl
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
from kantk.types import BasisSpec, PrunerSpec, RegulariserSpec, SymbolicLibrarySpec
from kantk.layer import KANLayer
from kantk.model import KAN
from kantk.io import KantkFileError, load, save

__version__ = "0.1.0"

__all__ = [
    "KAN",
    "BasisSpec",
    "KANLayer",
    "KantkFileError",
    "PluginError",
    "PrunerSpec",
    "Registry",
    "RegulariserSpec",
    "SymbolicLibrarySpec",
    "UnknownComponentError",
    "default_registry",
    "hookimpl",
    "list_bases",
    "list_pruners",
    "list_regularisers",
    "list_symbolic_libraries",
    "load",
    "reset_default_registry",
    "save",
]
