"""The exact polynomial of low degree through a dataset, if there is one (AI Feynman's first test).

:func:`kantk.discover`'s last resort: a KAN's edges are ``c*f(a*x + b) + d`` of single library
functions, so a polynomial such as ``3*x1**3 - 2*x1 + 1/2`` (a cubic and a line of the same input)
needs two edges of one input into two nodes, which pruning merges into one, and the search fails
on it. A least-squares fit over the monomials finds it directly; :func:`kantk.formula_to_kan` then
builds its KAN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

#: Highest total degree tried (degrees 1, 2, ... in turn; the first exact one wins).
MAX_DEGREE = 4
#: Most monomials in one fit, and at most half the training rows (a fit with as many monomials
#: as rows passes through any data).
MAX_TERMS = 210


def monomials(n_vars: int, degree: int) -> list[tuple[int, ...]]:
    """Exponent tuples of every monomial of ``n_vars`` variables of total degree <= ``degree``,
    the constant first, by degree."""
    out: list[tuple[int, ...]] = []
    for d in range(degree + 1):
        for combo in itertools.combinations_with_replacement(range(n_vars), d):
            powers = [0] * n_vars
            for i in combo:
                powers[i] += 1
            out.append(tuple(powers))
    return out


def exact_polynomial(
    data: dict[str, torch.Tensor],
    var_names: Sequence[str] | None,
    tolerance: float,
    max_degree: int = MAX_DEGREE,
) -> Any | None:
    """The polynomial of lowest degree (up to ``max_degree``) whose snapped least-squares fit to
    the training split fits the test split to ``tolerance`` (RMSE), as a sympy expression; None
    when there is none (see :func:`kantk.pipeline.snap_formula` for the snapping).

    Args:
        data: ``train_input`` (n, d), ``train_label`` (n, 1), ``test_input``, ``test_label``.
        var_names: Names of the inputs (default ``x1 .. xd``).
        tolerance: The test RMSE that counts as exact.
    """
    import sympy

    from kantk.pipeline import snap_formula

    x = data["train_input"].detach().to("cpu", torch.float64)
    y = data["train_label"].detach().to("cpu", torch.float64)[:, 0]
    n, d = x.shape
    names = list(var_names) if var_names is not None else [f"x{i + 1}" for i in range(d)]
    symbols = [sympy.Symbol(name) for name in names]
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return None
    # inputs scaled to at most 1 in size: powers of large inputs made the system ill-conditioned
    scale = x.abs().amax(dim=0).clamp_min(1e-300)  # (d,)
    xs = x / scale
    for degree in range(1, max_degree + 1):
        powers = monomials(d, degree)
        if len(powers) > min(MAX_TERMS, n // 2):
            break
        exps = torch.tensor(powers, dtype=torch.float64)  # (terms, d)
        design = torch.prod(xs.unsqueeze(1) ** exps.unsqueeze(0), dim=-1)  # (n, terms)
        coef = torch.linalg.lstsq(design, y.unsqueeze(-1), driver="gelsd").solution[:, 0]
        coef = coef / torch.prod(scale.unsqueeze(0) ** exps, dim=-1)  # back to the inputs' units
        if not bool(torch.isfinite(coef).all()):
            continue
        expr = sympy.Add(
            *(
                sympy.Float(float(c)) * sympy.Mul(*(s**e for s, e in zip(symbols, p)))
                for c, p in zip(coef.tolist(), powers)
                if c != 0 and math.isfinite(c)
            )
        )
        snapped = snap_formula(expr, data, names, tolerance)
        if snapped is not None and snapped.free_symbols:
            return snapped
    return None
