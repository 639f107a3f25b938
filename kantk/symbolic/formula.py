"""Closed-form formulas of fully symbolic KANs (sympy), and helpers to evaluate and print them.

:func:`symbolic_formula` composes every layer's symbolic edges ``c * f(a * x + b) + d`` into one
sympy expression per output; the node operations of a layer (KAN 2.0's product nodes, a plugin's)
combine its sub-node expressions (``s_0 * s_1``). A power function (``x^n``, ``1/x^n``, roots) is written
``C * (x + B)^p`` (the slope moved into ``C``), so its constants can combine with the next layer's.
With ``digits`` set (an int, or ``"auto"``: see below) the constants are then cleaned, in two ways:

* compact: :func:`round_constants` on the formula as built;
* expanded: floats close to an exact number (see below) made exact first, then
  ``sympy.expand`` (products, powers of sums, ``exp`` of sums) so that constants which only make
  sense together are combined (``x1*x2`` out of ``((x1 + x2)^2 - (x1 - x2)^2) / 4`` with
  imprecise coefficients), then :func:`round_constants`.

:func:`round_constants` turns a float within ``10**-digits`` (relative above 1) of an integer, or
within ``10**-digits`` of a fraction ``p/q`` with ``q <= 12`` or a multiple ``k*pi/q`` (``q`` in 1,
2, 3, 4, 6), into that exact number (the one of smallest denominator, ``k*pi`` counting as
``q = 1``, the nearest of those on a tie: ``3.1423`` is ``pi`` and not ``22/7`` at 2 digits), and
rounds any other float to ``digits`` decimal places (so a vanishing term disappears).
With ``simplify=True`` each form goes through ``sympy.powsimp`` and, when it has at most
``SIMPLIFY_MAX_OPS`` operations, ``sympy.simplify`` (never accepting a longer result; pykan never
simplifies; a call is given up after :data:`SIMPLIFY_SECONDS`, see :func:`_time_limited`), and
is rounded again. Of these forms the one with the fewest operations among the
faithful ones is returned (the expanded one when none is): faithful means within
:data:`FORMULA_RTOL` (largest deviation over largest |value|; and within
:data:`FORMULA_SPREAD_RTOL` of the formula's own variation) of the unrounded formula on the
check points (``x=``, else points in the first layer's grid range). ``digits="auto"`` (the
default) tries :data:`AUTO_DIGITS` in turn and keeps the first faithful result (full precision
when none is); an explicit int is used as given, with a warning when the result is not faithful.

With ``digits=None`` the constants keep full float precision and the formula equals the model
in symbolic mode to rounding error. sympy is imported on first use, not with ``kantk``.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import torch

from kantk._pykan import SYMBOLIC_FORMULA_NAMES, pykan_names
from kantk._validation import check_distinct, is_int
from kantk._warnings import warn_at_user
from kantk.formula_parser import (
    LAMBDIFY_ERRORS,
    FormulaError,
    bound_parameters,
    lambdify_namespace,
    parse_formula,
)
from kantk.model import KAN
from kantk.symbolic.bounds import MAX_EXPANSION_TERMS, check_formula_size, expansion_work

if TYPE_CHECKING:
    import sympy

#: Largest denominator tried when snapping constants to fractions.
MAX_DENOMINATOR = 12
#: Denominators q of the multiples k*pi/q that constants snap to.
PI_DENOMINATORS = (1, 2, 3, 4, 6)
#: Largest formula (operations) that goes through ``sympy.simplify``, which can take minutes on
#: big ones; larger formulas get only ``sympy.powsimp``.
SIMPLIFY_MAX_OPS = 30
#: Longest ``sympy.simplify`` of one form (a usual one takes well under a second): its
#: ``trigsimp`` ran for minutes on 21 operations (``cos`` of a product of two sums of squares, a
#: [2, [0, 1], 1] model). A form whose simplify runs past it stays as it was, and the output's
#: other forms are not simplified either. Off the main thread (no timer signal) a form with a
#: trigonometric function is not simplified.
SIMPLIFY_SECONDS = 5.0
#: Time for rounding, simplifying and checking all of a model's formulas (sympy's work on a big
#: formula has no useful bound in its size: a [5, 5, 5, 1] model of 1,024 operations took 200 s).
#: Formulas not done by then are returned as built, with full-precision constants, and a warning.
FORMULA_SECONDS = 30.0
#: How far a rounded formula may stray from the unrounded one (which equals the model in
#: symbolic mode): largest deviation on the check points over the largest |value| there.
FORMULA_RTOL = 1e-3
#: And over the unrounded formula's own variation on the check points (largest minus smallest),
#: when that is above round-off: beside a large constant, ``1000 + 0.37*exp(...)`` was rounded to
#: ``1000`` (0.37 is within 1e-3 of 1000), dropping every input.
FORMULA_SPREAD_RTOL = 0.1
#: Largest deviation, relative to the model's largest |output| on the check points, of the
#: full-precision formula from the model before :func:`symbolic_formula` warns that they disagree
#: (a library record whose sympy form is not its torch form); far above float32 round-off.
MODEL_RTOL = 1e-3
#: Decimal places tried in turn by ``digits="auto"``; when none keeps the formula within
#: ``FORMULA_RTOL``, the constants keep full precision (``digits=None``).
AUTO_DIGITS = (4, 5, 6, 7, 8, 10, 12)
#: Hints for the expansion before rounding (products, powers of sums, exp of sums; no log, trig).
EXPAND_HINTS = {
    "deep": True,
    "mul": True,
    "multinomial": True,
    "power_exp": True,
    "power_base": False,
    "log": False,
}


@pykan_names(SYMBOLIC_FORMULA_NAMES)
def symbolic_formula(
    model: KAN,
    var_names: Sequence[Any] | None = None,
    simplify: bool = True,
    digits: int | str | None = "auto",
    *,
    x: torch.Tensor | None = None,
    numeric: str = "name",
) -> list[sympy.Expr]:
    """One sympy expression per output; numeric edges appear as named functions.

    Args:
        model: A KAN after :func:`kantk.auto_symbolic` (or :func:`kantk.fix_symbolic` on every
            live edge). Pruned (masked) edges contribute nothing.
        var_names: Names (str) or sympy symbols of the inputs; default ``model.input_names()``
            (the data's header names the model records when each can stand in a formula; else
            ``x1 .. xn``, or the kept data columns' numbers after pruning inputs).
        simplify: Simplify each output (``sympy.simplify`` up to ``SIMPLIFY_MAX_OPS`` operations).
        digits: ``"auto"`` (default): the fewest decimal places of :data:`AUTO_DIGITS` (4, 5, ...)
            whose formula stays within :data:`FORMULA_RTOL` (1e-3, relative to the largest
            |value|) of the unrounded formula on the check points, else full precision. An int:
            that many decimal places after snapping near-nice constants (see the module notes),
            with a ``UserWarning`` when the formula then strays further than ``FORMULA_RTOL``.
            ``None`` keeps every constant exact, and then the formula equals the model.
        x: (batch, widths[0]) inputs on which the rounded formulas are checked against the
            unrounded one, and the unrounded one against the model (a ``UserWarning`` past
            :data:`MODEL_RTOL`: a library record whose sympy form is not its torch form): pass
            the inputs the model was fitted on. Default: 64 points uniform
            in the first layer's grid range (``[-1, 1]^n`` until a grid update; the data's range
            after ``model.update_grid(x)``; its basis's ``range_ends``,
            :class:`~kantk.bases.SupportsInputRange`, else ``[-1, 1]^n``), drawn with a fixed seed.
        numeric: What a live edge that is still numeric (e.g. left so by ``auto_symbolic``'s
            ``r2_threshold``), or the live numeric branch of a symbolic edge, becomes.
            ``"name"`` (default): the function ``f_<layer>_<i>_<j>`` of its input (edge
            ``i -> j`` of layer ``layer``, e.g. ``f_0_1_0(x2)``), a sympy function that
            evaluates a frozen copy of the edge's numeric function, so
            :func:`formula_to_callable` and the rounding check still work; a ``UserWarning``
            lists these edges, and :func:`numeric_edges` returns them.
            ``"raise"``: a ``ValueError`` listing them.

    Returns:
        ``widths[-1]`` sympy expressions.

    Raises:
        ValueError: ``numeric="raise"`` and some live edge is still numeric (the message lists
            them), or bad ``var_names``/``digits``/``numeric``.
    """
    import sympy

    if not isinstance(model, KAN):
        raise TypeError(f"kantk.symbolic_formula expects a kantk.KAN, got {type(model).__name__}")
    if digits is not None and digits != "auto" and not (is_int(digits) and digits >= 0):
        raise ValueError(f"digits must be 'auto', an int >= 0 or None, got {digits!r}")
    if numeric not in ("name", "raise"):
        raise ValueError(f"numeric must be 'name' or 'raise', got {numeric!r}")
    symbols = _symbols(model.input_names() if var_names is None else var_names, model.widths[0])
    nodes: list[Any] = list(symbols)
    still_numeric = numeric_edges(model)
    if still_numeric and numeric == "raise":
        listed = [f"layer {l}: {i} -> {j}" for l, i, j in still_numeric]
        shown = ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
        raise ValueError(
            "symbolic_formula(numeric='raise') needs every live edge to be symbolic; still numeric "
            f"(input -> output): {shown}. Run kantk.auto_symbolic(model, x) (lower r2_threshold or keep "
            "training if it leaves edges numeric), kantk.fix_symbolic(...) on them, or prune them"
        )
    try:
        sizes = check_formula_size(model, still_numeric)
    except ValueError as exc:
        raise ValueError(f"symbolic_formula: {exc}") from None
    deadline = time.monotonic() + FORMULA_SECONDS
    built, nodes = _within(functools.partial(_compose, model, nodes, still_numeric), FORMULA_SECONDS)
    if not built:  # sympy's evaluation of nested functions can grow with depth, not size
        raise ValueError(
            f"symbolic_formula: building the formulas ran past FORMULA_SECONDS = {FORMULA_SECONDS:g} s "
            f"({max(sizes):,} operations, {len(model.layers)} layers deep); prune the model (kantk.prune) "
            "to fewer, narrower layers"
        )
    if still_numeric:
        names = [f"f_{l}_{i}_{j}" for l, i, j in still_numeric]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        warn_at_user(
            f"symbolic_formula: {len(names)} live edge(s) are still numeric and appear as functions "
            f"f_<layer>_<input>_<output>: {shown}; fix them (kantk.fix_symbolic, or auto_symbolic with a "
            "lower r2_threshold) for a closed form"
        )
    points = _check_points(x, model)
    check = functools.partial(_model_deviations, model, nodes, symbols, points)
    done, deviations = _within(check, deadline - time.monotonic())
    astray = [(q, d) for q, d in enumerate(deviations if done else []) if d > MODEL_RTOL]
    if astray:
        shown = ", ".join(f"output {q} by {d:.2g}" for q, d in astray)
        culprits = _disagreeing_functions(model)
        which = (
            f"the sympy form of {'; '.join(culprits)}"
            if culprits
            else "a symbolic function's (or a node operation's) sympy form"
        )
        warn_at_user(
            f"symbolic_formula: the formula differs from the model ({shown}, relative to its largest "
            f"value on the check points): {which} does not compute what its torch form does (e.g. "
            "torch.sinc is sin(pi*x)/(pi*x), sympy.sinc sin(x)/x); kantk's contract tests check a "
            "library's records"
        )
    formulas = []
    for q, expr in enumerate(nodes):
        clean = functools.partial(_rounded, expr, simplify, digits, symbols, points, q)
        done, formula = _within(clean, deadline - time.monotonic())
        if not done:
            warn_at_user(
                f"symbolic_formula: cleaning output {q}'s formula ({sizes[q]:,} operations) ran past "
                f"FORMULA_SECONDS = {FORMULA_SECONDS:g} s; it is returned as built, with full-precision "
                "constants (it equals the model); prune the model for a shorter formula"
            )
            formula = sympy.sympify(expr)
        formulas.append(formula)
    return formulas


def _compose(model: KAN, inputs: list[Any], still_numeric: list[tuple[int, int, int]]) -> list[Any]:
    """Every output's expression: each layer's edge terms on its inputs' expressions, summed into
    sub-nodes and combined by the node operations (``inputs``: the input symbols)."""
    import sympy

    nodes = list(inputs)
    for l, layer in enumerate(model.layers):
        outputs: list[Any] = [sympy.Integer(0)] * layer.out_features  # one per sub-node
        layer_edges = [(i, j) for m, i, j in still_numeric if m == l]
        if layer_edges:
            frozen = copy.deepcopy(layer).to("cpu", torch.float64)
            mask = frozen.mask
            for i, j in layer_edges:
                term = _numeric_edge_function(frozen, l, i, j)(nodes[i])
                weight = float(mask[j, i])
                outputs[j] = outputs[j] + (term if weight == 1 else sympy.Float(weight) * term)
        if layer.has_symbolic:
            affine = layer.symbolic_affine.detach().to("cpu", torch.float64)
            gate = layer.symbolic_mask.detach().to("cpu", torch.float64)
            for q, p in layer.symbolic_edges():
                if gate[q, p] == 0:
                    continue
                term = _edge_term(layer.symbolic_function(q, p), affine[q, p].tolist(), nodes[p])
                outputs[q] = outputs[q] + (term if gate[q, p] == 1 else sympy.Float(float(gate[q, p])) * term)
        nodes = _node_values(layer, outputs)
    return nodes


def numeric_edges(model: KAN) -> list[tuple[int, int, int]]:
    """``(layer, i, j)`` of every edge whose numeric branch is live (input ``i``, output ``j``).

    That is every unmasked edge (``mask != 0``), including a symbolic edge whose numeric branch
    was switched back on (both branches then add up, in the model and in the formula). ``j`` is a
    sub-node index in a layer that feeds product nodes (``layer.out_features`` of them).
    """
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kantk.KAN, got {type(model).__name__}")
    found: list[tuple[int, int, int]] = []
    for l, layer in enumerate(model.layers):
        live_numeric = layer.mask != 0
        found.extend((l, int(p), int(q)) for q, p in live_numeric.nonzero().tolist())
    return sorted(found)


def _node_values(layer: Any, subnodes: list[Any]) -> list[Any]:
    """The layer's node values from its sub-node expressions: each node operation's sympy form
    (a product ``s_0 * s_1`` for a multiplication node); the sub-nodes themselves without any."""
    layout = layer.nodes
    if layout is None:
        return subnodes
    return [
        layout.operation(op).sympy([subnodes[s] for s in layout.subnodes(j)])
        for j, op in enumerate(layout.ops)
    ]


def _numeric_edge_function(frozen: Any, l: int, i: int, j: int) -> Any:
    """The sympy function ``f_<l>_<i>_<j>`` evaluating edge ``i -> j`` of the (copied) layer."""
    import numpy as np
    from sympy.utilities.lambdify import implemented_function

    def evaluate(values: Any) -> Any:
        v = np.asarray(values, dtype=np.float64)
        h = torch.zeros(v.size, frozen.in_features, dtype=torch.float64)
        h[:, i] = torch.as_tensor(v.reshape(-1))
        with torch.no_grad():
            out = frozen.numeric_activations(h, masked=False)[:, j, i]
        return out.numpy().reshape(v.shape) if v.shape else float(out[0])

    return implemented_function(f"f_{l}_{i}_{j}", evaluate)


def round_constants(expr: sympy.Expr, digits: int = 4, snap_only: bool = False) -> sympy.Expr:
    """Replace every float in ``expr`` by a nearby exact number or round it (see the module notes).

    Args:
        expr: A sympy expression.
        digits: Decimal places; also sets the snapping tolerance ``10**-digits`` (relative above 1
            for integers, absolute for fractions and multiples of pi).
        snap_only: Only replace the floats close to an exact number; keep the others as they are.
    """
    import sympy

    replacements = {}
    for f in expr.atoms(sympy.Float):
        if not math.isfinite(float(f)):  # past a float's range (1e500 = c * a**5): kept as it is
            continue
        new = _snap(float(f), digits)
        if not (snap_only and isinstance(new, sympy.Float) or snap_only and new == 0 and float(f) != 0):
            replacements[f] = new
    return expr.xreplace(replacements) if replacements else expr


def formula_to_callable(
    exprs: sympy.Expr | Sequence[sympy.Expr],
    var_names: Sequence[Any] | None = None,
    backend: str = "numpy",
) -> Callable[[Any], Any]:
    """Turn formulas into a function of a (batch, n_vars) array (sympy's ``lambdify``).

    Args:
        exprs: One expression or a list (e.g. :func:`symbolic_formula`'s result). An expression
            is a sympy expression, a number, or a formula string, which is read by
            :func:`kantk.parse_formula` (a whitelist that never runs code) in the variables
            ``var_names`` (default ``x1, x2, ...``).
        var_names: Input names or symbols, in column order; default: the free symbols sorted
            naturally (``x1, x2, ..., x10``).
        backend: ``"numpy"`` (NumPy arrays in and out) or ``"torch"`` (tensors, differentiable).

    Returns:
        ``f(x)``: ``x`` (batch, n_vars) -> (batch,) for one expression, (batch, n_out) for a list.
        It raises a one-line :class:`kantk.formula_parser.FormulaError` (a ``ValueError``) for
        inputs that put a value past ``MAX_PARAMETER`` where a special function's evaluation time
        grows with it (:data:`kantk.formula_parser.PARAMETER_ARGUMENTS`, e.g. ``yv``'s order).

    Raises:
        ValueError: A bad backend, a formula string that :func:`kantk.parse_formula` refuses, or a
            formula that sympy cannot compile for the backend (a one-line
            :class:`kantk.formula_parser.FormulaError`: a function the backend lacks, such as
            ``legendre`` for torch, or a constant that is not finite, such as ``1/0``).
        TypeError: An item that is neither a sympy expression, a number nor a string.
    """
    import sympy

    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    single = isinstance(exprs, (sympy.Basic, str))
    items = [_as_expr(e, var_names) for e in ([exprs] if single else list(exprs))]
    if var_names is None:
        free = set().union(*(e.free_symbols for e in items))
        symbols = sorted(free, key=lambda s: _natural_key(s.name))
    else:
        symbols = list(_symbols(var_names, len(var_names)))
    namespace: dict[str, Any] = {}
    for e in items:
        namespace.update(lambdify_namespace(e))
    if namespace and backend != "numpy":
        raise ValueError(f"scipy.special functions ({', '.join(namespace)}) need backend='numpy'")
    try:
        if backend == "torch":
            # torch's functions take tensors only: fold constant sub-expressions (sqrt(2*pi)) to floats.
            items = [
                e.replace(
                    lambda a: a.is_number and not a.is_Atom and a.is_real, lambda a: sympy.Float(a.evalf(17))
                )
                for e in items
            ]
        # "scipy" evaluates sympy's special functions (uppergamma, legendre, ...) with scipy.special
        modules: Any = [namespace, "scipy", "numpy"] if backend == "numpy" else backend
        compiled = sympy.lambdify(symbols, items, modules=modules, dummify=_hides_a_function(symbols))
    except LAMBDIFY_ERRORS as exc:  # e.g. torch has no legendre; 1/0 is complex infinity
        raise _compile_error(exprs, backend, exc) from None
    # its scipy.special functions refuse sample values past kantk.formula_parser.MAX_PARAMETER where
    # their evaluation time grows with them (hyp1f1(1e9, 1.5, x) took 15 s per sample)
    bound_parameters(compiled)
    n_vars = len(symbols)

    def evaluate(x: Any) -> Any:
        if backend == "numpy" and isinstance(x, torch.Tensor):  # "Cannot interpret 'torch.float64'"
            raise TypeError(
                "this formula function was made with backend='numpy' and takes NumPy arrays; pass "
                "x.numpy() (x.detach().cpu().numpy()), or make it with backend='torch' for tensors"
            )
        if x.ndim != 2 or x.shape[1] != n_vars:
            raise ValueError(
                f"expected inputs of shape (batch, {n_vars}) for variables {[s.name for s in symbols]}, got "
                f"{tuple(x.shape)}"
            )
        outs = compiled(*[x[:, k] for k in range(n_vars)])
        batch = x.shape[0]
        if backend == "torch":
            cols = [torch.as_tensor(o, dtype=x.dtype, device=x.device).expand(batch) for o in outs]
            return cols[0] if single else torch.stack(cols, dim=1)
        import numpy as np

        arrays = [
            np.broadcast_to(np.asarray(o, dtype=np.result_type(x.dtype, np.float64)), (batch,)) for o in outs
        ]
        return arrays[0].copy() if single else np.stack(arrays, axis=1)

    return evaluate


def formula_to_latex(exprs: sympy.Expr | Sequence[sympy.Expr]) -> str | list[str]:
    """LaTeX of one expression (a string) or of a list (a list of strings).

    Variable names are written so that the LaTeX compiles and reads as the formula: a name with
    characters outside letters, digits and ``_`` (a CSV header such as ``growth %``) becomes
    ``\\mathrm{...}`` with TeX's special characters escaped, and so does a name whose usual form
    would be taken for another (``x_1`` and ``x1`` both print ``x_{1}``; a variable ``pi`` prints
    ``\\pi``, the constant). Numeric edges ``f_0_1_10`` print as ``f_{0,1,10}``.
    """
    import sympy

    if isinstance(exprs, sympy.Basic):
        return _latex(exprs)
    return [_latex(e) for e in exprs]


_TEX_SPECIAL = {c: "\\" + c for c in "#$%&_{}"} | {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    " ": r"\ ",
}


def _latex(expr: Any) -> str:
    import sympy
    from sympy.core.function import AppliedUndef

    symbols = sorted(expr.free_symbols, key=lambda s: str(s))
    usual = {s: sympy.latex(s) for s in symbols}
    constants = {sympy.latex(c) for c in (sympy.pi, sympy.E, sympy.I, sympy.oo)}
    names = {}
    for s in symbols:
        # sympy's own form only where it is one letter (or a Greek letter) with at most a
        # subscript: x__2 prints x^{2}, xdot \dot{x}, and ma "ma", a product m a, which read as
        # other formulas
        plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(s)) is not None and (
            re.fullmatch(r"(\\[A-Za-z]+|[A-Za-z])(_\{[A-Za-z0-9]+\})?", usual[s]) is not None
        )
        clash = list(usual.values()).count(usual[s]) > 1 or usual[s] in constants
        if not plain or clash:
            names[s] = r"\mathrm{" + "".join(_TEX_SPECIAL.get(c, c) for c in str(s)) + "}"

    def numeric(f: Any) -> bool:
        return isinstance(f, AppliedUndef) and re.fullmatch(r"f_\d+_\d+_\d+", type(f).__name__) is not None

    def subscripted(f: Any) -> Any:
        return sympy.Function("f_{" + ",".join(type(f).__name__.split("_")[1:]) + "}")(*f.args)

    # bottom-up, so a numeric edge inside another's argument is renamed too (xreplace stopped at
    # the outer one: f_{1,0,0}(f_{0 1 0}(x_2) + ...))
    return sympy.latex(expr.replace(numeric, subscripted), symbol_names=names)


# --- internals ------------------------------------------------------------------------------------


def _compile_error(exprs: Any, backend: str, exc: BaseException) -> FormulaError:
    """The one-line error for formulas ``sympy.lambdify`` cannot compile."""
    try:
        shown = exprs if isinstance(exprs, str) else str(exprs)
    except LAMBDIFY_ERRORS:  # printing evaluates constant terms, which may fail the same way
        shown = type(exprs).__name__
    shown = repr(shown) if len(repr(shown)) <= 80 else repr(shown)[:77] + "..."
    message = str(exc).splitlines()[0] if str(exc) else ""
    message = message if len(message) <= 120 else message[:117] + "..."
    if backend == "torch" and isinstance(exc, NotImplementedError):
        hint = "use backend='numpy', which evaluates every function kantk.parse_formula accepts"
    else:
        hint = "formulas must be real and finite where they are evaluated (no 1/0)"
    return FormulaError(
        f"cannot compile formula {shown} for backend={backend!r}: {type(exc).__name__}: {message}; {hint}"
    )


def _as_expr(item: Any, var_names: Sequence[Any] | None) -> Any:
    """A sympy expression from an expression, a number or a formula string (never ``sympify``)."""
    import sympy

    if isinstance(item, sympy.Basic):
        return item
    if isinstance(item, str):
        return parse_formula(item, None if var_names is None else list(var_names))
    if isinstance(item, numbers.Real) and not isinstance(item, bool):
        return sympy.sympify(item, strict=True)  # strict: numbers only, no string parsing
    raise TypeError(f"formulas must be sympy expressions, numbers or strings, got {type(item).__name__}")


def _symbols(var_names: Sequence[Any] | None, n: int) -> list[sympy.Symbol]:
    import sympy

    if var_names is None:
        return [sympy.Symbol(f"x{k + 1}") for k in range(n)]
    if isinstance(var_names, str) or len(var_names) != n:
        raise ValueError(f"var_names must list {n} names (one per input), got {var_names!r}")
    out = []
    for name in var_names:
        if isinstance(name, sympy.Symbol):
            out.append(name)
        elif isinstance(name, str) and name:
            out.append(sympy.Symbol(name))
        else:
            raise ValueError(f"var_names entries must be non-empty strings or sympy symbols, got {name!r}")
    check_distinct(out)
    return out


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _snap(value: float, digits: int) -> Any:
    import sympy

    if not math.isfinite(value):
        return sympy.Float(value)
    tol = 10.0**-digits * max(1.0, abs(value))
    nearest = round(value)
    if abs(value - nearest) <= tol:
        return sympy.Integer(nearest)
    # a fraction or a multiple of pi must match to ``digits`` places (absolute): relative above 1,
    # every value past about 400 was within reach of some k/q (1234.57 became 2469/2, 517.38
    # became 1552/3), an exact number that is not there and further off than the decimal
    tol = 10.0**-digits
    # the one of smallest denominator q (p/q and k*pi/q alike, k*pi having q = 1), the nearest of
    # those on a tie: fractions were tried before multiples of pi, and pi became 22/7 at
    # digits=2 (sin(22*x1/7) from a model of sin(pi*x1))
    within: list[tuple[int, float, int, bool]] = []  # (q, error, p or k, a multiple of pi)
    for q in range(2, MAX_DENOMINATOR + 1):
        p = round(value * q)
        if abs(value - p / q) <= tol:
            within.append((q, abs(value - p / q), p, False))
    for q in PI_DENOMINATORS:
        k = round(value * q / math.pi)
        if k != 0 and abs(value - k * math.pi / q) <= tol:
            within.append((q, abs(value - k * math.pi / q), k, True))
    if within:  # the sympy number of the chosen one only
        q, _, p, pi = min(within, key=lambda item: (item[0], item[1]))
        return sympy.Rational(p, q) * sympy.pi if pi else sympy.Rational(p, q)
    rounded = round(value, digits)
    return (
        sympy.Integer(0)
        if rounded == 0
        else sympy.Float(rounded, max(digits + len(str(int(abs(rounded)))), 1))
    )


def _edge_term(fn: Any, params: Sequence[float], node: Any) -> Any:
    """``c * f(a * node + b) + d`` in sympy; a power ``f`` is written ``C * (node + B)^p``."""
    import sympy

    from kantk.symbolic.libraries import Power

    a, b, c, d = (float(v) for v in params)
    power = fn.sympy_fn
    if isinstance(power, Power) and a != 0:
        # in sympy's floats, whose exponents do not overflow: c * a**p of a finite model's
        # parameters (a = 1e100, p = 5) is past a Python float's range
        p, big_a, big_b = sympy.Rational(power.num, power.den), sympy.Float(a), sympy.Float(b)
        if power.den == 1:  # (a x + b)^n = a^n (x + b/a)^n
            scale, inner = sympy.Float(c) * big_a**p, node + big_b / big_a
        else:  # (a x + b)^p = |a|^p (sign(a) x + b/|a|)^p on the real domain
            scale, inner = sympy.Float(c) * abs(big_a) ** p, (node if a > 0 else -node) + big_b / abs(big_a)
        return scale * power(inner) + sympy.Float(d)
    value = fn.sympy_fn(sympy.Float(a) * node + sympy.Float(b))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = sympy.sympify(value)  # a constant function's number
    if not isinstance(value, sympy.Expr):
        raise TypeError(
            f"symbolic function {fn.name!r}: its sympy_fn returned {type(value).__name__} "
            f"{_short(value)}; a sympy_fn returns a sympy expression of its argument"
        )
    return sympy.Float(c) * value + sympy.Float(d)


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a plugin's object with a broken repr
        return "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Rows of ``x=`` that :func:`symbolic_formula` checks its rounding on: all of them up to this
#: many, else this many spread over each input's range (its smallest and largest value included).
MAX_CHECK_POINTS = 256


def _check_points(x: torch.Tensor | None, model: KAN) -> Any:
    import numpy as np

    n = model.widths[0]
    if x is None:
        lo, hi = _input_box(model)
        return np.random.default_rng(0).uniform(lo, hi, size=(64, n))
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != n:
        raise ValueError(f"x must be a (batch, {n}) tensor of model inputs")
    points = x.detach().to("cpu", torch.float64)
    if points.shape[0] > MAX_CHECK_POINTS:
        # rows spread over every input's range, its smallest and largest value included (the first
        # 256 rows of sorted data covered a quarter of it, and a rounding 27% off went unwarned)
        per_input = max(2, MAX_CHECK_POINTS // n)
        pick = torch.linspace(0, points.shape[0] - 1, per_input, dtype=torch.float64).round().long()
        rows = torch.unique(torch.argsort(points, dim=0)[pick].flatten())
        points = points[rows]
    return points.numpy()


def _input_box(model: KAN) -> tuple[Any, Any]:
    """(lo, hi), (n,) each: the range the first layer's basis resolves, as its ``range_ends``
    says (:class:`~kantk.bases.SupportsInputRange`: the grid range of B-splines, centre +-
    half-width of Chebyshev, first to last centre of RBFs), else [-1, 1] with a warning. It was
    guessed from attribute names: a plugin's hat basis with ``grid``, ``order`` and ``grid_size``
    failed with an IndexError, and other plugin bases were checked on [-1, 1] after their grid
    moved to [50, 100]."""
    import numpy as np

    from kantk.bases.base import stated_input_range

    basis = model.layers[0].basis
    n = model.widths[0]
    try:
        stated = stated_input_range(basis, n)
    except ValueError as err:
        raise ValueError(f"{err}; pass x= to symbolic_formula to check on samples instead") from None
    if stated is None:
        warn_at_user(
            "symbolic_formula checks the formula against the model on [-1, 1]: the "
            f"{model.layers[0].basis_name!r} basis does not say its input range (range_ends, "
            "kantk.bases.SupportsInputRange); pass x= (the inputs the model was fitted on)"
        )
        return np.full(n, -1.0), np.full(n, 1.0)
    return stated[0].numpy(), stated[1].numpy()


def _rounded(expr: Any, simplify: bool, digits: Any, symbols: Sequence[Any], points: Any, q: int) -> Any:
    """Output ``q``'s formula with constants rounded as ``digits`` says (see symbolic_formula);
    once one of its ``sympy.simplify`` calls passes :data:`SIMPLIFY_SECONDS`, the rest are skipped."""
    token = _SIMPLIFY_GAVE_UP.set(False)
    try:
        return _rounded_forms(expr, simplify, digits, symbols, points, q)
    finally:
        _SIMPLIFY_GAVE_UP.reset(token)


def _rounded_forms(
    expr: Any, simplify: bool, digits: Any, symbols: Sequence[Any], points: Any, q: int
) -> Any:
    import sympy

    expr = sympy.sympify(expr)
    if digits is None:
        return _clean(expr, simplify, None, symbols, points)
    if digits != "auto":
        formula = _clean(expr, simplify, digits, symbols, points)
        deviation = _deviation(formula, expr, symbols, points)
        if not deviation <= FORMULA_RTOL:
            if math.isnan(deviation):
                what = "cannot be checked on the check points (not real on most of them)"
            elif math.isinf(deviation):  # _deviation's mark, not a measured size
                what = (
                    f"loses what the formula says about its inputs (it strays more than "
                    f"{FORMULA_SPREAD_RTOL:g} of the formula's own variation on the check points, or is not "
                    "real where the model is)"
                )
            else:
                what = f"strays {deviation:.2g} (relative) from the model on the check points"
            warn_at_user(
                f"symbolic_formula: output {q} with digits={digits} {what}, above FORMULA_RTOL = "
                f"{FORMULA_RTOL:g}; use digits='auto' (the default) or digits=None, and pass x= the inputs "
                "the model was fitted on"
            )
        return formula
    for d in AUTO_DIGITS:
        formula = _clean(expr, simplify, d, symbols, points)
        deviation = _deviation(formula, expr, symbols, points)
        if deviation <= FORMULA_RTOL:
            return formula
        if math.isnan(deviation):  # nothing to check against: the first rounding, with a word
            warn_at_user(
                f"symbolic_formula: output {q}: the formula is not real on most check points, so its "
                f"rounding (digits={d}) is not checked; pass x= the inputs the model was fitted on"
            )
            return formula
    return _clean(expr, simplify, None, symbols, points)  # full precision: equals the model


def _deviation(candidate: Any, exact: Any, symbols: Sequence[Any], points: Any) -> float:
    """Largest ``|candidate - exact|`` on the points where ``exact`` is real, over the largest
    ``|exact|`` there; inf where ``candidate`` is not real but ``exact`` is, or where it strays
    more than :data:`FORMULA_SPREAD_RTOL` of ``exact``'s variation; NaN when ``exact`` is real on
    fewer than half the points (or cannot be evaluated)."""
    import numpy as np

    if not exact.free_symbols <= set(symbols):
        return math.nan
    if not candidate.free_symbols <= set(symbols):
        return math.inf
    values = _evaluated([candidate, exact], symbols, points)
    if values is None:  # an expression numpy cannot evaluate is not verified
        return math.nan
    got, want = values
    real = np.isfinite(want) & (np.abs(want.imag) <= 1e-12 * (1 + np.abs(want.real)))
    if real.sum() < max(1, points.shape[0] // 2):
        return math.nan
    got, want = got[real], want[real].real
    if not (np.isfinite(got) & (np.abs(got.imag) <= 1e-12 * (1 + np.abs(got.real)))).all():
        return math.inf
    scale = float(np.abs(want).max())
    err = float(np.abs(got.real - want).max())
    spread = float(np.ptp(want))
    if spread > 1e-9 * scale and err > FORMULA_SPREAD_RTOL * spread:
        return math.inf  # what the formula says about its inputs was rounded away
    return err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


def _disagreeing_functions(model: KAN) -> list[str]:
    """The symbolic functions on the model's edges whose torch and sympy forms disagree on a row
    of probe points (where both are real and finite), each as ``function 'sinh' of library 'mine'
    (at z = 0.5: torch 0.52, sympy 1.13)``; what :func:`symbolic_formula` names when the formula
    differs from the model (it said only "a symbolic function's sympy form")."""
    import numpy as np
    import sympy

    z = sympy.Symbol("z")
    probe = torch.linspace(-3.93, 4.07, 81, dtype=torch.float64)  # no integer, no 0: off most poles
    found: list[str] = []
    seen: set[tuple[str | None, str]] = set()
    for layer in model.layers:
        for q, p in layer.symbolic_edges():
            function = layer.symbolic_function(q, p)
            key = (layer.symbolic_libraries[q][p], function.name if function is not None else "")
            if function is None or key in seen:
                continue
            seen.add(key)
            try:
                with torch.no_grad(), np.errstate(all="ignore"):
                    want = torch.as_tensor(function.torch_fn(probe), dtype=torch.float64).numpy()
                    f = sympy.lambdify(z, function.sympy_fn(z), modules="numpy")
                    got = np.asarray(f(probe.numpy().astype(complex)), dtype=complex)
                    got = np.broadcast_to(got, want.shape)
            except Exception:  # noqa: BLE001 - only names a culprit; one it cannot evaluate is not named
                continue
            both = np.isfinite(want) & np.isfinite(got) & (np.abs(got.imag) <= 1e-9 * (1 + np.abs(got.real)))
            if both.sum() < 5:
                continue
            gap = np.where(both, np.abs(got.real - want), 0.0)
            worst = int(gap.argmax())
            if gap[worst] > 1e-6 * (1 + float(np.abs(want[both]).max())):
                found.append(
                    f"function {key[1]!r} of library {key[0]!r} (at z = {float(probe[worst]):.3g}: torch "
                    f"{float(want[worst]):.3g}, sympy {float(got.real[worst]):.3g})"
                )
    return found


def _model_deviations(model: KAN, exprs: Sequence[Any], symbols: Sequence[Any], points: Any) -> list[float]:
    """Per output, the largest ``|formula - model|`` over the largest ``|model|`` on the points
    where both are finite and real; 0 where it cannot be told (an expression numpy cannot evaluate,
    fewer than half the points finite, or another device's model that fails on CPU points)."""
    import numpy as np

    try:
        with torch.no_grad():
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
            inputs = torch.from_numpy(points).to(device, model.dtype)
            values = model(inputs).detach().to("cpu", torch.float64).numpy()
    except Exception:  # noqa: BLE001 - the check only warns; a model it cannot run is not checked
        return [0.0] * len(exprs)
    deviations = []
    for q, expr in enumerate(exprs):
        want = values[:, q]
        evaluated = _evaluated([expr], symbols, points)
        if evaluated is None:  # an expression numpy cannot evaluate is not verified
            deviations.append(0.0)
            continue
        (got,) = evaluated
        both = np.isfinite(want) & np.isfinite(got) & (np.abs(got.imag) <= 1e-12 * (1 + np.abs(got.real)))
        scale = float(np.abs(want[both]).max()) if both.any() else 0.0
        if both.sum() < max(1, want.shape[0] // 2):
            deviations.append(0.0)
            continue
        err = float(np.abs(got.real[both] - want[both]).max())
        deviations.append(err / scale if scale > 0 else (0.0 if err == 0 else math.inf))
    return deviations


def _evaluated(exprs: Sequence[Any], symbols: Sequence[Any], points: Any) -> list[Any] | None:
    """Each of ``exprs`` on the rows of ``points`` (numpy, one column per symbol), as complex
    arrays of ``points.shape[0]`` values; ``None`` when numpy cannot evaluate them."""
    import numpy as np
    import sympy

    try:
        with np.errstate(all="ignore"):
            f = sympy.lambdify(symbols, list(exprs), modules="numpy", dummify=_hides_a_function(symbols))
            return [np.broadcast_to(np.asarray(v, dtype=complex), (points.shape[0],)) for v in f(*points.T)]
    except Exception:  # noqa: BLE001 - whatever numpy or the generated code raises
        return None


def _hides_a_function(symbols: Sequence[Any]) -> bool:
    """Whether a variable's name is one the generated code calls (``exp``, ``sin``: data columns
    so named hid numpy's functions, "'numpy.ndarray' object is not callable"); ``lambdify`` then
    gets ``dummify=True``, which otherwise changes what it refuses."""
    import numpy as np
    import scipy.special

    return any(
        hasattr(np, s.name) or hasattr(torch, s.name) or hasattr(scipy.special, s.name) for s in symbols
    )


def _ops(expr: Any) -> int:
    """sympy's operation count, with a fraction such as 2/7 counting as one number (no division)."""
    import sympy

    fractions = {r: sympy.Dummy() for r in expr.atoms(sympy.Rational) if not r.is_Integer}
    return int(sympy.count_ops(expr.xreplace(fractions) if fractions else expr))


class _OutOfTime(BaseException):
    """A :func:`_within` limit is over (a BaseException: sympy catches some Exceptions)."""


def _within(run: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """``(True, run())``, or ``(False, None)`` once ``run`` has taken ``seconds`` (a real-time timer
    signal, on the main thread of a platform that has one; elsewhere ``run()`` without a limit).
    Calls nest (simplify's limit inside the formulas' one): an earlier outer deadline stops the
    inner run, and the outer timer gets back what was left of it when the inner one ends."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return True, run()
    if seconds <= 0:
        return False, None

    def stop(signum: int, frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, stop)
    pending, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    if pending and pending < seconds:  # an outer deadline comes first: stop then, and hand it back
        signal.setitimer(signal.ITIMER_REAL, pending)
    start = time.monotonic()
    try:
        return True, run()
    except _OutOfTime:
        return False, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if pending:  # someone else's timer (pytest-timeout): give it back what was left
            signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - start), 1e-3))


#: Whether a ``sympy.simplify`` of the output being rounded ran past its time (see :func:`_rounded`).
_SIMPLIFY_GAVE_UP: ContextVar[bool] = ContextVar("kantk_simplify_gave_up", default=False)


def _time_limited(run: Callable[[], Any], expr: Any) -> Any:
    """``run()``, or ``None`` when it takes longer than :data:`SIMPLIFY_SECONDS` (:func:`_within`'s
    timer), or when an earlier call for the same output did. Where there is no timer signal,
    ``run()`` without a limit, and ``None`` at once when ``expr`` has a trigonometric function
    (where simplify hung)."""
    import signal
    import threading

    import sympy

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return None if expr.has(sympy.functions.elementary.trigonometric.TrigonometricFunction) else run()
    if _SIMPLIFY_GAVE_UP.get():
        return None
    done, value = _within(run, SIMPLIFY_SECONDS)
    if not done:
        _SIMPLIFY_GAVE_UP.set(True)  # until _rounded resets it: the output's other forms
    return value


def _simplified(expr: Any, simplify: bool, digits: int | None) -> Any:
    import sympy

    if simplify:
        expr = sympy.powsimp(expr)  # exp(u) * exp(v) -> exp(u + v), cheap
        if _ops(expr) <= SIMPLIFY_MAX_OPS:
            # never accept a longer form
            simpler = _time_limited(lambda: sympy.simplify(expr, ratio=1.0, measure=_ops), expr)
            if simpler is not None and not (simpler.has(sympy.Piecewise) and not expr.has(sympy.Piecewise)):
                expr = simpler
        if digits is not None:
            expr = round_constants(expr, digits)
    return expr


def _clean(expr: Any, simplify: bool, digits: int | None, symbols: Sequence[Any], points: Any) -> Any:
    import sympy

    expr = sympy.sympify(expr)
    if digits is None:
        return _simplified(expr, simplify, None)
    expand = expansion_work(expr) <= MAX_EXPANSION_TERMS  # else the compact forms only (bounds.py)
    forms = []
    if expand:
        expanded = round_constants(expr, digits, snap_only=True)  # exact where nice: products stay exact
        forms.append(
            _simplified(round_constants(sympy.expand(expanded, **EXPAND_HINTS), digits), simplify, digits)
        )
    forms.append(_simplified(round_constants(expr, digits), simplify, digits))  # compact
    # constants that only combine once a factor leaves a root: c * sqrt(k u + k' v) -> c sqrt(k) *
    # sqrt(u + (k'/k) v), where c sqrt(k) and k'/k may round to exact numbers
    fine = round_constants(expr, 12)  # drops 1e-17 leftovers of the refits, keeps the rest
    if expand:
        pulled = _pull_power_factors(sympy.expand(fine, **EXPAND_HINTS))
        forms.append(
            _simplified(round_constants(sympy.expand(pulled, **EXPAND_HINTS), digits), simplify, digits)
        )
    forms.append(_simplified(round_constants(_pull_power_factors(fine), digits), simplify, digits))
    best = forms[0]
    faithful = [c for c in forms if _deviation(c, expr, symbols, points) <= FORMULA_RTOL]
    for candidate in faithful:  # the shortest faithful form; the expanded one when none is
        if best not in faithful or _ops(candidate) < _ops(best):
            best = candidate
    return best


def _pull_power_factors(expr: Any) -> Any:
    """Divide every sum under a fractional power by its smallest non-zero coefficient, k, and
    put ``k ** power`` outside: ``(k u + k' v) ** q -> k ** q * (u + (k'/k) v) ** q``."""
    import sympy

    def pull(power: Any) -> Any:
        terms = sympy.Add.make_args(power.base)
        coeffs = [abs(complex(t.as_coeff_Mul()[0])) for t in terms]
        big = max(coeffs, default=0.0)
        k = min((c for c in coeffs if c > 1e-6 * big), default=0.0)
        if k == 0.0 or k == 1.0:
            return power
        return sympy.Float(k) ** power.exp * sympy.Add(*(t / k for t in terms)) ** power.exp

    return expr.replace(lambda e: e.is_Pow and e.base.is_Add and not e.exp.is_Integer, pull)
