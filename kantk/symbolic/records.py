"""The symbolic function record: one candidate for an edge, in torch and in sympy.

A symbolic edge computes ``c * f(a * x + b) + d``. The record holds ``f`` three times: the exact
torch function (used by the layer's forward, so the model equals its sympy formula), a
*singular-safe* torch function (used only by the affine search, see :mod:`kantk.symbolic.fitting`)
and the sympy function (used by :func:`kantk.symbolic_formula`).

Records are plain frozen dataclasses; the built-in functions are module-level callables, so a
model with symbolic edges can be deep-copied and pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

TorchFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SymbolicFunction:
    """One candidate function ``f`` of a symbolic library.

    Attributes:
        name: Name unique within its library (``"sin"``, ``"x^2"``, ``"1/x"``).
        torch_fn: Exact element-wise torch function, (...) -> (...). The layer's forward uses
            it, so the model in symbolic mode equals its formula. Outside the real domain it
            returns NaN (``sqrt`` of a negative number) or +-Inf (``1/x`` at 0), as torch does.
        sympy_fn: Callable mapping a sympy expression to a sympy expression (``sympy.sin``).
        complexity: Cost used to rank candidates (pykan's values: ``x`` 1, ``sin`` 2, ``tan`` 3,
            ``arcsin`` 4, the constant ``0`` 0). Only a complexity-0 function may be chosen for a
            negligible edge, and only for one (see :func:`kantk.suggest_symbolic`).
        safe_torch_fn: Singular-safe variant for the affine search, or ``None`` when the exact
            function is safe everywhere. It must equal ``torch_fn`` wherever that is finite and
            moderate, stay finite near poles (clamped), and return NaN outside the real domain:
            a search candidate ``(a, b)`` that sends any sample there is rejected.
        description: One line for listings.
    """

    name: str
    torch_fn: TorchFn
    sympy_fn: Callable[[Any], Any]
    complexity: float
    safe_torch_fn: TorchFn | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a symbolic function needs a non-empty name, got {self.name!r}")
        for attr in ("torch_fn", "sympy_fn"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"symbolic function {self.name!r}: {attr} must be callable")
        if self.safe_torch_fn is not None and not callable(self.safe_torch_fn):
            raise TypeError(f"symbolic function {self.name!r}: safe_torch_fn must be callable or None")
        c = self.complexity
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not c >= 0:
            raise ValueError(f"symbolic function {self.name!r}: complexity must be a number >= 0, got {c!r}")

    def safe(self, z: torch.Tensor) -> torch.Tensor:
        """The singular-safe values (for fitting), ``safe_torch_fn`` or else ``torch_fn``."""
        return (self.safe_torch_fn or self.torch_fn)(z)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """The exact torch values ``f(z)``."""
        return self.torch_fn(z)
