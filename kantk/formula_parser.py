"""Formula strings to sympy expressions, without running any code.

Every formula that kantk accepts as text (:func:`kantk.create_dataset`, the ``f`` of a YAML
config's ``FunctionDataModule``, ``kantk discover --formula``, :func:`kantk.formula_to_callable`)
goes through :func:`parse_formula`. It reads the text with Python's :mod:`ast` (never ``eval``,
``sympify`` or ``parse_expr``), checks every node against a whitelist and builds the sympy
expression itself:

* numbers: int and float literals (finite; exact numbers up to ``MAX_NUMBER_BITS`` bits);
* variables: ``x1 .. xn`` (or the names a caller gives), constants ``pi`` and ``E``;
* arithmetic: ``+ - * / ** % //`` and unary ``+ -``; ``^`` means power (as sympy's
  ``convert_xor``); a numeric exponent must satisfy ``|e| <= MAX_EXPONENT``, and a power of an exact
  number must stay under ``MAX_NUMBER_BITS`` bits, so ``9**9**9`` is refused at once;
* calls of the known functions only (:data:`SYMPY_FUNCTIONS`, then :data:`SCIPY_FUNCTIONS`,
  with their number of arguments), positional arguments only; the degree/order arguments of
  orthogonal polynomials, ``lpmv`` and ``hyperu`` (:data:`ORDER_ARGUMENTS`), whose evaluation
  time grows with them, must be numbers with ``|n| <= MAX_ORDER``;
* the other arguments whose evaluation time grows with their size (:data:`PARAMETER_ARGUMENTS`,
  found by timing every function: the orders of ``yv``/``bessely``, ``struve``,
  ``spherical_jn``/``jn`` and ``spherical_yn``/``yn``, ``lpmv``'s degree, the ``alpha``/``beta`` of
  ``eval_genlaguerre``/``assoc_laguerre`` and ``eval_jacobi``, ``a, b, c`` of ``hyp2f1``, all of
  ``hyp1f1`` and the variable of ``polygamma``; ``yv(1e9, 1e300)`` took 7-15 s) must satisfy
  ``|p| <= MAX_PARAMETER`` (1e4: within it the slowest call measured took about a millisecond,
  besides a fixed 5 ms of ``hyp1f1`` at some arguments, whatever their size): a constant is
  checked here, and since they may be variables (``jv(x1, x2)``, ``lpmv(0, x1, x2)``), a compiled
  formula checks its sample values before scipy sees them (:func:`bound_parameters`, which
  :func:`kantk.create_dataset`, the data modules and :func:`kantk.formula_to_callable` apply; a
  value past the bound is a one-line ``FormulaError`` there);
* at most one comparison ``< <= > >=``, as the whole formula (class labels, ``"x2 > sin(pi*x1)/2"``).

Nothing else: no attributes, subscripts, strings, lambdas, comprehensions, keywords, ``*args``,
boolean operators, names beginning with ``_``. The text is at most ``MAX_LENGTH`` characters, with
at most ``MAX_NODES`` syntax nodes nested at most ``MAX_DEPTH`` levels (a chain ``a + b - c + ...``
or ``a * b / c * ...`` is one level). Every refusal is a :class:`FormulaError` (a ``ValueError``)
with a one-line message that says what was wrong and what is accepted.

Functions are built unevaluated (``sin(0)`` stays ``sin(0)``), and arithmetic is evaluated with the
bounds above. sympy still evaluates constant terms exactly (mpmath) when the formula is printed or
compiled, so constants are bounded too:

* a special function (anything outside :data:`CONSTANT_FUNCTIONS`: ``gamma``, ``polygamma``,
  ``besselk``, every scipy name, ...) of constants only becomes the float :mod:`scipy.special`
  computes (``gamma(1/2)``, ``besselk(1000, 1000)``), refused where that is not finite and real
  (``polygamma(-1000, 1/3)``) or where scipy has no twin (``legendre(3, 1/2)``);
* the elementary functions (``sin``, ``exp``, ``log``, ``sqrt``, ``Max``, ``erf``, ...) take constants,
  but every constant argument, constant base or exponent of a power, and operand of ``%``/``//``
  must be a finite real float64 (computed with Python floats: ``exp(10**2900)``,
  ``exp(exp(10000))``, ``sin(log(-1))`` are refused), and a constant call must be finite
  (``cot(0)``, ``exp(1000)`` are refused);
* the exact numbers under one fractional power (joined ones included: ``sqrt(a)*sqrt(b)``) have at
  most ``MAX_ROOT_BITS`` bits, since sympy factors them.
This module imports nothing of kantk; sympy and scipy are imported on first use.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kantk._validation import check_int, is_int, is_number

if TYPE_CHECKING:
    import sympy

#: Longest formula text accepted (characters).
MAX_LENGTH = 4000
#: Most expression nodes (numbers, names, operations, calls) in one formula.
MAX_NODES = 2000
#: Deepest nesting of operations and calls; a chain of ``+``/``-`` (or of ``*``/``/``) counts once.
MAX_DEPTH = 50
#: Largest ``|e|`` for a numeric exponent ``e`` of ``**``.
MAX_EXPONENT = 1000
#: Largest exact integer (numerator or denominator), in bits (10,000 bits are about 3,000 digits).
MAX_NUMBER_BITS = 10_000
#: Highest variable index ``k`` in a name ``xk`` (when the variables are ``x1 .. xn``).
MAX_VARIABLE_INDEX = 1000
#: Most arguments of ``Min``/``Max``.
MAX_ARGS = 32
#: Largest ``|n|`` for the degree or order arguments in :data:`ORDER_ARGUMENTS`.
MAX_ORDER = 1000
#: Largest ``|p|`` for the arguments in :data:`PARAMETER_ARGUMENTS`, constants and sample values
#: alike. Their cost grows about linearly with ``|p|`` beyond it (scipy 1.17, one scalar call):
#: ``lpmv(0, 1e6, 0.3)`` 17 ms, ``hyp1f1(1e6, 1000, -1000)`` 18 ms, ``polygamma(1, -1e7 - 0.37)``
#: 0.15 s, ``yv(1e7, 1e300)`` 0.25 s, ``hyp1f1(0.3, 0.3, -1e12)`` 1.2 s, ``hyp2f1(1e10, -1e10, 1e9,
#: 0.99)`` 10 s, ``hyp1f1(0.3, 0.3, -1e15)`` over a minute. With every such argument within 1e4 (the
#: other arguments anywhere up to 1e300, orders up to ``MAX_ORDER``) the slowest call a timing sweep
#: of these functions found took 0.9 ms, besides a fixed 5 ms of ``hyp1f1`` (``hyp1f1(1, -1000.37,
#: -1000)``, the same at -1e6) that does not grow; at 1e5 the linear ones reach about 2 ms.
MAX_PARAMETER = 10_000
#: Most bits (numerator plus denominator) of the exact numbers under one fractional power
#: (``sqrt(n)``, ``n**(2/3)``, and ``sqrt(a)*sqrt(b)``, which sympy joins into ``sqrt(a*b)``): sympy
#: factors them, which takes seconds at thousands of bits.
MAX_ROOT_BITS = 256

#: Named constants.
CONSTANTS = ("pi", "E")

_ONE = (1, 1)
_TWO = (2, 2)
#: Formula name -> (sympy attribute, fewest arguments, most arguments). Evaluated numerically with
#: scipy/numpy by :func:`sympy.lambdify`; these names win over :data:`SCIPY_FUNCTIONS`.
SYMPY_FUNCTIONS: dict[str, tuple[str, int, int]] = {
    **{
        name: (name, *_ONE)
        for name in (
            "sin",
            "cos",
            "tan",
            "cot",
            "sec",
            "csc",
            "asin",
            "acos",
            "atan",
            "acot",
            "asec",
            "acsc",
            "sinh",
            "cosh",
            "tanh",
            "coth",
            "sech",
            "csch",
            "asinh",
            "acosh",
            "atanh",
            "acoth",
            "asech",
            "acsch",
            "exp",
            "sign",
            "floor",
            "ceiling",
            "erf",
            "erfc",
            "erfi",
            "erfinv",
            "erfcinv",
            "gamma",
            "loggamma",
            "digamma",
            "factorial",
            "sinc",
            "Heaviside",
            "zeta",
            "airyai",
            "airybi",
            "airyaiprime",
            "airybiprime",
            "fresnels",
            "fresnelc",
            "Si",
            "Ci",
            "Ei",
            "Abs",
        )
    },
    "abs": ("Abs", *_ONE),
    **{
        name: (name, *_TWO)
        for name in (
            "atan2",
            "polygamma",
            "beta",
            "uppergamma",
            "lowergamma",
            "binomial",
            "besselj",
            "bessely",
            "besseli",
            "besselk",
            "jn",
            "yn",
            "legendre",
            "chebyshevt",
            "chebyshevu",
            "hermite",
            "laguerre",
            "Mod",
        )
    },
    **{name: (name, 3, 3) for name in ("assoc_legendre", "gegenbauer", "assoc_laguerre")},
    "Min": ("Min", 1, MAX_ARGS),
    "Max": ("Max", 1, MAX_ARGS),
    "min": ("Min", 1, MAX_ARGS),
    "max": ("Max", 1, MAX_ARGS),
    # built from powers and logarithms by the parser, not called directly
    "sqrt": ("sqrt", *_ONE),
    "cbrt": ("cbrt", *_ONE),
    "root": ("root", *_TWO),
    "log": ("log", 1, 2),
    "ln": ("log", *_ONE),
}

#: Formula name -> number of arguments, for :mod:`scipy.special` functions sympy does not name; they
#: become undefined sympy functions that :func:`lambdify_namespace` maps to scipy.
SCIPY_FUNCTIONS: dict[str, int] = {
    **dict.fromkeys(
        (
            "j0",
            "j1",
            "y0",
            "y1",
            "i0",
            "i0e",
            "i1",
            "i1e",
            "k0",
            "k0e",
            "k1",
            "k1e",
            "ellipk",
            "ellipkm1",
            "ellipe",
            "gammaln",
            "gammasgn",
            "rgamma",
            "psi",
            "expit",
            "logit",
            "erfcx",
            "dawsn",
            "expm1",
            "log1p",
            "cosm1",
            "exp2",
            "exp10",
            "entr",
            "spence",
            "zetac",
            "sindg",
            "cosdg",
            "tandg",
            "cotdg",
            "ndtr",
            "ndtri",
            "log_ndtr",
        ),
        1,
    ),
    **dict.fromkeys(
        (
            "jv",
            "yv",
            "iv",
            "kv",
            "jve",
            "yve",
            "ive",
            "kve",
            "ellipkinc",
            "ellipeinc",
            "gammainc",
            "gammaincc",
            "gammaincinv",
            "gammainccinv",
            "xlogy",
            "xlog1py",
            "rel_entr",
            "kl_div",
            "huber",
            "pseudo_huber",
            "poch",
            "binom",
            "agm",
            "struve",
            "modstruve",
            "eval_legendre",
            "eval_chebyt",
            "eval_chebyu",
            "eval_hermite",
            "eval_hermitenorm",
            "eval_laguerre",
            "owens_t",
            "boxcox",
            "boxcox1p",
            "inv_boxcox",
            "hyp0f1",
            "spherical_jn",
            "spherical_yn",
            "spherical_in",
            "spherical_kn",
        ),
        2,
    ),
    **dict.fromkeys(("lpmv", "eval_genlaguerre", "eval_gegenbauer", "hyp1f1", "hyperu"), 3),
    **dict.fromkeys(("hyp2f1", "eval_jacobi"), 4),
}

#: Function name -> positions of its degree/order arguments, whose numeric evaluation takes time
#: growing with them (scipy's recurrences): these must be numbers with ``|n| <= MAX_ORDER``.
ORDER_ARGUMENTS: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(("legendre", "chebyshevt", "chebyshevu", "hermite", "laguerre", "gegenbauer"), (0,)),
    **dict.fromkeys(("assoc_laguerre", "eval_legendre", "eval_chebyt", "eval_chebyu", "eval_hermite"), (0,)),
    **dict.fromkeys(("eval_hermitenorm", "eval_laguerre", "eval_genlaguerre", "eval_gegenbauer"), (0,)),
    "eval_jacobi": (0,),
    "assoc_legendre": (0, 1),
    "lpmv": (0,),
    "hyperu": (0, 1),
}

#: ``scipy.special`` function -> positions of its arguments whose evaluation time grows with their
#: magnitude (found by timing every function a formula reaches, each argument from 1e2 to 1e300
#: with the others anywhere): mostly parameters (Bessel and Struve orders, ``lpmv``'s degree ``v``,
#: Laguerre and Jacobi ``alpha``/``beta``, the hypergeometric ``a, b, c``), and also the variable of
#: ``hyp1f1`` and ``polygamma`` (``polygamma(1, -1e7 - 0.37)`` takes 0.15 s). They may be variables
#: (``jv(x1, x2)``, ``lpmv(0, x1, x2)``), so the bound ``|p| <= MAX_PARAMETER`` is checked twice: on
#: constants when the formula is read, and on the values when a compiled formula is evaluated
#: (:func:`bound_parameters`). A formula name evaluated by one of these functions has the same
#: positions (``bessely`` is ``yv``, ``jn`` is ``spherical_jn``, ``assoc_laguerre`` is
#: ``eval_genlaguerre``; ``assoc_legendre``'s degree is an order, within ``MAX_ORDER`` already).
PARAMETER_ARGUMENTS: dict[str, tuple[int, ...]] = {
    "yv": (0,),
    "struve": (0,),
    "spherical_jn": (0,),
    "spherical_yn": (0,),
    "lpmv": (1,),
    "eval_genlaguerre": (1,),
    "eval_jacobi": (1, 2),
    "hyp1f1": (0, 1, 2),
    "hyp2f1": (0, 1, 2),
    "polygamma": (1,),
}

#: The functions kept as sympy calls with constant arguments only (``sin(1)``, ``exp(-1/2)``,
#: ``Max(2, pi)``): the elementary ones and ``erf``/``erfc``, which sympy evaluates quickly for finite
#: arguments. Every other function (sympy's special functions such as ``gamma``, ``polygamma``,
#: ``besselk``, and every :data:`SCIPY_FUNCTIONS` name) of constants only becomes scipy's float
#: (:meth:`_Builder.constant_call`): sympy evaluates such a call with mpmath when the formula is
#: printed or compiled, in unbounded time (``polygamma(-1000, 1/3)``, ``besselk(1000, 1000)``).
CONSTANT_FUNCTIONS: frozenset[str] = frozenset(
    (
        *("sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "asec", "acsc"),
        *("sinh", "cosh", "tanh", "coth", "sech", "csch"),
        *("asinh", "acosh", "atanh", "acoth", "asech", "acsch"),
        *("exp", "log", "ln", "sqrt", "cbrt", "root", "Abs", "abs", "sign", "floor", "ceiling"),
        *("Min", "Max", "min", "max", "atan2", "Mod", "sinc", "Heaviside", "erf", "erfc"),
    )
)

#: Every function name a formula may call.
FUNCTION_NAMES: tuple[str, ...] = tuple(sorted(set(SYMPY_FUNCTIONS) | set(SCIPY_FUNCTIONS), key=str.lower))


_ACCEPTED = (
    "accepted: numbers, the variables, pi, E, + - * / ** ^ % //, calls of known functions "
    "(sin, exp, log, sqrt, erf, gamma, besselj, jv, ellipk, ...) and one comparison < <= > >="
)
_VARIABLE = re.compile(r"x([1-9][0-9]*)")
_SUM = (ast.Add, ast.Sub)
_PRODUCT = (ast.Mult, ast.Div)
_OPERATOR_NAMES = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.Not: "not",
    ast.Invert: "~",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_COMPARISONS = {ast.Lt: "Lt", ast.LtE: "Le", ast.Gt: "Gt", ast.GtE: "Ge"}


class FormulaError(ValueError):
    """A formula string that kantk refuses (a ``ValueError`` with a one-line message)."""


def parse_formula(
    text: str,
    variables: int | Sequence[Any] | None = None,
    *,
    allow_comparison: bool = True,
) -> sympy.Basic:
    """Parse a formula string into a sympy expression without running code (see the module notes).

    Args:
        text: The formula, e.g. ``"exp(sin(pi*x1) + x2**2)"`` or ``"jv(0, 20*x1)"``.
        variables: ``n`` for the variables ``x1 .. xn``; a list of names (str or sympy symbols,
            which are used as they are); or ``None`` for any ``xk`` with ``1 <= k <= MAX_VARIABLE_INDEX``.
        allow_comparison: Accept one comparison (``<``, ``<=``, ``>``, ``>=``) as the whole formula.

    Returns:
        A sympy expression (a relational for a comparison).

    Raises:
        FormulaError: (a ``ValueError``) The text is too long, not Python expression syntax,
            uses something outside the whitelist, unknown names, or too large numbers or powers.
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is too long ({len(text)} characters; at most {MAX_LENGTH} are accepted)")
    return _Builder(text, variables, allow_comparison).build()


