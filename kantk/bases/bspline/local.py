"""The closed local form of B-splines on uniform grids: pieces, tables, locating and scattering.

For an input in interval ``j`` only the ``k + 1`` bases ``j - k .. j`` are non-zero, and on that
interval they are fixed polynomials of the fractional position ``t``. Every uniform-grid path
(PyTorch dense and sparse, native) starts from these helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kantk.bases.bspline.workspace import Workspace


def _local_polynomials(order: int) -> np.ndarray:
    """Coefficients of the k+1 non-zero cardinal B-spline pieces and their derivatives.

    On a unit interval with fractional position t, the non-zero bases are r = 0..k (basis
    ``j - k + r``) with value ``sum_p C[p, r] t**p`` and derivative (in grid units)
    ``sum_p C[p, k + 1 + r] t**p``.

    Returns:
        (k + 1, 2 * (k + 1)) float64, rows indexed by the power of t.
    """
    # polys[r] = coefficients (lowest power first) of v_r as a polynomial in t.
    polys = [np.array([1.0])]
    prev_lower: list[np.ndarray] = polys
    for d in range(1, order + 1):
        new = []
        for r in range(d + 1):
            acc = np.zeros(d + 1)
            if r - 1 >= 0:  # (t + d - r) * v_{r-1}
                p = polys[r - 1]
                acc[: len(p)] += (d - r) * p
                acc[1 : len(p) + 1] += p
            if r <= d - 1:  # (1 - t + r) * v_r
                p = polys[r]
                acc[: len(p)] += (1 + r) * p
                acc[1 : len(p) + 1] -= p
            new.append(acc / d)
        prev_lower, polys = polys, new
    k1 = order + 1
    out = np.zeros((k1, 2 * k1))
    for r in range(k1):
        out[:, r] = polys[r]
        if order == 0:
            continue
        deriv = np.zeros(k1)  # N_k'(s) = N_{k-1}(s) - N_{k-1}(s - 1)
        if r - 1 >= 0:
            deriv[: len(prev_lower[r - 1])] += prev_lower[r - 1]
        if r <= order - 1:
            deriv[: len(prev_lower[r])] -= prev_lower[r]
        out[:, k1 + r] = deriv
    return out


def coefficient_table(poly: np.ndarray) -> np.ndarray:
    """The (k+1, 2(k+1)) local polynomial table as the contiguous float64 array the native kernels read."""
    return np.ascontiguousarray(poly, dtype=np.float64)


class _LocalTables:
    """Constants of the uniform local form for one (order, n), dtype and device.

    Row ``j + 1`` (interval ``j`` of the extended grid, clamped to [-1, n + order]) gives the
    basis index of each of the ``order + 1`` local values (clamped into [0, n)) and whether that
    basis exists (1.0) or falls off the grid (0.0).
    """

    def __init__(self, order: int, n: int, dtype: torch.dtype, device: torch.device, extend: bool = False):
        self.order, self.n = order, n
        # extend: rows are clamped into the interior (extrapolate="extend": inputs beyond the
        # grid range use its outermost interval's polynomials, t outside [0, 1), so every input
        # has all k+1 bases; "clamp": the clamped top end stays in the last interval)
        self.extend = extend
        poly = _local_polynomials(order)
        self.value_coefs = [[float(c) for c in poly[:, r]] for r in range(order + 1)]
        self.deriv_coefs = [[float(c) for c in poly[:, order + 1 + r]] for r in range(order + 1)]
        self.native_coefs = coefficient_table(poly)  # what the native kernels read
        j = torch.arange(-1, n + order + 1).unsqueeze(-1)  # (rows, 1)
        pos = j - order + torch.arange(order + 1)  # (rows, k+1)
        self.valid = ((pos >= 0) & (pos < n)).to(device=device, dtype=dtype)
        self.pos = pos.clamp(0, n - 1).to(device)
        # rows whose k+1 bases all exist: intervals order..n-1 of the extended grid
        self.first_interior, self.last_interior = order + 1, n


def _fill_polys(t: torch.Tensor, coefs: list[list[float]], out: torch.Tensor) -> torch.Tensor:
    """out[..., r] = sum_p coefs[r][p] t**p, by Horner's rule, the last op writing in place.

    Writing each value straight into its strided slot avoids a separate interleaving pass.
    Args: t: (batch, in); out: (batch, in, k+1). Returns out.
    """
    for r, c in enumerate(coefs):
        if len(c) == 1:
            out[..., r].fill_(c[0])
            continue
        acc = t * c[-1]
        for cp in reversed(c[1:-1]):
            acc = (acc + cp) * t
        torch.add(acc, c[0], out=out[..., r])
    return out


def _cubic_values(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The four cubic pieces at t, (batch, in) -> out (batch, in, 4), with few passes."""
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    v0 = torch.mul(s * s * s, 1.0 / 6.0, out=out[..., 0])
    v3 = torch.mul(t3, 1.0 / 6.0, out=out[..., 3])
    v1 = torch.add(t3 * 0.5 - t2, 2.0 / 3.0, out=out[..., 1])
    torch.sub(1.0 - v0 - v3, v1, out=out[..., 2])  # partition of unity
    return out


