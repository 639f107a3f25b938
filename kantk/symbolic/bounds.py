"""Bounds on the work of turning a KAN into formulas (:func:`kantk.symbolic_formula`).

A model file is untrusted input, and a small one can ask for a formula of unbounded size: each
layer substitutes its inputs' expressions into every edge, so an output's expression tree grows
as the product of the layers' fan-ins (a [1, 2, 2, ..., 2, 1] model of 25 layers: 2^24 copies of
the input), and ``sympy.expand`` of a power of a sum does work that grows as a binomial
coefficient (eight layers of ``x^5``: more than 4 GB). Both are counted before sympy does any
of it:

* :func:`formula_ops`: the operations of every output's formula as built, counted from the
  model's structure (a shared sub-expression counted each time it appears, as sympy's traversals
  visit it); past :data:`MAX_FORMULA_OPS` the formula is refused;
* :func:`expansion_work`: an upper bound on the terms ``sympy.expand`` produces on the way (the
  multinomial terms of every power of a sum, before like terms are collected); past
  :data:`MAX_EXPANSION_TERMS` the expanded forms are not tried, and the formula keeps its compact
  forms (still rounded, checked and equal to the model).
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: Largest formula, in operations of its expression tree, that :func:`kantk.symbolic_formula`
#: builds (rounding and checking it takes about a second per 10,000 operations on a slow CPU).
MAX_FORMULA_OPS = 20_000
#: Operations one edge adds to the expression of its input, ``c * f(a * x + b) + d``.
EDGE_OPS = 5
#: Largest expansion (terms produced on the way, see :func:`expansion_work`) that
#: :func:`kantk.symbolic_formula` tries; beyond it only the compact forms are cleaned.
MAX_EXPANSION_TERMS = 2_000


def formula_ops(model: Any, numeric: list[tuple[int, int, int]]) -> list[int]:
    """Operations of each output's formula as :func:`kantk.symbolic_formula` builds it.

    Args:
        model: The KAN.
        numeric: Its live numeric edges ``(layer, i, j)`` (:func:`kantk.symbolic.formula.numeric_edges`),
            each a term of its own (beside a symbolic function on the same edge, if any).

    Returns:
        One count per output (``widths[-1]``); exact Python ints, however large.
    """
    sizes = [1] * model.widths[0]
    for l, layer in enumerate(model.layers):
        terms = torch.zeros(layer.out_features, layer.in_features, dtype=torch.long)
        for m, i, j in numeric:
            if m == l:
                terms[j, i] += 1
        if layer.has_symbolic:
            terms += (layer.symbolic_mask != 0).cpu().long()
        subnodes = []
        for q in range(layer.out_features):
            edges = [(int(p), int(n)) for p, n in enumerate(terms[q].tolist()) if n]
            subnodes.append(sum(n * (sizes[p] + EDGE_OPS) for p, n in edges) + max(len(edges) - 1, 0))
        layout = layer.nodes
        if layout is None:
            sizes = subnodes
        else:  # a node operation combines its sub-nodes (a product: one operation per factor)
            sizes = [sum(subnodes[s] for s in layout.subnodes(j)) + 1 for j in range(len(layout.ops))]
    return sizes


def check_formula_size(model: Any, numeric: list[tuple[int, int, int]]) -> list[int]:
    """:func:`formula_ops` of ``model``'s outputs, or a ``ValueError`` when one passes
    :data:`MAX_FORMULA_OPS` (checked before sympy builds anything, and by ``kantk symbolic``
    before its fit: the fitted model's formulas have as many terms).

    Raises:
        ValueError: ``"output <q>'s formula would have <n> operations, more than 20,000 ..."``.
    """
    sizes = formula_ops(model, numeric)
    if sizes and max(sizes) > MAX_FORMULA_OPS:
        raise ValueError(
            f"output {sizes.index(max(sizes))}'s formula would have {max(sizes):,} operations, more than "
            f"{MAX_FORMULA_OPS:,} (each layer puts its inputs' formulas into every edge, so the size "
            "multiplies with depth and width); prune the model (kantk.prune) to fewer, narrower layers"
        )
    return sizes


def expansion_work(expr: Any, cap: int = MAX_EXPANSION_TERMS) -> int:
    """An upper bound on the terms ``sympy.expand(expr, deep=True, mul=True, multinomial=True,
    power_exp=True)`` produces on the way, or ``cap + 1`` once it is past ``cap``.

    A sum of ``t`` terms to an integer power ``n`` (either sign: a denominator is expanded too) makes
    ``binomial(t + n - 1, n)`` products; a product multiplies its factors' term counts; a function
    (``exp`` split over a sum included) and a fractional power are one term, their arguments
    expanded inside. The result's like terms are never collected here, so nested powers count
    high: the bound errs towards skipping an expansion.
    """
    import sympy

    memo: dict[Any, int] = {}
    worst = 0

    def terms(e: Any) -> int:
        nonlocal worst
        if e in memo:
            return memo[e]
        if e.is_Atom:
            n = 1
        elif e.is_Add:
            n = sum(terms(a) for a in e.args)
        elif e.is_Mul:
            n = 1
            for a in e.args:
                n = min(n * terms(a), cap + 1)
        elif e.is_Pow and e.exp.is_Integer:
            base, power = terms(e.base), abs(int(e.exp))
            n = _multinomial(base, power, cap) if power > 1 else base
            if e.exp < 0:
                worst = max(worst, n)  # the expanded denominator: one term outside
                n = 1
        else:  # a function, a fractional or symbolic power: one term, arguments expanded inside
            for a in e.args:
                terms(a)
            n = 1
        n = min(n, cap + 1)
        worst = max(worst, n)
        memo[e] = n
        return n

    terms(sympy.sympify(expr))
    return min(worst, cap + 1)


def _multinomial(t: int, n: int, cap: int) -> int:
    """``binomial(t + n - 1, n)`` (the monomials of a ``t``-term sum to the power ``n``), at most
    ``cap + 1``."""
    if t <= 1:
        return t
    if n > cap or t > cap:
        return cap + 1
    return min(math.comb(t + n - 1, n), cap + 1)