def lambdify_namespace(expr: sympy.Basic) -> dict[str, Callable[..., Any]]:
    """The :mod:`scipy.special` functions that ``expr`` calls by a scipy-only name.

    Pass the result first in ``sympy.lambdify(..., modules=[namespace, "scipy", "numpy"])``.

    Args:
        expr: An expression from :func:`parse_formula` (other undefined functions are left out).

    Returns:
        ``{name: scipy.special.<name>}`` for every name of :data:`SCIPY_FUNCTIONS` in ``expr``; a
        function with :data:`PARAMETER_ARGUMENTS` comes wrapped, refusing values beyond
        ``MAX_PARAMETER`` there (see :func:`bound_parameters`, which also covers the scipy functions
        that sympy's own names, such as ``bessely``, print as).
    """
    from scipy import special
    from sympy.core.function import AppliedUndef

    names = {type(a).__name__ for a in expr.atoms(AppliedUndef)}
    bounded = _bounded_functions()
    return {
        name: bounded.get(id(getattr(special, name)), getattr(special, name))
        for name in sorted(names)
        if name in SCIPY_FUNCTIONS
    }


def bound_parameters(function: Callable[..., Any]) -> Callable[..., Any]:
    """Make a function that :func:`sympy.lambdify` compiled refuse parameter values beyond the bound.

    Every ``scipy.special`` function with :data:`PARAMETER_ARGUMENTS` that the generated code can
    call, by whatever name (sympy prints ``bessely`` as ``yv``, ``jn`` as ``spherical_jn``; a
    printer with ``fully_qualified_modules`` writes ``scipy.special.yv``), is replaced in the
    function's own namespace by a wrapper that first raises a one-line :class:`FormulaError` (a
    ``ValueError``) when a value at one of those positions has ``|p| > MAX_PARAMETER``, so that no
    sample value makes a call run for seconds or hours; within the bound the values are
    scipy's, unchanged.

    Args:
        function: What ``sympy.lambdify`` returned (it has a namespace of its own, which is changed).

    Returns:
        ``function`` itself.

    Raises:
        TypeError: ``function`` was not made by ``sympy.lambdify`` (its namespace is a module's).
    """
    import types

    code = getattr(function, "__code__", None)
    if code is None or not code.co_filename.startswith("<lambdifygenerated"):
        raise TypeError(f"bound_parameters takes a function made by sympy.lambdify, got {function!r}")
    bounded = _bounded_functions()
    namespace = function.__globals__
    names: set[str] = set()
    codes = [code]
    while codes:  # the names the code and any code nested in it (a generator, a lambda) look up
        current = codes.pop()
        names.update(current.co_names)
        codes.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    for name in names:
        value = namespace.get(name)
        wrapper = bounded.get(id(value))
        if wrapper is not None and wrapper.__wrapped__ is value:  # type: ignore[attr-defined]
            namespace[name] = wrapper
        elif isinstance(value, types.ModuleType) and value.__name__.split(".")[0] == "scipy":
            namespace[name] = _BoundedModule(value)  # scipy.special.yv(...) in the generated code
    return function


