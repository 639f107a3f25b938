"""Symbolic regression on KAN edges: function records, libraries (plugins), fitting, formulas.

- :mod:`kantk.symbolic.records`: :class:`SymbolicFunction`, one candidate ``f``.
- :mod:`kantk.symbolic.library`: :class:`SymbolicLibrary` and how ``library=`` arguments resolve.
- :mod:`kantk.symbolic.libraries`: the built-in ``default`` and ``minimal`` libraries (a plugin).
- :mod:`kantk.symbolic.edges`: the symbolic-edge state of a layer (mixed into ``KANLayer``).
- :mod:`kantk.symbolic.fitting`: the vectorised affine fit ``y ~ c * f(a * x + b) + d``.
- :mod:`kantk.symbolic.api`: ``suggest_symbolic``, ``fix_symbolic``, ``unfix_symbolic``,
  ``auto_symbolic`` (also at the top level, ``kantk.auto_symbolic``).
- :mod:`kantk.symbolic.formula`: ``symbolic_formula`` and its callable / LaTeX helpers.
- :mod:`kantk.symbolic.refit`: ``refit_symbolic`` (the symbolic edges' constants, never leaving
  their domains) and ``improve_symbolic`` (tries runner-up functions).

This package's ``__init__`` imports only the records and libraries (the layer needs them); the
operations are loaded on first access. sympy is imported only when a formula is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from kantk.symbolic.library import (
    SymbolicLibrary,
    compose_libraries,
    get_library,
    resolve_function,
    resolve_library,
)
from kantk.symbolic.records import Domain, SymbolicFunction

_LAZY = {
    "AffineFit": "kantk.symbolic.fitting",
    "fit_affine": "kantk.symbolic.fitting",
    "symbolic_scores": "kantk.symbolic.fitting",
    "SymbolicCandidate": "kantk.symbolic.api",
    "SymbolicEdgeFit": "kantk.symbolic.api",
    "auto_symbolic": "kantk.symbolic.api",
    "fix_symbolic": "kantk.symbolic.api",
    "suggest_symbolic": "kantk.symbolic.api",
    "unfix_symbolic": "kantk.symbolic.api",
    "formula_to_callable": "kantk.symbolic.formula",
    "formula_to_latex": "kantk.symbolic.formula",
    "round_constants": "kantk.symbolic.formula",
    "symbolic_formula": "kantk.symbolic.formula",
    "ImproveResult": "kantk.symbolic.refit",
    "RefitResult": "kantk.symbolic.refit",
    "improve_symbolic": "kantk.symbolic.refit",
    "refit_symbolic": "kantk.symbolic.refit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kantk.symbolic' has no attribute {name!r}")


__all__ = [
    "AffineFit",
    "Domain",
    "ImproveResult",
    "RefitResult",
    "SymbolicCandidate",
    "SymbolicEdgeFit",
    "SymbolicFunction",
    "SymbolicLibrary",
    "auto_symbolic",
    "compose_libraries",
    "fit_affine",
    "fix_symbolic",
    "formula_to_callable",
    "formula_to_latex",
    "get_library",
    "improve_symbolic",
    "refit_symbolic",
    "resolve_function",
    "resolve_library",
    "round_constants",
    "suggest_symbolic",
    "symbolic_formula",
    "symbolic_scores",
    "unfix_symbolic",
]
