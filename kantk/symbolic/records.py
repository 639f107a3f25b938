"""The symbolic function record: one candidate for an edge, in torch and in sympy.

A symbolic edge computes ``c * f(a * x + b) + d``. The record holds ``f`` three times: the exact
torch function (used by the layer's forward, so the model equals its sympy formula), a
*singular-safe* torch function (used only by the affine search, see :mod:`kantk.symbolic.fitting`)
and the sympy function (used by :func:`kantk.symbolic_formula`).

Records are plain frozen dataclasses; the built-in functions are module-level callables, so a
model with symbolic edges can be deep-copied and pickled. A record may declare its real
:class:`Domain` (``sqrt``: ``[0, inf)``, ``1/x``: no pole at 0); the affine fit then keeps the
argument ``a * x + b`` inside it on the edge's input range plus a margin (see
:mod:`kantk.symbolic.fitting`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kantk._validation import check_number
from kantk.plugins import PluginOutputError

#: Longest name of a symbolic function (names label plots, diagrams and formulas).
MAX_NAME_LENGTH = 64

TorchFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Domain:
    """Where a function is real and finite: an interval, minus a pole (or a periodic row of them).

    Attributes:
        low, high: Ends of the interval (``-inf``/``inf`` for none).
        low_closed, high_closed: Whether the end belongs to the domain (``sqrt``: 0 does; ``log``:
            0 does not).
        pole: A point where the function is infinite (``1/x``: 0), or ``None``.
        pole_period: The poles repeat with this period (``tan``: pole ``pi/2``, period ``pi``).

    Examples: ``Domain(0, low_closed=True)`` (``sqrt``), ``Domain(0)`` (``log``),
    ``Domain(pole=0)`` (``1/x``), ``Domain(-1, 1, True, True)`` (``arcsin``).
    """

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False
    pole: float | None = None
    pole_period: float | None = None

    def __post_init__(self) -> None:
        if not float(self.low) < float(self.high):
            raise ValueError(f"a domain needs low < high, got {self.low!r} and {self.high!r}")
        if self.pole_period is not None and (self.pole is None or not float(self.pole_period) > 0):
            raise ValueError("a domain's pole_period needs a pole and a period > 0")

    def admits(
        self,
        lo: torch.Tensor,
        hi: torch.Tensor,
        lo_open: torch.Tensor | bool = False,
        hi_open: torch.Tensor | bool = False,
    ) -> torch.Tensor:
        """Whether the argument interval from ``lo`` to ``hi`` lies in the domain, element-wise.

        Args:
            lo, hi: Ends of the interval (same shape, ``lo <= hi``).
            lo_open, hi_open: Whether an end is excluded (bool or bool tensor of that shape):
                ``(0, 2]`` lies in ``log``'s domain, ``[0, 2]`` does not.
        """
        lo_open = torch.as_tensor(lo_open, device=lo.device)
        hi_open = torch.as_tensor(hi_open, device=lo.device)
        ok = torch.ones_like(lo, dtype=torch.bool)
        if math.isfinite(self.low):
            ok = ok & ((lo > self.low) | ((lo == self.low) & (lo_open | self.low_closed)))
        if math.isfinite(self.high):
            ok = ok & ((hi < self.high) | ((hi == self.high) & (hi_open | self.high_closed)))
        if self.pole is not None:
            if self.pole_period is None:
                p = self.pole
                ok = ok & ((hi < p) | (lo > p) | ((lo == p) & lo_open) | ((hi == p) & hi_open))
            else:  # no pole p + k T in [lo, hi]: both ends in the same period
                k_lo = torch.floor((lo - self.pole) / self.pole_period)
                k_hi = torch.floor((hi - self.pole) / self.pole_period)
                on_pole = (lo - self.pole) == k_lo * self.pole_period
                ok = ok & (k_lo == k_hi) & ~on_pole
        return ok


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
        domain: Where the function is real and finite, or ``None`` (then only the samples and
            the ends of the edge's extended input range are checked). With a domain, a fit is
            accepted only when ``a * x + b`` stays in it on the whole extended range, so a pole
            between two samples is caught too.
    """

    name: str
    torch_fn: TorchFn
    sympy_fn: Callable[[Any], Any]
    complexity: float
    safe_torch_fn: TorchFn | None = None
    description: str = field(default="", compare=False)
    domain: Domain | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a symbolic function needs a non-empty name, got {self.name!r}")
        if (
            len(self.name) > MAX_NAME_LENGTH
            or not self.name.isprintable()
            or any(c.isspace() for c in self.name)
        ):
            raise ValueError(
                f"symbolic function name {self.name[:80]!r} is not accepted: names are printable, "
                f"without spaces or line breaks, at most {MAX_NAME_LENGTH} characters (e.g. 'sin', "
                "'x^2', '1/x'); they label plots and formulas"
            )
        for attr in ("torch_fn", "sympy_fn"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"symbolic function {self.name!r}: {attr} must be callable")
        if self.safe_torch_fn is not None and not callable(self.safe_torch_fn):
            raise TypeError(f"symbolic function {self.name!r}: safe_torch_fn must be callable or None")
        check_number(f"symbolic function {self.name!r}: complexity", self.complexity, 0)
        if self.domain is not None and not isinstance(self.domain, Domain):
            raise TypeError(
                f"symbolic function {self.name!r}: domain must be a kantk.symbolic.records.Domain or None"
            )

    def safe(self, z: torch.Tensor) -> torch.Tensor:
        """The singular-safe values (for fitting), ``safe_torch_fn`` or else ``torch_fn``.

        Raises:
            kantk.plugins.PluginOutputError: A ``TypeError``: the function did not return a
                tensor of ``z``'s shape (named).
        """
        return self._element_wise(z, (self.safe_torch_fn or self.torch_fn)(z))

    def _element_wise(self, z: torch.Tensor, out: Any) -> torch.Tensor:
        """``out``, what a torch function of this record gave for ``z``, in ``z``'s float dtype,
        if it is a tensor of ``z``'s shape; else a one-line error naming the function. (A function
        computing in float32 inside a float64 fit failed there with "Float did not match Double".)"""
        if not isinstance(out, torch.Tensor) or out.shape != z.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginOutputError(
                f"symbolic function {self.name!r} returned {got} for a {tuple(z.shape)} tensor; its "
                "torch functions are element-wise: a tensor of the input's shape"
            )
        if not out.dtype.is_floating_point and z.dtype.is_floating_point:
            raise PluginOutputError(
                f"symbolic function {self.name!r} returned a tensor of dtype {out.dtype} for a {z.dtype} "
                "tensor; its torch functions return real floating-point values"
            )
        if out.dtype != z.dtype and out.dtype.is_floating_point and z.dtype.is_floating_point:
            out = out.to(z.dtype)
        return out

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """The exact torch values ``f(z)``, in ``z``'s float dtype (a function computed in float64
        keeps a float32 model float32).

        Raises:
            kantk.plugins.PluginOutputError: A ``TypeError``: the function did not return a
                tensor of ``z``'s shape (named).
        """
        return self._element_wise(z, self.torch_fn(z))