def _check_parameter(name: str, position: int, value: Any) -> None:
    """Refuse ``value`` (a number or an array of sample values) with any ``|p| > MAX_PARAMETER``."""
    import numpy as np

    values = np.asarray(value)
    with np.errstate(invalid="ignore"):
        outside = np.abs(values) > MAX_PARAMETER  # NaN passes: scipy returns NaN for it at once
    if np.any(outside):
        worst = values[outside].flat[0]
        try:
            shown = f"{float(worst):.6g}"
        except (TypeError, ValueError):
            shown = short_text(worst)
        aliases = " or ".join(f"{alias}()" for alias in _ALIASES.get(name, (name,)))
        raise FormulaError(
            f"{aliases} got {shown} as argument {position + 1}; its evaluation time grows with that "
            f"argument, so kantk accepts values in [-{MAX_PARAMETER}, {MAX_PARAMETER}] there (narrow the "
            "input ranges or rescale that variable)"
        )


#: ``id(scipy.special.<name>)`` -> its wrapper that checks the name's :data:`PARAMETER_ARGUMENTS`;
#: and scipy name -> the formula names it evaluates (for messages: ``bessely() or yv()``). Built on
#: first use (:func:`_bounded_functions`).
_BOUNDED: dict[int, Callable[..., Any]] = {}
_ALIASES: dict[str, tuple[str, ...]] = {}