def _cubic_derivatives(t: torch.Tensor) -> list[torch.Tensor]:
    """d/du of the four cubic pieces at t, as four (batch, in) tensors."""
    t2 = t * t
    s = 1.0 - t
    d0 = s * s * -0.5
    d3 = t2 * 0.5
    d1 = t2 * 1.5 - 2.0 * t
    d2 = -(d0 + d1 + d3)  # derivatives of a partition of unity sum to zero
    return [d0, d1, d2, d3]


def _locate(x: torch.Tensor, shift: torch.Tensor, inv_h: torch.Tensor, tables: _LocalTables):
    """Table row (batch, in) int64 and fractional position t (batch, in) of every input.

    ``x * inv_h + shift`` is the position in grid units from one knot before the first
    (``shift = 1 - t0 * inv_h``), so its floor is directly the table row.
    """
    u = torch.addcmul(shift, x, inv_h)
    # keep huge inputs finite and their index in range; out there every basis is zero anyway
    u = u.clamp_(0.0, float(tables.n + tables.order + 1))
    j = torch.floor(u).nan_to_num_(0.0)  # a NaN input gets a valid row and NaN values
    if tables.extend:
        j = j.clamp_(float(tables.first_interior), float(tables.last_interior))
    return j.long(), u - j


def _all_interior(row: torch.Tensor, tables: _LocalTables) -> bool:
    """Whether every input lies where all its k+1 local bases exist (no masking needed)."""
    if tables.extend:
        return True  # rows are clamped into the interior
    if row.device.type != "cpu" or torch.compiler.is_compiling():
        return False  # avoid a device sync / graph break; the masked path is always correct
    lo, hi = torch.aminmax(row)
    return int(lo) >= tables.first_interior and int(hi) <= tables.last_interior


def _positions(
    row: torch.Tensor, tables: _LocalTables, ws: Workspace | None = None, role: Any = "pos"
) -> torch.Tensor:
    """(batch, in, k+1) basis index of each local value, clamped into [0, n).

    With a workspace ``ws`` the result lives in its reused buffer (it must not be kept).
    """
    flat = row.reshape(-1)
    if ws is not None:
        out = ws.scratch(role, (flat.shape[0], tables.order + 1), tables.pos)
        return torch.index_select(tables.pos, 0, flat, out=out).view(*row.shape, tables.order + 1)
    return tables.pos.index_select(0, flat).view(*row.shape, tables.order + 1)


def _values(row: torch.Tensor, t: torch.Tensor, tables: _LocalTables, interior: bool = False) -> torch.Tensor:
    """Values of the order+1 non-zero bases per input (batch, in, k+1), zero for missing bases.

    Differentiable in ``t`` when a graph is being recorded (used for double backward).
    """
    if torch.is_grad_enabled() and t.requires_grad:
        # autograd cannot see through out= writes: build the values functionally
        vals = torch.stack([_horner(c, t) for c in tables.value_coefs], dim=-1)
    else:
        vals = t.new_empty(*t.shape, tables.order + 1)
        if tables.order == 3:
            _cubic_values(t, vals)
        else:
            _fill_polys(t, tables.value_coefs, vals)
    if tables.order == 0:  # a constant piece: still NaN for a NaN input
        vals = vals + t.unsqueeze(-1) * 0.0
    if not interior:
        vals = vals * tables.valid.index_select(0, row.reshape(-1)).view_as(vals)
    return vals


def _local_values(
    row: torch.Tensor,
    t: torch.Tensor,
    tables: _LocalTables,
    interior: bool = False,
    ws: Workspace | None = None,
    role: Any = "pos",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and values of the order+1 non-zero bases per input: pos, vals (batch, in, k+1).

    With a workspace ``ws``, ``pos`` lives in its reused buffer (it must not be kept).
    """
    return _positions(row, tables, ws=ws, role=role), _values(row, t, tables, interior)


def _local_derivatives(t: torch.Tensor, tables: _LocalTables) -> list[torch.Tensor]:
    """d/du of the order+1 local pieces, as (batch, in) tensors (missing bases not masked)."""
    if tables.order == 3 and not (torch.is_grad_enabled() and t.requires_grad):
        return _cubic_derivatives(t)
    return [_horner(c, t) for c in tables.deriv_coefs]


def _horner(coefs: list[float], t: torch.Tensor) -> torch.Tensor:
    """sum_p coefs[p] t**p on a (batch, in) tensor (functional form)."""
    acc = torch.full_like(t, coefs[-1])
    for c in reversed(coefs[:-1]):
        acc = acc * t + c
    return acc


def _scatter_dense(
    pos: torch.Tensor, values: torch.Tensor, width: int, ws: Workspace | None = None, role: Any = "dense"
) -> torch.Tensor:
    """(batch, in, k+1) local values at ``pos`` -> dense (batch, in, width), zeros elsewhere.

    With a workspace ``ws`` the result lives in its reused buffer; only for a result that is
    consumed at once and never kept.
    """
    shape = (*values.shape[:-1], width)
    if ws is not None:
        dense = ws.scratch(role, shape, values).zero_()
    else:
        dense = values.new_zeros(shape)
    return dense.scatter_add_(-1, pos, values)


def _dense_features(
    x: torch.Tensor, shift: torch.Tensor, inv_h: torch.Tensor, tables: _LocalTables
) -> torch.Tensor:
    """Dense (batch, in, n) basis values on a uniform grid (differentiable in x)."""
    row, t = _locate(x, shift, inv_h, tables)
    pos, vals = _local_values(row, t, tables)
    return _scatter_dense(pos, vals, tables.n)
