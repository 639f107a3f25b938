"""``kantk.formula_to_kan``: compile a formula into a KAN whose edges are its functions (pykan's kanpiler).

A KAN node sums its incoming edges, and every edge computes ``c * f(a * z + b) + d`` for one node
``z`` of the layer before (a symbolic edge, :func:`kantk.fix_symbolic`). A formula is compiled by
reading it as such sums, from the outside in:

* a sum ``d + t_1 + t_2 + ...`` is one node, each term one edge into it (``d`` goes on the first);
* a term ``c * f(a * u + b)`` with ``f`` in the library (``sin``, ``exp``, ``x^2``, ``1/x``,
  ``sqrt``, ...) is an edge from the node computing ``u``; a variable is the identity edge ``x``;
* ``exp(-k * u**2)`` (``k > 0``) is one ``gaussian`` edge, so ``exp(-theta**2/2)`` needs one layer;
* products go to a multiplication node (``product="mult"``, KAN 2.0's MultKAN: one node whose
  sub-nodes are the factors, each a sum of edges as above; exact for every input, one layer), or,
  in a sum-only KAN, are built from sums:

  - ``"squares"`` (default, defined for every real input): ``c * A * B = c/4 * (A + B)**2 - c/4 *
    (A - B)**2``, two ``x^2`` edges from the nodes ``A + B`` and ``A - B`` (one when they differ
    by a constant). A product of ``n`` factors is split in halves, recursively
    (``2 * ceil(log2(n))`` layers). The difference of squares cancels digits when ``A`` and ``B``
    differ widely in size: ``1000 * 0.001`` comes out 0.969 in float32 (1.0 to round-off
    in float64); use ``product="mult"`` or float64 there;
  - ``"log"`` (fewer layers, for factors that are positive on the inputs you use):
    ``c * prod(F_i ** p_i) = c * exp(sum(p_i * log(F_i)))``, two layers for any number of factors,
    divisions and powers included (an even power ``F ** 2m`` as ``m * log(F**2)``, so ``F`` may be
    negative). Where another factor is zero or negative the model gives NaN. A power with a
    formula as exponent, ``x ** y = exp(y * log(x))``, needs only ``x > 0``: ``y * log(x)``, whose
    factors take either sign, is built by squares.

Layers are then assigned by depth; a node needed further down than its depth is carried by
identity edges. Node pairs without an edge are masked (pruned), so the model computes exactly the
formula (to float round-off) at initialisation, and its affine parameters ``(a, b, c, d)`` are
trainable. Unmask or :func:`kantk.surgery.perturb` to let numeric edges grow.

Formula strings go through :func:`kantk.parse_formula` (a whitelist; nothing runs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kantk._validation import check_choice, check_int, is_int, short_repr
from kantk.formula_parser import parse_formula, short_text
from kantk.model import KAN, MAX_MODEL_NUMBERS, planned_numbers
from kantk.registry import Registry
from kantk.symbolic.library import LibraryArg, resolve_library

#: sympy function -> library function name, for one-argument functions.
FUNCTION_NAMES = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "tanh": "tanh",
    "exp": "exp",
    "log": "log",
    "Abs": "abs",
    "sign": "sgn",
    "asin": "arcsin",
    "acos": "arccos",
    "atan": "arctan",
    "atanh": "arctanh",
}
#: Exponent -> library function name, for powers ``u ** p``.
POWER_NAMES = {
    1: "x",
    2: "x^2",
    3: "x^3",
    4: "x^4",
    5: "x^5",
    -1: "1/x",
    -2: "1/x^2",
    -3: "1/x^3",
    -4: "1/x^4",
    -5: "1/x^5",
    0.5: "sqrt",
    1.5: "x^1.5",
    -0.5: "1/sqrt(x)",
}
#: The ways a product is built (see the module notes).
PRODUCTS = ("squares", "log", "mult")
#: Deepest model formula_to_kan builds (a guard against formulas nested without bound).
MAX_LAYERS = 64
#: Most nodes in one layer.
MAX_WIDTH = 1024


@dataclass
class _Edge:
    source: Any  # node key
    name: str
    affine: list[float]  # a, b, c, d


@dataclass
class _Node:
    key: Any
    depth: int
    edges: list[_Edge] = field(default_factory=list)
    #: A multiplication node: the edges into each of its sub-nodes (one per factor).
    subs: list[list[_Edge]] | None = None


class _Compiler:
    def __init__(self, symbols: Sequence[Any], product: str, constant: str = "0"):
        import sympy

        self.sympy = sympy
        self.symbols = list(symbols)
        self.product = product
        #: The function of the edge that carries a constant: "0", or "x" times c = 0 in a library
        #: without "0" (the "minimal" one said it has no function '0', which the user never wrote)
        self.constant = constant
        self.nodes: dict[Any, _Node] = {s: _Node(s, 0) for s in self.symbols}
        #: Products ``y * log(x)`` that ``x ** y`` becomes under product="log": their factors
        #: take either sign (log of a base below 1, a negative exponent), so they are built by
        #: squares, not by logs of the factors (which gave NaN for 0.5 ** 2).
        self.any_sign: set[Any] = set()

    # -- expressions to nodes ---------------------------------------------------------------------

    def node(self, expr: Any) -> _Node:
        """The node computing ``expr`` (built once per distinct expression)."""
        if expr in self.nodes:
            return self.nodes[expr]
        if expr.is_Symbol:
            raise ValueError(f"the formula uses {expr}, which is not among the variables {self.symbols}")
        if self.product == "mult" and expr.is_Mul:
            return self.mult_node(expr)
        edges = self.edges(expr)
        depth = 1 + max(self.nodes[e.source].depth for e in edges)
        if depth > MAX_LAYERS:
            raise ValueError(
                f"the formula needs more than {MAX_LAYERS} layers; formula_to_kan builds at most"
            )
        node = _Node(expr, depth, edges)
        self.nodes[expr] = node
        return node

    def edges(self, expr: Any) -> list[_Edge]:
        """The edges of a node computing ``expr`` (their sources made into nodes)."""
        const, rest = (expr.as_independent(*self.symbols, as_Add=True)) if expr.is_Add else (0, expr)
        edges: list[_Edge] = []
        for term in self.terms(rest):
            if term.is_number:
                const = const + term
                continue
            edges.extend(self.term_edges(term))
        if not edges:  # a constant: one '0' edge (or 0 * x) from the first input carries it
            a = 1.0 if self.constant in ("0", "x") else 0.0  # another function: c * f(0), c = 0
            edges.append(_Edge(self.symbols[0], self.constant, [a, 0.0, 0.0, 0.0]))
        edges[0].affine[3] += _number(const)
        return self.distinct_sources(edges)

    def terms(self, expr: Any) -> list[Any]:
        """The terms of ``expr`` with every ``k * (sum)`` spread out: sympy distributes rational
        factors only, so ``pi*(x1 + x2)`` or ``(x1 + 1)/sqrt(2)`` is one term around a sum."""
        sympy = self.sympy
        out: list[Any] = []
        for term in sympy.Add.make_args(expr):
            k, core = term.as_independent(*self.symbols, as_Add=False) if term.is_Mul else (1, term)
            if core.is_Add:
                out.extend(self.terms(sympy.Add(*(k * t for t in sympy.Add.make_args(core)))))
            else:
                out.append(term)
        return out

    def mult_node(self, core: Any) -> _Node:
        """The multiplication node of ``core`` (a product without a numeric factor): one
        sub-node per factor, each computing the factor as a sum of edges."""
        if core in self.nodes:
            return self.nodes[core]
        subs = [self.edges(factor) for factor in self.sympy.Mul.make_args(core)]
        depth = 1 + max(self.nodes[e.source].depth for sub in subs for e in sub)
        if depth > MAX_LAYERS:
            raise ValueError(
                f"the formula needs more than {MAX_LAYERS} layers; formula_to_kan builds at most"
            )
        node = _Node(core, depth, [], subs)
        self.nodes[core] = node
        return node

    def distinct_sources(self, edges: list[_Edge]) -> list[_Edge]:
        """One edge per source node: the same function of the same argument is merged (``c`` and
        ``d`` add); another function of a node already used goes through an identity copy of it."""
        out: list[_Edge] = []
        for edge in edges:
            same = [e for e in out if e.source == edge.source]
            if not same:
                out.append(edge)
                continue
            first = same[0]
            if first.name == edge.name and first.affine[:2] == edge.affine[:2]:
                first.affine[2] += edge.affine[2]
                first.affine[3] += edge.affine[3]
                continue
            k = 1
            while any(e.source == ("copy", edge.source, k) for e in out):
                k += 1
            key = ("copy", edge.source, k)
            if key not in self.nodes:
                source = self.nodes[edge.source]
                self.nodes[key] = _Node(
                    key, source.depth + 1, [_Edge(edge.source, "x", [1.0, 0.0, 1.0, 0.0])]
                )
            out.append(_Edge(key, edge.name, edge.affine))
        return out

    def term_edges(self, term: Any) -> list[_Edge]:
        """Edges for ``c * g`` with ``g`` not a sum: a library function, a variable or a product."""
        sympy = self.sympy
        coeff, core = term.as_independent(*self.symbols, as_Add=False) if term.is_Mul else (1, term)
        c = _number(coeff)
        if core.is_Symbol:
            return [_Edge(core, "x", [1.0, 0.0, c, 0.0])]
        if core.is_Mul and self.product == "mult":
            return [_Edge(self.mult_node(core).key, "x", [1.0, 0.0, c, 0.0])]
        if core.is_Mul and core in self.any_sign:
            return self.squares_edges(c, core)
        if core.is_Pow and core.base.is_number and not core.exp.is_number and _number(core.base) > 0:
            return [self.unary("exp", core.exp * sympy.log(core.base), c)]  # 2**x = exp(log(2) x)
        if core.is_Mul or (core.is_Pow and not core.exp.is_number and self.product == "log"):
            return self.product_edges(c, core)  # x ** y = exp(y * log(x)) under product="log"
        if core.is_Pow and core.exp.is_number:
            p = _number(core.exp)
            name = POWER_NAMES.get(int(p) if float(p).is_integer() else p)
            if name is None:
                if self.product == "log":
                    return self.product_edges(c, core)
                raise ValueError(
                    f"cannot compile the power {core}: exponents {sorted(POWER_NAMES)} are supported "
                    "(or use product='log' for positive bases)"
                )
            return [self.unary(name, core.base, c)]
        if core.func == sympy.exp:
            k, inner = _split_scale(core.args[0], self.symbols)
            if k < 0 and inner.is_Pow and inner.exp == 2:  # exp(-k u^2) = gaussian(sqrt(k) u)
                return [self.unary("gaussian", inner.base, c, scale=math.sqrt(-k))]
        name = FUNCTION_NAMES.get(type(core).__name__)
        if name is None or len(core.args) != 1:
            known = ", ".join(sorted(FUNCTION_NAMES))
            hint = "; a power with a formula as exponent needs product='log'" if core.is_Pow else ""
            raise ValueError(
                f"cannot compile {core}: formula_to_kan knows sums, products, numeric powers and the "
                f"functions {known}{hint}"
            )
        return [self.unary(name, core.args[0], c)]

    def unary(self, name: str, arg: Any, c: float, scale: float = 1.0) -> _Edge:
        """The edge ``c * f(a * u + b)`` for ``f(arg)`` with ``arg = (a * u + b) / scale``."""
        sympy = self.sympy
        b, rest = arg.as_independent(*self.symbols, as_Add=True) if arg.is_Add else (0, arg)
        a, u = rest.as_independent(*self.symbols, as_Add=False) if rest.is_Mul else (1, rest)
        if u.is_Add:  # pull a common numeric factor out of the inner sum: 2x + 2y -> 2 (x + y)
            k, u = u.primitive()
            a = a * k
        u = sympy.sympify(u)
        source = self.node(u)
        return _Edge(source.key, name, [_number(a) * scale, _number(b) * scale, c, 0.0])

    def product_edges(self, c: float, core: Any) -> list[_Edge]:
        sympy = self.sympy
        factors = list(sympy.Mul.make_args(core))
        if self.product == "log":
            logs = []
            for f in factors:
                if f.func == sympy.exp:
                    logs.append(f.args[0])
                else:
                    base, p = f.as_base_exp()
                    if p.is_integer and p.is_even:  # positive for any base: p/2 * log(base**2)
                        logs.append(p / 2 * sympy.log(base**2))
                    else:
                        logs.append(p * sympy.log(base))
                    if not p.is_number:  # the exponent is a formula: y * log(x) takes any sign
                        terms = sympy.Add.make_args(logs[-1]) + sympy.Add.make_args(sympy.expand(logs[-1]))
                        for term in terms:
                            self.any_sign.add(term.as_independent(*self.symbols, as_Add=False)[1])
            return [self.unary("exp", sympy.Add(*logs), c)]
        return self.squares_edges(c, core)

    def squares_edges(self, c: float, core: Any) -> list[_Edge]:
        """``c * A * B = c/4 * ((A + B)^2 - (A - B)^2)``, the factors split in two halves."""
        sympy = self.sympy
        factors = list(sympy.Mul.make_args(core))
        half = len(factors) // 2
        left, right = sympy.Mul(*factors[:half]), sympy.Mul(*factors[half:])
        if core in self.any_sign:  # its halves take either sign too: x1**(x2*x3) has x2*x3*log(x1)
            self.any_sign.update(h for h in (left, right) if h.is_Mul)
        edges, const = [], 0.0
        for sign, combined in ((1.0, left + right), (-1.0, left - right)):
            if combined.is_number:  # x1*(x1 + 1): A - B = -1, its square is the constant 1
                const += sign * c / 4 * _number(combined) ** 2
                continue
            edges.append(self.unary("x^2", combined, sign * c / 4))
        edges[0].affine[3] += const  # both constant: A and B would be numbers, not a product
        return edges


def formula_to_kan(
    expr: Any,
    variables: int | Sequence[Any] | None = None,
    *,
    product: str = "squares",
    basis: str = "bspline",
    basis_kwargs: dict[str, Any] | None = None,
    library: LibraryArg = "default",
    seed: int | None = 0,
    dtype: torch.dtype | None = None,
    registry: Registry | None = None,
) -> KAN:
    """A KAN that computes ``expr`` exactly, one symbolic edge per function (pykan's ``expr2kan``).

    Example::

        model = kantk.formula_to_kan("exp(sin(pi*x1) + x2**2)")     # KAN [2, 1, 1]
        kantk.symbolic_formula(model)                                # [exp(x2**2 + sin(pi*x1))]
        kantk.fit(model, data, steps=20)                             # trains (a, b, c, d)

    Args:
        expr: A sympy expression, a formula string (read by :func:`kantk.parse_formula`), or a list
            of them (one output each).
        variables: The inputs, in column order: names or sympy symbols, or ``n`` for ``x1 .. xn``.
            Default: the formula's free symbols, sorted naturally (``x1, x2, ..., x10``). The
            model's inputs are these, in this order, under the default names ``x1 .. xn`` of their
            positions: ``formula_to_kan("x2*x3")`` takes two columns, and
            ``symbolic_formula(model, var_names=["x2", "x3"])`` gives the formula's names back.
        product: How products are built: ``"mult"`` (multiplication nodes, KAN 2.0: the model
            has widths such as ``[2, [0, 1], 1]``), or from sums: ``"squares"`` (all inputs;
            float32 loses digits for factors of very different sizes) or ``"log"`` (fewer layers;
            positive factors only, even powers of any sign). See the module notes.
        basis, basis_kwargs: The basis of the numeric branches (off at first; masked).
        library: Where the edge functions come from (it must hold every function used). The
            formula's functions are mapped to edge functions by the fixed tables
            :data:`FUNCTION_NAMES` and :data:`POWER_NAMES` (the default library's names): a
            plugin library's other functions (``sinh``) cannot be compiled, even when the library
            holds them.
        seed: Seeds the numeric parameters (which the symbolic edges do not use).
        dtype: The model's dtype (default: torch's default dtype).
        registry: Where the basis and library are looked up.

    Returns:
        A :class:`kantk.KAN`: ``model(x)`` equals the formula on every input where the formula is
        real (and, for ``product="log"``, every factor of a product positive), to round-off
        (``"squares"``: the round-off of a difference of squares).

    Raises:
        ValueError: A formula string that is refused, a construct with no edge function (the
            message lists what is supported), or a model past ``MAX_LAYERS``/``MAX_WIDTH`` or
            :data:`kantk.model.MAX_MODEL_NUMBERS` numbers.
    """
    import sympy

    check_choice("product", product, PRODUCTS)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype (torch.float64, ...), got {dtype!r}")
    exprs = list(expr) if isinstance(expr, (list, tuple)) else [expr]
    if not exprs:
        raise ValueError("formula_to_kan needs at least one formula")
    parsed = [_as_expr(e, variables) for e in exprs]
    symbols = _variables(parsed, variables)
    lib = resolve_library(library, registry)

    compiler = _Compiler(symbols, product, _constant_function(lib))
    # every output is a fresh node (two outputs may be the same formula, or a bare variable)
    outputs = []
    for e in parsed:
        e = sympy.sympify(e)
        if not e.free_symbols <= set(symbols):
            extra = sorted(str(s) for s in e.free_symbols - set(symbols))
            raise ValueError(f"the formula uses {', '.join(extra)}, not among the variables {symbols}")
        outputs.append(compiler.edges(e))
    depth = 1 + max(compiler.nodes[edge.source].depth for edges in outputs for edge in edges)

    # layers: node lists by depth; sources shallower than depth - 1 are carried by identity edges
    layers: list[list[Any]] = [list(symbols)] + [[] for _ in range(depth)]
    incoming: dict[tuple[int, Any], list[_Edge]] = {}
    sub_incoming: dict[tuple[int, Any], list[list[_Edge]]] = {}

    def place(key: Any, at: int) -> tuple[int, Any]:
        """Make node ``key`` available in node layer ``at``; returns its (layer, key) slot."""
        node = compiler.nodes[key]
        if node.depth == at:
            slot = (at, key)
            if slot not in incoming:
                incoming[slot] = [
                    _Edge(place(edge.source, at - 1), edge.name, list(edge.affine)) for edge in node.edges
                ]
                if node.subs is not None:  # a multiplication node: the edges of each sub-node
                    sub_incoming[slot] = [
                        [_Edge(place(e.source, at - 1), e.name, list(e.affine)) for e in sub]
                        for sub in node.subs
                    ]
                layers[at].append(key)
            return slot
        if node.depth > at:
            raise AssertionError("a node placed above its depth")
        slot = (at, ("carry", key))
        if slot not in incoming:
            incoming[slot] = [_Edge(place(key, at - 1), "x", [1.0, 0.0, 1.0, 0.0])]
            layers[at].append(("carry", key))
        return slot

    for s in symbols:
        incoming[(0, s)] = []
    for q, edges in enumerate(outputs):
        incoming[(depth, ("output", q))] = [
            _Edge(place(edge.source, depth - 1), edge.name, list(edge.affine)) for edge in edges
        ]
        layers[depth].append(("output", q))
    # pykan's order within a node layer: sum nodes, then multiplication nodes
    for at, keys in enumerate(layers):
        layers[at] = [k for k in keys if (at, k) not in sub_incoming] + [
            k for k in keys if (at, k) in sub_incoming
        ]
    counts = [len(layer) for layer in layers]
    if max(counts) > MAX_WIDTH:
        raise ValueError(
            f"the formula needs a layer of {max(counts)} nodes; formula_to_kan builds at most {MAX_WIDTH}"
        )
    arities = [
        [len(sub_incoming[(at, k)]) for k in keys if (at, k) in sub_incoming]
        for at, keys in enumerate(layers)
    ]
    widths: list[Any] = [n if not ar else [n - len(ar), len(ar)] for n, ar in zip(counts, arities)]

    structure: dict[str, Any] = {
        "basis": basis,
        "basis_kwargs": basis_kwargs,
        "mult_arity": arities if any(arities) else 2,
        "registry": registry,
    }
    numbers = planned_numbers(widths, symbolic=True, **structure)
    if numbers is not None and numbers > MAX_MODEL_NUMBERS:  # before any memory: a formula string is input
        raise ValueError(
            f"the formula needs a model of {numbers:,} numbers (widths {short_repr(widths)}); "
            f"formula_to_kan builds at most {MAX_MODEL_NUMBERS:,} (kantk.model.MAX_MODEL_NUMBERS)"
        )
    model = KAN(widths, seed=seed, **structure)
    if dtype is not None:
        model = model.to(dtype)
    with torch.no_grad():
        for l, layer in enumerate(model.layers):
            layer.mask.zero_()  # only the formula's edges are live
            index_in = {key: p for p, key in enumerate(layers[l])}
            starts = layer.nodes.starts if layer.nodes is not None else range(layer.out_features)
            fixed = [
                (starts[j] + k, index_in[edge.source[1]], lib[edge.name], lib.source(edge.name), edge.affine)
                for j, key in enumerate(layers[l + 1])
                for k, sub in enumerate(sub_incoming.get((l + 1, key), [incoming[(l + 1, key)]]))
                for edge in sub  # the rows of a node: its sub-nodes
            ]
            layer.set_symbolic_edges(fixed)
    return model


# --- internals ------------------------------------------------------------------------------------


def _constant_function(lib: Any) -> str:
    """The library function an edge carrying a constant uses: ``0``, else ``x`` (times c = 0),
    else any function finite at 0 (times c = 0); a library without one names ``0`` (refused
    later with the library's own message)."""
    names = list(lib)
    for name in ("0", "x"):
        if name in names:
            return name
    zero = torch.zeros(1, dtype=torch.float64)
    for name in names:
        with torch.no_grad():
            value = lib[name].torch_fn(zero)
        if bool(torch.isfinite(value).all()):
            return name
    return "0"


def _number(value: Any) -> float:
    """``value`` (a sympy number) as a float; a ``ValueError`` when it is not a finite real number."""
    try:
        try:
            out = float(value)
        except TypeError:  # not real (sqrt(-1), 1/0), or left unevaluated by sympy (Heaviside(1/2))
            out = float(value.doit())
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError):  # OverflowError: 10**400
        out = math.nan
    if not math.isfinite(out):
        raise ValueError(
            f"the formula holds a constant that is not a finite real number: {short_text(value, 60)}; edge "
            "constants must be finite real numbers"
        )
    return out


def _split_scale(arg: Any, symbols: Sequence[Any]) -> tuple[float, Any]:
    """``arg = k * u`` with ``k`` a number (``k = 1`` when ``arg`` is not a product)."""
    if arg.is_Mul:
        k, u = arg.as_independent(*symbols, as_Add=False)
        return _number(k), u
    return 1.0, arg


def _as_expr(item: Any, variables: int | Sequence[Any] | None) -> Any:
    import sympy

    if isinstance(item, str):
        return parse_formula(item, variables, allow_comparison=False)
    if isinstance(item, sympy.Basic):
        if isinstance(item, sympy.core.relational.Relational):
            raise ValueError(f"formula_to_kan needs a formula, not a comparison: {item}")
        return item
    raise TypeError(
        f"formula_to_kan expects a sympy expression or a formula string, got {type(item).__name__}"
    )


def _variables(exprs: Sequence[Any], variables: int | Sequence[Any] | None) -> list[Any]:
    import sympy

    if variables is None:
        free = set().union(*(e.free_symbols for e in exprs))
        if not free:
            raise ValueError("the formula has no variables; pass variables= to say how many inputs it takes")
        return sorted(free, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s.name)])
    if is_int(variables):
        check_int("variables", variables, 1)
        return [sympy.Symbol(f"x{k + 1}") for k in range(variables)]
    if isinstance(variables, (bool, str)) or not isinstance(variables, Sequence):
        raise TypeError(f"variables must be a count or a list of names, got {variables!r}")
    # a name is the formula's symbol of that name, with its assumptions (real=True, positive=True)
    named = {s.name: s for e in exprs for s in sorted(e.free_symbols, key=str)}
    out = []
    for v in variables:
        if isinstance(v, sympy.Symbol):
            out.append(v)
        elif isinstance(v, str) and v:
            out.append(named.get(v, sympy.Symbol(v)))
        else:
            raise ValueError(f"variables must be names or sympy symbols, got {v!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"variables lists a name twice: {variables!r}")
    return out