def _bounded_functions() -> dict[int, Callable[..., Any]]:
    if not _BOUNDED:
        from scipy import special

        aliases: dict[str, tuple[str, ...]] = {}
        for name in sorted(set(SYMPY_FUNCTIONS) | set(SCIPY_FUNCTIONS)):
            scipy_name = _evaluated_by(name)
            if scipy_name in PARAMETER_ARGUMENTS:
                aliases[scipy_name] = (*aliases.get(scipy_name, ()), name)
        _ALIASES.update(aliases)
        for name, positions in PARAMETER_ARGUMENTS.items():
            original = getattr(special, name)
            _BOUNDED[id(original)] = _bounded(name, original, positions)
    return _BOUNDED


def _bounded(name: str, function: Callable[..., Any], positions: tuple[int, ...]) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for k in positions:
            if k < len(args):
                _check_parameter(name, k, args[k])
        return function(*args, **kwargs)

    bounded.__name__ = bounded.__qualname__ = name
    bounded.__doc__ = f"scipy.special.{name}, refusing |argument| > MAX_PARAMETER at positions {positions}."
    bounded.__wrapped__ = function  # type: ignore[attr-defined]
    return bounded


class _BoundedModule:
    """A ``scipy`` module as generated code sees it: its functions with parameter arguments come
    wrapped (:func:`bound_parameters`), its submodules likewise."""

    def __init__(self, module: Any):
        self._module = module

    def __getattr__(self, attr: str) -> Any:
        import types

        value = getattr(self._module, attr)
        if isinstance(value, types.ModuleType):
            return _BoundedModule(value)
        bounded = _bounded_functions().get(id(value))
        return bounded if bounded is not None and bounded.__wrapped__ is value else value  # type: ignore[attr-defined]


def describe_variables(variables: int | Sequence[Any] | None) -> str:
    """How the accepted variables read in messages, e.g. ``"x1..x3"``."""
    if variables is None:
        return f"x1, x2, ... (up to x{MAX_VARIABLE_INDEX})"
    if isinstance(variables, int):
        return f"x1..x{variables}" if variables > 1 else "x1" if variables == 1 else "none"
    return ", ".join(_name_of(v) for v in variables) or "none"


# --- internals ------------------------------------------------------------------------------------


def _name_of(var: Any) -> str:
    return var if isinstance(var, str) else str(getattr(var, "name", var))


def _show(text: str, limit: int = 60) -> str:
    """The formula as it appears in messages: quoted, escaped (one line), shortened."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3]) + "..."


def _describe(node: ast.AST) -> str:
    """What a refused syntax node is, in words."""
    if isinstance(node, ast.Constant):
        kind = type(node.value)
        if kind is str:
            return "a string"
        if kind is bool:
            return f"the boolean {node.value!r}"
        if kind is complex:
            return "a complex number"
        return f"the constant {node.value!r}"
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp)):
        op = node.op
        name = _OPERATOR_NAMES.get(type(op), "and" if isinstance(op, ast.And) else "or")
        return f"the operator '{name}'"
    descriptions = {
        ast.Subscript: "indexing ('[...]')",
        ast.Lambda: "a lambda",
        ast.IfExp: "'if ... else'",
        ast.NamedExpr: "an assignment (':=')",
        ast.Starred: "'*' unpacking",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.JoinedStr: "an f-string",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator",
        ast.Await: "'await'",
        ast.Yield: "'yield'",
        ast.YieldFrom: "'yield'",
        ast.Slice: "a slice",
        ast.FormattedValue: "an f-string",
    }
    return descriptions.get(type(node), f"a {type(node).__name__} expression")


class _Builder:
    """Checks the syntax tree of one formula, then builds its sympy expression."""

    def __init__(self, text: str, variables: int | Sequence[Any] | None, allow_comparison: bool):
        import sympy

        self.sympy = sympy
        self.text = text
        self.show = _show(text)
        self.allow_comparison = allow_comparison
        self.spec = variables
        self.symbols: dict[str, Any] = {}
        self.approximations: dict[Any, float | None] = {}  # constant -> float value, see check_finite
        self.n_vars: int | None = None
        if variables is None:
            self.n_vars = MAX_VARIABLE_INDEX
        elif is_int(variables):
            self.n_vars = min(check_int("the number of variables", variables, 0), MAX_VARIABLE_INDEX)
        elif isinstance(variables, (str, bytes)) or not isinstance(variables, Sequence):
            raise TypeError(f"variables must be a count, a list of names or None, got {variables!r}")
        else:
            for var in variables:
                if isinstance(var, sympy.Symbol):
                    self.symbols[var.name] = var
                elif isinstance(var, str) and var:
                    self.symbols[var] = sympy.Symbol(var)
                else:
                    raise TypeError(f"variable names must be non-empty strings or sympy symbols, got {var!r}")
            if len(self.symbols) < len(variables):  # ['x1', 'x1'] said "unknown variable(s) x2"
                raise ValueError(f"variables lists a name twice: {list(map(str, variables))!r}")

    def fail(self, what: str) -> FormulaError:
        return FormulaError(f"formula {self.show} {what}")

    # -- checking ---------------------------------------------------------------------------------

    def build(self) -> Any:
        source = self.text.strip().replace("^", "**")  # '^' is power, as sympy's convert_xor
        if not source:
            raise FormulaError("formula is empty; write an expression such as exp(sin(pi*x1) + x2**2)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            where = f" at column {exc.offset}" if exc.offset else ""
            message = str(exc.msg).splitlines()[0] if exc.msg else "invalid syntax"
            raise FormulaError(
                f"cannot parse formula {self.show}: {message}{where}; write it in Python syntax, "
                "e.g. exp(sin(pi*x1) + x2**2)"
            ) from None
        except (RecursionError, MemoryError):
            raise self.fail(f"is nested too deeply (at most {MAX_DEPTH} levels are accepted)") from None
        except ValueError as exc:  # e.g. an integer literal over Python's digit limit
            raise FormulaError(f"cannot parse formula {self.show}: {str(exc).splitlines()[0]}") from None
        self.check(tree.body)
        import sympy

        result = self.comparison(tree.body) if isinstance(tree.body, ast.Compare) else self.expr(tree.body)
        infinite = result.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)  # 1/0 is zoo, 0*(1/0) nan
        if infinite or any(m.args[1] == 0 for m in result.atoms(sympy.Mod)):  # x1 % 0
            raise self.fail(
                "has a part that is not a finite number (a division by zero such as 1/0, x1 // 0, "
                "x1 % 0 or 0**-1); write a formula that is finite"
            )
        return result

    def check(self, root: ast.expr) -> None:
        """Refuse anything outside the whitelist, too many nodes or too deep, and unknown names."""
        unknown_vars: list[str] = []
        unknown_funcs: list[str] = []
        count = 0
        stack: list[tuple[ast.AST, int]] = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            count += 1
            if count > MAX_NODES:
                raise self.fail(f"is too large (more than {MAX_NODES} numbers, names and operations)")
            if depth > MAX_DEPTH:
                raise self.fail(f"is nested too deeply (more than {MAX_DEPTH} levels)")
            children: list[tuple[ast.AST, int]] = []
            if isinstance(node, ast.Constant):
                if type(node.value) not in (int, float):
                    raise self.not_accepted(node)
            elif isinstance(node, ast.Name):
                self.check_name(node.id)
                if not self.is_value_name(node.id):
                    if node.id in SYMPY_FUNCTIONS or node.id in SCIPY_FUNCTIONS:
                        raise self.fail(
                            f"uses the function {node.id!r} without calling it; write {node.id}(...)"
                        )
                    unknown_vars.append(node.id)
            elif isinstance(node, ast.BinOp):
                if not isinstance(node.op, (*_SUM, *_PRODUCT, ast.Pow, ast.Mod, ast.FloorDiv)):
                    raise self.not_accepted(node)
                for family in (_SUM, _PRODUCT):  # a chain a + b - c ... nests only one level
                    if isinstance(node.op, family):
                        left = node.left
                        same = isinstance(left, ast.BinOp) and isinstance(left.op, family)
                        children.append((left, depth if same else depth + 1))
                        break
                else:
                    children.append((node.left, depth + 1))
                children.append((node.right, depth + 1))
            elif isinstance(node, ast.UnaryOp):
                if not isinstance(node.op, (ast.UAdd, ast.USub)):
                    raise self.not_accepted(node)
                children.append((node.operand, depth + 1))
            elif isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name):
                    if isinstance(node.func, ast.Attribute):
                        raise self.not_accepted(node.func)
                    raise self.fail(f"calls something that is not a function name; {_ACCEPTED}")
                name = node.func.id
                self.check_name(name)
                if node.keywords:
                    raise self.fail(
                        f"passes keyword arguments to {name}(); only positional arguments are accepted"
                    )
                for arg in node.args:
                    if isinstance(arg, ast.Starred):
                        raise self.not_accepted(arg)
                if name in SYMPY_FUNCTIONS or name in SCIPY_FUNCTIONS:
                    low, high = self.arity(name)
                    if not low <= len(node.args) <= high:
                        wanted = f"{low}" if low == high else f"{low} to {high}"
                        plural = "" if wanted == "1" else "s"
                        raise self.fail(
                            f"calls {name}() with {len(node.args)} argument(s); it takes {wanted} "
                            f"argument{plural}"
                        )
                else:
                    unknown_funcs.append(name)
                children.extend((arg, depth + 1) for arg in node.args)
            elif isinstance(node, ast.Compare):
                if not self.allow_comparison:
                    raise self.fail("has a comparison; comparisons are not accepted here")
                if node is not root:
                    raise self.fail(
                        "has a comparison inside it; a comparison must be the whole formula, e.g. x2 > "
                        "sin(pi*x1)/2"
                    )
                if len(node.ops) != 1:
                    raise self.fail("chains comparisons; use one comparison, e.g. x2 > sin(pi*x1)/2")
                if type(node.ops[0]) not in _COMPARISONS:
                    raise self.fail(
                        f"uses the comparison '{_OPERATOR_NAMES[type(node.ops[0])]}'; accepted: < <= > >="
                    )
                children.extend([(node.left, depth + 1), (node.comparators[0], depth + 1)])
            else:
                raise self.not_accepted(node)
            stack.extend(reversed(children))  # left to right, so the first problem is reported
        if unknown_funcs:
            raise self.fail(
                f"calls unknown function {unknown_funcs[0]!r}; known functions include sin, cos, tan, exp, "
                "log, "
                "sqrt, Abs, erf, gamma, besselj, Min, Max and scipy.special's jv, yv, iv, kv, ellipk, "
                "ellipe, lpmv, "
                "... (the full list: kantk.formula_parser.FUNCTION_NAMES)"
            )
        if unknown_vars:
            names = ", ".join(dict.fromkeys(unknown_vars))
            extra = ""
            if self.n_vars is not None and any(
                (m := _VARIABLE.fullmatch(v)) and int(m.group(1)) > MAX_VARIABLE_INDEX for v in unknown_vars
            ):
                extra = f" (formulas name at most x{MAX_VARIABLE_INDEX})"
            suffix = f" (n_vars={self.spec})" if isinstance(self.spec, int) else ""
            raise self.fail(
                f"uses unknown variable(s) {names}; the variables are {describe_variables(self.spec)}{suffix}"
                f"{extra}; constants: {', '.join(CONSTANTS)}"
            )

    def check_name(self, name: str) -> None:
        if name.startswith("_"):
            raise self.fail(f"uses the name {name!r}; names beginning with '_' are never accepted")

    def not_accepted(self, node: ast.AST) -> FormulaError:
        return self.fail(f"is not an expression kantk accepts: it contains {_describe(node)}; {_ACCEPTED}")

    def is_value_name(self, name: str) -> bool:
        if name in self.symbols:
            return True
        if self.n_vars is not None:
            match = _VARIABLE.fullmatch(name)
            if match and int(match.group(1)) <= self.n_vars:
                return True
        return name in CONSTANTS

    @staticmethod
    def arity(name: str) -> tuple[int, int]:
        if name in SYMPY_FUNCTIONS:
            return SYMPY_FUNCTIONS[name][1:]
        return SCIPY_FUNCTIONS[name], SCIPY_FUNCTIONS[name]

    # -- building ---------------------------------------------------------------------------------

    def value_name(self, name: str) -> Any:
        if name in self.symbols:
            return self.symbols[name]
        if name == "pi":
            return self.sympy.pi
        if name == "E":
            return self.sympy.E
        symbol = self.sympy.Symbol(name)
        self.symbols[name] = symbol
        return symbol

    def expr(self, node: ast.expr) -> Any:
        sp = self.sympy
        if isinstance(node, ast.Constant):
            value = node.value
            # The validator has refused every other constant (strings, booleans, complex numbers).
            assert is_number(value)
            return self.number(value)
        if isinstance(node, ast.Name):
            return self.value_name(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            return operand if isinstance(node.op, ast.UAdd) else self.product(sp.Integer(-1), operand)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, _SUM):
                return self.chain(node, _SUM)
            if isinstance(node.op, _PRODUCT):
                return self.chain(node, _PRODUCT)
            left, right = self.expr(node.left), self.expr(node.right)
            if isinstance(node.op, ast.Pow):
                return self.power(left, right)
            if isinstance(node.op, ast.Mod):
                for operand in (left, right):
                    self.check_finite(operand, "has as an operand of % the constant")
                return sp.Mod(left, right, evaluate=False)
            quotient = self.product(left, self.power(right, sp.Integer(-1)))
            self.check_finite(quotient, "has as the quotient of // the constant")
            return sp.floor(quotient, evaluate=False)
        if isinstance(node, ast.Call):
            return self.call(node.func.id, [self.expr(a) for a in node.args])  # type: ignore[attr-defined]
        raise self.not_accepted(node)  # pragma: no cover - check() refused it already

    def chain(self, node: ast.BinOp, family: tuple[type, ...]) -> Any:
        """``a + b - c + ...`` (or ``a * b / c ...``) as one sympy Add (Mul), without recursion."""
        sp = self.sympy
        ops: list[tuple[ast.operator, ast.expr]] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp) and isinstance(left.op, family):
            ops.append((left.op, left.right))
            left = left.left
        terms = [self.expr(left)]
        for op, right in reversed(ops):
            value = self.expr(right)
            if isinstance(op, ast.Sub):
                value = self.product(sp.Integer(-1), value)
            elif isinstance(op, ast.Div):
                value = self.power(value, sp.Integer(-1))
            terms.append(value)
        return self.checked(sp.Add(*terms)) if family is _SUM else self.product(*terms)

    def number(self, value: float) -> Any:
        sp = self.sympy
        if isinstance(value, int):
            if value.bit_length() > MAX_NUMBER_BITS:
                raise self.too_big()
            return sp.Integer(value)
        if not math.isfinite(value):
            raise self.fail(f"has the float literal {value}, which overflows; floats must be finite")
        return sp.Float(value)

    def too_big(self) -> FormulaError:
        return self.fail(
            f"has an exact number over {MAX_NUMBER_BITS} bits (about {int(MAX_NUMBER_BITS * math.log10(2))} "
            "digits); write a float instead (e.g. 1e40) or a smaller power"
        )

    def product(self, *factors: Any) -> Any:
        """``sympy.Mul(*factors)``, refusing roots of exact numbers that sympy would join (``sqrt(a) *
        sqrt(b)`` is ``sqrt(a*b)``) into one over ``MAX_ROOT_BITS`` bits before it factors them."""
        if sum(_root_bits(f, with_numbers=False) for f in factors) > MAX_ROOT_BITS:
            raise self.too_big_root()
        return self.checked(self.sympy.Mul(*factors))

    def too_big_root(self) -> FormulaError:
        return self.fail(
            f"takes roots of exact numbers over {MAX_ROOT_BITS} bits in all (sympy would factor them); write "
            "such a number as a float (e.g. 1e40**0.5 or 1e20)"
        )

    def check_finite(self, value: Any, what: str) -> None:
        """Refuse a constant ``value`` (no variables) that is not a finite real float64 (see
        :func:`_approximate`): sympy's exact evaluation of a function of it, or of a power with it,
        takes time without bound (``exp(exp(10000))``, ``exp(10**2900)``)."""
        if value.free_symbols:
            return
        approx = _approximate(value, self.approximations)
        if approx is None or not math.isfinite(approx):
            raise self.fail(
                f"{what} {short_text(value)}, which is not a finite real number; constant arguments, bases "
                "and exponents must be finite real numbers (|x| < 1.8e308)"
            )

    def checked(self, expr: Any) -> Any:
        """``expr``, after checking that the exact numbers sympy folded into it stay small."""
        if self.exact_bits(expr) > MAX_NUMBER_BITS:
            raise self.too_big()
        return expr

    def exact_bits(self, expr: Any) -> int:
        """Largest numerator/denominator, in bits, among the numbers within two levels of ``expr``."""
        rational = self.sympy.Rational
        items = [expr, *expr.args, *(inner for arg in expr.args for inner in arg.args)]
        return max(
            (max(int(i.p).bit_length(), int(i.q).bit_length()) for i in items if isinstance(i, rational)),
            default=0,
        )

    def power(self, base: Any, exponent: Any) -> Any:
        """``base ** exponent``, refusing exponents and exact results that are too large."""
        sp = self.sympy
        if exponent.is_Number:
            if not exponent.is_finite:
                raise self.fail(f"has the exponent {exponent}, not a finite number")
            if bool(abs(exponent) > MAX_EXPONENT):
                raise self.fail(
                    f"has the exponent {short_text(exponent)}; numeric exponents must lie in "
                    f"[-{MAX_EXPONENT}, {MAX_EXPONENT}]"
                )
            if self.exact_bits(base) * math.ceil(abs(float(exponent))) > MAX_NUMBER_BITS:
                raise self.too_big()
            if (
                exponent.is_Rational
                and not exponent.is_Integer
                and _root_bits(base, with_numbers=True) > MAX_ROOT_BITS
            ):
                raise self.too_big_root()
            if not base.is_Number:
                self.check_finite(base, "raises to a power the constant")
                if bool(exponent < 0) and _vanishes(base):
                    approx = _approximate(base, self.approximations)
                    rounded = f" ({approx:.3g} in floats: round-off)" if approx else ""
                    raise self.fail(
                        f"divides by the constant {short_text(base)}, which is 0{rounded}; write a formula "
                        "that is finite"
                    )
            return self.checked(sp.Pow(base, exponent))
        if not exponent.free_symbols:  # pi, sqrt(2), 3*sin(7): leave unevaluated, numpy computes it
            self.check_finite(exponent, "has the constant exponent")
            self.check_finite(base, "raises to a power the constant")
            return sp.Pow(base, exponent, evaluate=False)
        self.check_finite(base, "raises to a power the constant")
        return self.checked(sp.Pow(base, exponent))

    def call(self, name: str, args: list[Any]) -> Any:
        sp = self.sympy
        for k in ORDER_ARGUMENTS.get(name, ()):
            order = args[k]
            if not (order.is_Number and order.is_finite and bool(abs(order) <= MAX_ORDER)):
                raise self.fail(
                    f"calls {name}() with {short_text(order)} as argument {k + 1}; that degree/order must "
                    f"be a number from -{MAX_ORDER} to {MAX_ORDER}"
                )
        for k in _parameter_positions(name):
            value = args[k]
            if value.free_symbols:
                continue  # a variable: checked on its values when evaluated (bound_parameters)
            approx = _approximate(value, self.approximations)
            if approx is not None and not abs(approx) <= MAX_PARAMETER:  # NaN is outside too
                raise self.fail(
                    f"calls {name}() with {approx:.6g} as argument {k + 1}; its evaluation time grows with "
                    f"that argument, which must lie in [-{MAX_PARAMETER}, {MAX_PARAMETER}]"
                )
        if name not in CONSTANT_FUNCTIONS and not any(a.free_symbols for a in args):
            return self.constant_call(name, args)
        for arg in args:
            self.check_finite(arg, f"calls {name}() with the constant argument")
        if name in SYMPY_FUNCTIONS:
            attr = SYMPY_FUNCTIONS[name][0]
            if attr == "sqrt":
                return self.power(args[0], sp.Rational(1, 2))
            if attr == "cbrt":
                return self.power(args[0], sp.Rational(1, 3))
            if attr == "root":
                return self.power(args[0], self.power(args[1], sp.Integer(-1)))
            if attr == "log":
                log = sp.log(args[0], evaluate=False)
                self.check_constant_value(name, log, args[:1])
                if len(args) == 1:
                    return log
                return self.product(log, self.power(sp.log(args[1], evaluate=False), sp.Integer(-1)))
            value = getattr(sp, attr)(*args, evaluate=False)
            self.check_constant_value(name, value, args)
            return value
        return sp.Function(name)(*args)  # scipy.special name: evaluated by lambdify_namespace()

    def check_constant_value(self, name: str, value: Any, args: list[Any]) -> None:
        """Refuse an elementary function of constants whose value is not a finite real number:
        ``cot(0)``, ``exp(1000)`` (sympy fails on them: ZeroDivisionError), ``log(0)``, ``asin(2)``
        (math has no real value there)."""
        if not value.free_symbols:
            approx = _approximate(value, self.approximations)
            known = [_approximate(a, self.approximations) for a in args]
            undefined = (
                approx is None
                and type(value).__name__ in _FLOAT_FUNCTIONS
                and all(v is not None and math.isfinite(v) for v in known)
            )
            if undefined or (approx is not None and not math.isfinite(approx)):
                raise self.fail(
                    f"calls {name}() with constant arguments where its value, {short_text(value)}, is not a "
                    "finite real number (a pole, outside its domain, or beyond the float range); "
                    "constants must be finite"
                )

    def constant_call(self, name: str, args: list[Any]) -> Any:
        """A special function of constants (``gamma(1/2)``, ``factorial(3)``, ``besselk(1, 2)``) as
        the float scipy computes (bounded time; sympy's exact evaluation is not: ``polygamma(-1000,
        1/3)``); refused for a function without a scipy twin (:func:`_scipy_constant`), or where the
        arguments or the value are not finite real numbers."""
        import warnings

        import numpy as np

        values = [_approximate(a, self.approximations) for a in args]
        function = _scipy_constant(name)
        if function is None or any(v is None or not math.isfinite(v) for v in values):
            raise self.fail(
                f"calls the special function {name}() with constant arguments only, which kantk cannot "
                "evaluate in bounded time: write the constant as a number (gamma, factorial, binomial, "
                "zeta, beta, the Bessel functions, scipy.special names and sin, exp, log, ... accept "
                "finite constants)"
            )
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = complex(function(*values))
            except (ValueError, TypeError, OverflowError, ArithmeticError):
                value = complex(math.nan)
        if value.imag != 0 or not math.isfinite(value.real):
            raise self.fail(
                f"calls {name}() with constant arguments where its value is not a finite real number "
                "(a pole, outside its domain, or beyond the float range); constants must be finite"
            )
        return self.sympy.Float(value.real)

    def comparison(self, node: ast.Compare) -> Any:
        left, right = self.expr(node.left), self.expr(node.comparators[0])
        relation = getattr(self.sympy, _COMPARISONS[type(node.ops[0])])
        return relation(left, right, evaluate=False)


#: Formula name -> ``scipy.special`` name, for the special functions that take constants only
#: (:meth:`_Builder.constant_call`); every :data:`SCIPY_FUNCTIONS` name is its own twin.
_SCIPY_TWINS = {
    "gamma": "gamma",
    "loggamma": "gammaln",
    "digamma": "psi",
    "zeta": "zeta",
    "beta": "beta",
    "binomial": "binom",
    "polygamma": "polygamma",
    "besselj": "jv",
    "bessely": "yv",
    "besseli": "iv",
    "besselk": "kv",
    "jn": "spherical_jn",  # sympy's jn and yn are the spherical Bessel functions, as lambdify prints them
    "yn": "spherical_yn",
    "erfi": "erfi",
    "erfinv": "erfinv",
    "erfcinv": "erfcinv",
    "airyai": "airy",
    "Si": "sici",
    "Ci": "sici",
}


def _evaluated_by(name: str) -> str | None:
    """The ``scipy.special`` function that evaluates formula function ``name`` (where it has
    :data:`PARAMETER_ARGUMENTS` at the same positions), or ``None``."""
    if name in SCIPY_FUNCTIONS:
        return name
    if name == "assoc_laguerre":  # sympy's assoc_laguerre(n, alpha, x) prints as eval_genlaguerre
        return "eval_genlaguerre"
    return _SCIPY_TWINS.get(name)


def _parameter_positions(name: str) -> tuple[int, ...]:
    """Positions of the arguments of formula function ``name`` bounded by ``MAX_PARAMETER``."""
    return PARAMETER_ARGUMENTS.get(_evaluated_by(name) or "", ())


def _scipy_constant(name: str) -> Callable[..., Any] | None:
    """The float function a special function of constants is computed with, or ``None``."""
    from scipy import special

    if name == "factorial":
        return lambda n: special.gamma(n + 1.0)
    if name == "airyai":
        return lambda z: special.airy(z)[0]
    if name in ("Si", "Ci"):
        k = 0 if name == "Si" else 1
        return lambda z: special.sici(z)[k]
    twin = _SCIPY_TWINS.get(name, name if name in SCIPY_FUNCTIONS else None)
    return None if twin is None else getattr(special, twin, None)


#: What ``sympy.lambdify`` (and printing, which evaluates constant terms) raises for a formula it
#: cannot compile: a function the backend's printer lacks (``NotImplementedError``), complex
#: infinity (``KeyError: 'ComplexInfinity'``), numbers too large or deep (``OverflowError``,
#: ``RecursionError``), a pole of a constant (``ZeroDivisionError``), ...
LAMBDIFY_ERRORS: tuple[type[BaseException], ...] = (
    NotImplementedError,
    KeyError,
    NameError,
    TypeError,
    ValueError,
    SyntaxError,
    AttributeError,
    RecursionError,
    ArithmeticError,
)


def short_text(value: Any, limit: int = 30) -> str:
    """``str(value)`` for a one-line message, cut to ``limit`` characters; sympy's printer
    evaluates the terms of a sum to order them, which may fail (``1 + cot(0)``): then ``srepr``."""
    try:
        text = str(value)
    except (ArithmeticError, ValueError, TypeError, AttributeError, RecursionError):
        from sympy import srepr

        text = srepr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _root_bits(expr: Any, with_numbers: bool) -> int:
    """Bits (numerator plus denominator) of the exact numbers under fractional powers among the
    factors of ``expr``, and (``with_numbers``) of its exact factors, which a fractional power of
    ``expr`` would put under one."""
    total = 0
    for factor in expr.args if expr.is_Mul else (expr,):
        number = None
        if factor.is_Pow and factor.exp.is_Rational and not factor.exp.is_Integer:
            number = factor.base
        elif with_numbers:
            number = factor
        if number is not None and number.is_Rational:
            total += abs(int(number.p)).bit_length() + int(number.q).bit_length()
    return total


def _inverse(fn: Callable[[float], float]) -> Callable[[float], float]:
    """``v -> fn(1 / v)`` (acot, asec, ...); ``1/0`` is infinite, as sympy's ``zoo``."""
    return lambda v: fn(1.0 / v) if v != 0 else fn(math.inf)


#: sympy function class name -> its value on floats (Python's math only: bounded time), for
#: :func:`_approximate`. A ``ValueError`` means "not real"; an ``OverflowError`` "too large".
_FLOAT_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "cot": lambda v: 1.0 / math.tan(v),
    "sec": lambda v: 1.0 / math.cos(v),
    "csc": lambda v: 1.0 / math.sin(v),
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "acot": _inverse(math.atan),
    "asec": _inverse(math.acos),
    "acsc": _inverse(math.asin),
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "coth": lambda v: 1.0 / math.tanh(v),
    "sech": lambda v: 0.0 if abs(v) > 800 else 1.0 / math.cosh(v),
    "csch": lambda v: 0.0 if abs(v) > 800 else 1.0 / math.sinh(v),
    "asinh": math.asinh,
    "acosh": math.acosh,
    "atanh": math.atanh,
    "acoth": _inverse(math.atanh),
    "asech": _inverse(math.acosh),
    "acsch": _inverse(math.asinh),
    "exp": math.exp,
    "log": math.log,
    "Abs": abs,
    "sign": lambda v: math.copysign(1.0, v) if v else 0.0,
    "floor": lambda v: float(math.floor(v)),
    "ceiling": lambda v: float(math.ceil(v)),
    "Min": lambda *vs: min(vs),
    "Max": lambda *vs: max(vs),
    "atan2": math.atan2,
    "Mod": lambda a, b: a % b,
    "sinc": lambda v: math.sin(v) / v if v else 1.0,
    "Heaviside": lambda v, h=0.5: 0.0 if v < 0 else 1.0 if v > 0 else h,
    "erf": math.erf,
    "erfc": math.erfc,
}


#: Working precision (bits) up to which :func:`_vanishes` has sympy evaluate a constant, and the
#: largest constant (sympy operations) it judges: its evaluation time grows with the nesting.
VANISH_BITS, VANISH_MAX_OPS = 200, 40


def _vanishes(constant: Any) -> bool:
    """Whether a constant expression that floats put near 0 is 0: ``sin(pi)``, ``1 - cos(0)``
    (1.2e-16 and 0.0 in floats: ``x1/sin(pi)`` made labels of 8e15 and a model of ``inf``).

    sympy's arbitrary-precision evaluation must find no significant digit, and mpmath's value must
    shrink with the precision (at 60 and 120 digits): a 0 is round-off at any precision, a small
    value that is not 0 (``log(1 + 1e-40)``, which sympy's evalf also calls 0) stays. A constant
    of more than :data:`VANISH_MAX_OPS` operations is not judged (its evaluation time grows with
    its nesting)."""
    import sympy

    if sympy.count_ops(constant) > VANISH_MAX_OPS:
        return False
    try:
        value = constant.evalf(30, maxn=VANISH_BITS)
    except Exception:  # noqa: BLE001 - sympy's evaluation of unusual constants: not judged
        return False
    if not (value.is_zero or (value.is_Float and value._prec <= 1)):  # 0.e-152: zero to its precision
        return False
    import mpmath  # type: ignore[import-untyped]

    try:
        values = []
        for digits in (60, 120):
            with mpmath.workdps(digits):
                values.append(abs(sympy.lambdify([], constant, "mpmath")()))
    except Exception:  # noqa: BLE001 - e.g. an AttributeError for csch of a Float: evalf's verdict
        return True
    coarse, fine = values  # an exact 0 at either precision is cancellation: a 0 too
    return bool(coarse == 0 or fine == 0 or fine < coarse * mpmath.mpf(10) ** -30)


def _approximate(expr: Any, memo: dict[Any, float | None]) -> float | None:
    """The value of a constant expression the parser built, in Python floats (bounded time, unlike
    sympy's ``evalf``): ``inf`` or NaN where it overflows or is undefined, ``None`` where it is not
    real or holds something not in :data:`_FLOAT_FUNCTIONS`."""
    if expr in memo:
        return memo[expr]
    value: float | None = None
    try:
        if expr.is_Rational:
            value = int(expr.p) / int(expr.q)
        elif expr.is_Number or expr.is_NumberSymbol:  # floats, pi, E, oo, nan; float(zoo) is a TypeError
            value = float(expr)
        elif expr.args and (
            expr.is_Add or expr.is_Mul or expr.is_Pow or type(expr).__name__ in _FLOAT_FUNCTIONS
        ):
            args = [_approximate(a, memo) for a in expr.args]
            if all(a is not None for a in args):
                value = _combine(expr, args)  # type: ignore[arg-type]
    except OverflowError:
        value = math.inf
    except (ValueError, TypeError):
        value = None
    except ZeroDivisionError:
        value = math.nan
    if isinstance(value, complex):
        value = None
    memo[expr] = value
    return value


def _combine(expr: Any, args: list[float]) -> float:
    if expr.is_Add:
        return sum(args)
    if expr.is_Mul:
        return math.prod(args)
    if expr.is_Pow:
        return args[0] ** args[1]
    return _FLOAT_FUNCTIONS[type(expr).__name__](*args)
