"""B-spline basis of order k on G intervals, with per-input knot vectors.

Two evaluation paths give the same values:

* uniform knots (the default grid): the closed local form. For an input in interval ``j`` only
  the ``k + 1`` bases ``j - k .. j`` are non-zero, and on that interval they are fixed
  polynomials of the fractional position ``t``; they are evaluated by Horner's rule and
  scattered into the dense (batch, in, n) tensor. :meth:`BSplineBasis.linear` fuses this with the
  coefficient matmul in one autograd function that keeps only ``x`` for backward and recomputes
  what it needs there with differentiable ops, so higher derivatives work too.
* non-uniform knots (after a grid update from data): the Cox-de Boor recursion.

Outside the extended grid every basis is zero: values are finite and the layer's base branch
carries the function on. With ``extrapolate="clamp"`` inputs are first clamped to the grid range,
so each spline holds its boundary value outside it (see docs/grids.md).

:meth:`BSplineBasis.refine` moves to a finer grid; on nested grids (the new G a multiple of the
old) it inserts knots exactly with the Oslo algorithm (:func:`insert_knots`).
"""
from __future__ import annotations

import math
import itertools
import threading
from typing import Any, Sequence

import numpy as np
import torch

from kantk.bases.base import Basis, check_refine_size, data_range, edge_values, fit_coefficients
from kantk.plugins import hookimpl
from kantk.types import BasisSpec


def uniform_knots(in_features: int, grid_size: int, order: int, grid_range: Sequence[float]) -> torch.Tensor:
    """Uniform knot vectors with ``order`` extra knots each side.

    Returns:
        (in_features, grid_size + 2 * order + 1), float64.
    """
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    steps = torch.arange(-order, grid_size + order + 1, dtype=torch.float64)
    return (lo + steps * h).expand(in_features, -1).contiguous()


def cox_de_boor(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """Reference B-spline evaluation by the Cox-de Boor recursion (any knot vectors).

    Args:
        x: (batch, in).
        knots: (in, m) non-decreasing knots per input; gives ``m - order - 1`` bases.
        order: Polynomial degree k.

    Returns:
        (batch, in, m - order - 1). Zero outside ``[knots[0], knots[-1])``.
    """
    knots = knots.to(x.dtype)
    xe = x.unsqueeze(-1)  # (batch, in, 1)
    # degree 0: indicator of each knot interval, (batch, in, m - 1)
    basis = ((xe >= knots[:, :-1]) & (xe < knots[:, 1:])).to(x.dtype)
    for d in range(1, order + 1):
        left_den = knots[:, d:-1] - knots[:, : -(d + 1)]  # (in, m - 1 - d)
        right_den = knots[:, d + 1 :] - knots[:, 1:-d]
        left = (xe - knots[:, : -(d + 1)]) / torch.where(left_den > 0, left_den, torch.ones_like(left_den))
        right = (knots[:, d + 1 :] - xe) / torch.where(right_den > 0, right_den, torch.ones_like(right_den))
        left = torch.where(left_den > 0, left, torch.zeros_like(left))
        right = torch.where(right_den > 0, right, torch.zeros_like(right))
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis


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


class _LocalTables:
    """Constants of the uniform local form for one (order, n), dtype and device.

    Row ``j + 1`` (interval ``j`` of the extended grid, clamped to [-1, n + order]) gives the
    basis index of each of the ``order + 1`` local values (clamped into [0, n)) and whether that
    basis exists (1.0) or falls off the grid (0.0).
    """

    def __init__(self, order: int, n: int, dtype: torch.dtype, device: torch.device):
        self.order, self.n = order, n
        poly = _local_polynomials(order)
        self.value_coefs = [[float(c) for c in poly[:, r]] for r in range(order + 1)]
        self.deriv_coefs = [[float(c) for c in poly[:, order + 1 + r]] for r in range(order + 1)]
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
    j = torch.floor(u)
    return j.long(), u - j


def _all_interior(row: torch.Tensor, tables: _LocalTables) -> bool:
    """Whether every input lies where all its k+1 local bases exist (no masking needed)."""
    if row.device.type != "cpu" or torch.compiler.is_compiling():
        return False  # avoid a device sync / graph break; the masked path is always correct
    lo, hi = torch.aminmax(row)
    return int(lo) >= tables.first_interior and int(hi) <= tables.last_interior


def _positions(row: torch.Tensor, tables: _LocalTables, scratch: bool = False, role: Any = "pos") -> torch.Tensor:
    """(batch, in, k+1) basis index of each local value, clamped into [0, n)."""
    flat = row.reshape(-1)
    if scratch:
        out = _scratch(role, (flat.shape[0], tables.order + 1), tables.pos)
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
    if not interior:
        vals = vals * tables.valid.index_select(0, row.reshape(-1)).view_as(vals)
    return vals


def _local_values(
    row: torch.Tensor, t: torch.Tensor, tables: _LocalTables, interior: bool = False, scratch: bool = False,
    role: Any = "pos",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and values of the order+1 non-zero bases per input: pos, vals (batch, in, k+1).

    ``scratch=True`` puts ``pos`` in a reused buffer (it must not be kept).
    """
    return _positions(row, tables, scratch=scratch, role=role), _values(row, t, tables, interior)


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
    pos: torch.Tensor, values: torch.Tensor, width: int, scratch: bool = False, role: Any = "dense"
) -> torch.Tensor:
    """(batch, in, k+1) local values at ``pos`` -> dense (batch, in, width), zeros elsewhere.

    ``scratch=True`` reuses a per-thread buffer (see :func:`_scratch`); only for a result that is
    consumed at once and never kept.
    """
    shape = (*values.shape[:-1], width)
    if scratch:
        dense = _scratch(role, shape, values).zero_()
    else:
        dense = values.new_zeros(shape)
    return dense.scatter_add_(-1, pos, values)


_SCRATCH = threading.local()
_SCRATCH_SLOTS = 12


def _scratch(role: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A per-thread reusable CPU buffer for the big short-lived matrices of the fused layer.

    A fresh multi-megabyte CPU tensor per call costs thousands of page faults (the allocator
    hands large blocks back to the OS); reusing one buffer per role, shape and dtype avoids that.
    The last ``_SCRATCH_SLOTS`` are kept. Other devices have caching allocators already.
    """
    if like.device.type != "cpu":
        return like.new_empty(shape)
    cache: dict = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (role, shape, like.dtype)
    buf = cache.pop(key, None)
    if buf is None:
        buf = like.new_empty(shape)
        while len(cache) >= _SCRATCH_SLOTS:  # forget the least recently used
            cache.pop(next(iter(cache)))
    cache[key] = buf  # most recent last
    return buf


def clear_scratch() -> None:
    """Free this thread's reusable buffers of the fused B-spline layer."""
    _SCRATCH.__dict__.pop("buffers", None)
    _SCRATCH.__dict__.pop("kept", None)


_GENERATION = itertools.count()


def _keep(key: int, dense: torch.Tensor, pos: torch.Tensor) -> int:
    """Remember a layer's last dense matrix and positions for its backward; returns a ticket.

    The buffers are the layer's own (scratch roles keyed by layer), so no other layer overwrites
    them; a second forward of the same layer gets a new ticket, and a backward whose ticket is
    stale rebuilds them instead (e.g. the model was called twice before ``backward``).
    """
    ticket = next(_GENERATION)
    _SCRATCH.__dict__.setdefault("kept", {})[key] = (ticket, dense, pos)
    return ticket


def _kept(key: int, ticket: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    entry = _SCRATCH.__dict__.get("kept", {}).get(key)
    if entry is None or entry[0] != ticket:
        return None
    return entry[1], entry[2]


def _dense_features(x: torch.Tensor, shift: torch.Tensor, inv_h: torch.Tensor, tables: _LocalTables) -> torch.Tensor:
    """Dense (batch, in, n) basis values on a uniform grid (differentiable in x)."""
    row, t = _locate(x, shift, inv_h, tables)
    pos, vals = _local_values(row, t, tables)
    return _scatter_dense(pos, vals, tables.n)


#: Rows per chunk are chosen so one chunk's dense matrix holds about this many elements; a
#: training step then needs O(chunk) scratch memory whatever the batch size.
CHUNK_ELEMENTS = 1 << 22


def _row_chunks(batch: int, per_row: int) -> list[tuple[int, int]]:
    rows = max(1, CHUNK_ELEMENTS // max(1, per_row))
    return [(a, min(a + rows, batch)) for a in range(0, batch, rows)]


class _UniformBSplineLinear(torch.autograd.Function):
    """y = [B(x) | extra] @ W^T for uniform knots: one GEMM per chunk of rows.

    The dense (batch, in, n) matrix is never kept: it lives in a reused scratch buffer, one chunk
    of rows at a time, and backward rebuilds it from ``x`` (only ``x``, ``extra`` and, for a
    single chunk, the (batch, in, k+1) local values are saved). When a graph of the backward is
    requested (double backward, e.g. d2y/dx2 in a physics-informed loss), the backward is
    recomputed from ``x`` with differentiable ops instead.
    """

    @staticmethod
    def forward(ctx, x, extra, weight, shift, inv_h, tables):  # type: ignore[override]
        # x, extra: (batch, in); weight: (out, in, width = n [+1]); shift, inv_h: (in,)
        batch, n_in = x.shape
        width = weight.shape[-1]
        w2t = weight.reshape(weight.shape[0], -1).t()  # (in*width, out)
        chunks = _row_chunks(batch, n_in * width)
        y = x.new_empty(batch, weight.shape[0])
        interiors = []
        vals = None
        single = len(chunks) == 1
        # one chunk: the layer's own buffers, kept for its backward; several: shared, rebuilt
        key = id(tables)
        roles = (("pos", key), ("dense", key)) if single else ("pos", "dense")
        for a, b in chunks:
            row, t = _locate(x[a:b], shift, inv_h, tables)
            interior = _all_interior(row, tables)
            interiors.append(interior)
            pos, vals = _local_values(row, t, tables, interior=interior, scratch=True, role=roles[0])
            dense = _scatter_dense(pos, vals, width, scratch=True, role=roles[1])  # (rows, in, width)
            if extra is not None:
                dense[..., tables.n] = extra[a:b]
            torch.mm(dense.view(b - a, -1), w2t, out=y[a:b])  # (rows, in*width) @ (in*width, out)
        ctx.tables, ctx.interiors, ctx.chunks = tables, interiors, chunks
        ctx.kept = (key, _keep(key, dense, pos)) if single else None
        # small batch: keep (row, t, vals) instead of recomputing them
        ctx.save_for_backward(
            x, extra, weight, shift, inv_h, *((row, t, vals) if single else (None, None, None))
        )
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, extra, weight, shift, inv_h, saved_row, saved_t, saved_vals = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: rebuild from x with a graph
            return _differentiable_backward(ctx, grad_out, x, extra, weight, shift, inv_h)
        tables: _LocalTables = ctx.tables
        batch, n_in = x.shape
        width = weight.shape[-1]
        w2 = weight.reshape(weight.shape[0], -1)  # (out, in*width)
        need_x, need_extra, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and extra is not None, ctx.needs_input_grad[2]
        grad_x = x.new_empty(batch, n_in) if need_x else None
        grad_extra = x.new_empty(batch, n_in) if need_extra else None
        single = len(ctx.chunks) == 1
        grad_w = (torch.empty_like(w2) if single else torch.zeros_like(w2)) if need_w else None
        kept = _kept(*ctx.kept) if ctx.kept is not None else None
        for (a, b), interior in zip(ctx.chunks, ctx.interiors):
            rows = b - a
            if saved_row is not None:
                row, t = saved_row, saved_t
            else:
                row, t = _locate(x[a:b], shift, inv_h, tables)
            g = grad_out[a:b]
            if kept is not None:  # the forward's own dense matrix and positions, untouched since
                dense, pos = kept
            else:
                pos = _positions(row, tables, scratch=True)
                if need_w:
                    vals = saved_vals if saved_vals is not None else _values(row, t, tables, interior)
                    dense = _scatter_dense(pos, vals, width, scratch=True)
                    if extra is not None:
                        dense[..., tables.n] = extra[a:b]
            if need_w:
                if single:
                    torch.mm(g.t(), dense.view(rows, -1), out=grad_w)  # (out, rows) @ (rows, in*width)
                else:
                    grad_w.addmm_(g.t(), dense.view(rows, -1))
            if need_x or need_extra:
                grad_dense = torch.mm(g, w2, out=_scratch("grad", (rows, n_in * width), g)).view(rows, n_in, width)
                if need_x:
                    local = grad_dense.gather(-1, pos)  # (rows, in, k+1)
                    if not interior:
                        local = local * tables.valid.index_select(0, row.reshape(-1)).view_as(local)
                    derivs = _local_derivatives(t, tables)  # d/du, each (rows, in)
                    acc = local[..., 0] * derivs[0]
                    for r in range(1, tables.order + 1):
                        acc = torch.addcmul(acc, local[..., r], derivs[r])
                    torch.mul(acc, inv_h, out=grad_x[a:b])
                if need_extra:
                    grad_extra[a:b] = grad_dense[..., tables.n]
        return grad_x, grad_extra, None if grad_w is None else grad_w.view(weight.shape), None, None, None


def _differentiable_backward(ctx, grad_out, x, extra, weight, shift, inv_h):
    """The backward of :class:`_UniformBSplineLinear` built from differentiable ops (whole batch)."""
    tables: _LocalTables = ctx.tables
    batch, n_in = x.shape
    width = weight.shape[-1]
    interior = all(ctx.interiors)
    row, t = _locate(x, shift, inv_h, tables)
    pos, vals = _local_values(row, t, tables, interior=interior)
    grad_x = grad_extra = grad_w = None
    if ctx.needs_input_grad[2]:
        dense = _scatter_dense(pos, vals, width)
        if extra is not None:
            col = torch.tensor([tables.n], device=x.device)
            dense = dense.index_copy(-1, col, extra.unsqueeze(-1))
        grad_w = (grad_out.t() @ dense.view(batch, -1)).view(weight.shape)  # (out, in, width)
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad_dense = (grad_out @ weight.reshape(weight.shape[0], -1)).view(batch, n_in, width)
        if ctx.needs_input_grad[0]:
            local = grad_dense.gather(-1, pos)  # (batch, in, k+1)
            if not interior:
                local = local * tables.valid.index_select(0, row.reshape(-1)).view_as(local)
            derivs = torch.stack(_local_derivatives(t, tables), dim=-1)  # d/du, (batch, in, k+1)
            grad_x = (local * derivs).sum(-1) * inv_h
        if extra is not None and ctx.needs_input_grad[1]:
            grad_extra = grad_dense[..., tables.n]
    return grad_x, grad_extra, grad_w, None, None, None


#: Accepted values of ``BSplineBasis(extrapolate=...)``.
EXTRAPOLATIONS = ("zero", "clamp")


def _cardinal_cubic_linear(x, extra, weight, shift, inv_h):
    """[B(x) | extra] @ W^T for cubic B-splines on a uniform grid, as plain element-wise ops.

    Basis i is the cardinal cubic B-spline ``N(u - i)``, ``N(s) = ((2-a)_+^3 - 4 (1-a)_+^3) / 6``
    with ``a = |s - 2|``, where ``u`` is the position in grid units from the first knot. Eager
    PyTorch runs this as a dozen passes over (batch, in, n); under ``torch.compile`` inductor fuses
    them into one, which is why :meth:`BSplineBasis.linear` uses it only while compiling.

    Args: x, extra: (batch, in); weight: (out, in, n [+1]); shift, inv_h: (in,).
    Returns: (batch, out).
    """
    n = weight.shape[-1] - (extra is not None)
    u = x * inv_h + (shift - 1.0)  # (batch, in)
    centres = torch.arange(n, device=x.device, dtype=x.dtype) + 2.0
    a = (u.unsqueeze(-1) - centres).abs()  # (batch, in, n)
    dense = (torch.relu(2.0 - a) ** 3 - 4.0 * torch.relu(1.0 - a) ** 3) * (1.0 / 6.0)
    if extra is not None:
        dense = torch.cat([dense, extra.unsqueeze(-1)], dim=-1)  # (batch, in, n+1)
    return dense.reshape(x.shape[0], -1) @ weight.reshape(weight.shape[0], -1).t()


#: From this many basis functions per input on, ``sparse="auto"`` gathers the order+1 non-zero
#: coefficient rows per input (an embedding-bag weighted sum, time flat in G) instead of one dense
#: matmul over all G+k functions (time linear in G). Measured crossover on 2 cores: G ~ 60.
SPARSE_MIN_FUNCTIONS = 64


def _sparse_linear(x, weight, extra, extra_weight, shift, inv_h, tables):
    """y[b,q] = sum_{p,r} weight[q, p, pos[b,p,r]] * vals[b,p,r] (+ extra @ extra_weight^T).

    Only the order+1 non-zero bases per input are touched, so the cost does not grow with G.
    First derivatives flow through ``embedding_bag``; it is not twice differentiable, so a model
    that needs d2y/dx2 should use ``sparse=False`` (the fused dense path supports it).

    Args: x, extra: (batch, in); weight: (out, in, n); extra_weight: (out, in).
    Returns: (batch, out).
    """
    batch, n_in = x.shape
    n = weight.shape[-1]
    row, t = _locate(x, shift, inv_h, tables)
    pos = _positions(row, tables)  # (batch, in, k+1)
    vals = _values(row, t, tables, interior=False)  # differentiable in x through t
    flat = pos + (torch.arange(n_in, device=x.device) * n).unsqueeze(-1)  # index into (in*n) rows
    table = weight.reshape(weight.shape[0], -1).t().contiguous()  # (in*n, out)
    y = torch.nn.functional.embedding_bag(
        flat.view(batch, -1), table, per_sample_weights=vals.reshape(batch, -1), mode="sum"
    )
    if extra is not None:
        y = torch.addmm(y, extra, extra_weight.t())
    return y


class BSplineBasis(Basis):
    """B-splines of order ``order`` on ``grid_size`` intervals, ``order`` extra knots each side.

    Args:
        in_features: Number of inputs, each with its own knot vector.
        grid_size: Number of intervals G inside ``grid_range`` (>= 1).
        order: Polynomial degree k (>= 0; 3 is cubic).
        grid_range: (low, high) of the initial uniform grid.
        extrapolate: What the splines do outside the grid range ``[grid[:, k], grid[:, G + k]]``:
            ``"zero"`` (pykan's; they fade out over the k outer knots and are 0 beyond, leaving the
            base branch) or ``"clamp"`` (inputs are clamped to the grid range first, so every
            spline holds its boundary value: continuous, no dead zone for the values).

    Buffers:
        grid: (in_features, G + 2k + 1) knots, non-decreasing per input.
    """

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
        extrapolate: str = "zero",
    ):
        super().__init__(in_features)
        if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
            raise ValueError(f"bspline grid_size must be an int >= 1, got {grid_size!r}")
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            raise ValueError(f"bspline order must be an int >= 0, got {order!r}")
        grid_range = _check_range(grid_range, "bspline")
        if extrapolate not in EXTRAPOLATIONS:
            raise ValueError(
                f"bspline extrapolate must be one of {', '.join(map(repr, EXTRAPOLATIONS))}, got {extrapolate!r}"
            )
        self.extrapolate = extrapolate
        self.grid_size = grid_size
        self.order = order
        self.grid_range = grid_range
        self.register_buffer("grid", uniform_knots(in_features, grid_size, order, grid_range).to(torch.get_default_dtype()))
        # constants of the fast path per (dtype, device); plain attributes, not state
        self._tables: dict[tuple[torch.dtype, torch.device], _LocalTables] = {}
        self._params_cache: dict[torch.dtype, tuple[Any, Any]] = {}
        self._uniform_cache: tuple[int, int, bool] | None = None

    #: ``"auto"``: the sparse gather path for many functions per input (see SPARSE_MIN_FUNCTIONS),
    #: ``True``/``False`` to force it on or off (set on an instance: ``layer.basis.sparse = False``).
    sparse: bool | str = "auto"

    @property
    def num_functions(self) -> int:
        return self.grid_size + self.order

    def config(self) -> dict[str, Any]:
        return {
            "grid_size": self.grid_size,
            "order": self.order,
            "grid_range": list(self.grid_range),
            "extrapolate": self.extrapolate,
        }

    def is_uniform(self) -> bool:
        """Whether every input's knots are equally spaced (then the fast local form is used)."""
        if self.grid.device.type == "meta":  # shape-only tracing: no values to inspect
            return True
        key = (self.grid._version, self.grid.data_ptr())
        if self._uniform_cache is None or self._uniform_cache[:2] != key:
            grid = self.grid.to(torch.float64)
            h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)  # (in, 1) mean spacing
            # equal spacing up to the rounding of the stored knots (float32 grids of fine G)
            eps = torch.finfo(self.grid.dtype).eps
            tol = 1e-6 * h + 4 * eps * grid.abs().amax(dim=-1, keepdim=True)
            uniform = bool(((grid.diff(dim=-1) - h).abs() <= tol).all() and (h > 0).all())
            self._uniform_cache = (*key, uniform)
        return self._uniform_cache[2]

    def _uniform_params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, _LocalTables]:
        """(shift, inv_h, tables) of the fast path; cached until the grid changes."""
        key = (dtype, self.grid.device, self.grid._version, self.grid.data_ptr())
        cached = self._params_cache.get(dtype)
        if cached is None or cached[0] != key or torch.compiler.is_compiling():
            grid = self.grid.to(torch.float64)
            inv_h = (grid.shape[1] - 1) / (grid[:, -1] - grid[:, 0])  # from the span: exact for fine grids
            shift = 1.0 - grid[:, 0] * inv_h  # (in,)
            tkey = (dtype, self.grid.device)
            if tkey not in self._tables:
                self._tables[tkey] = _LocalTables(self.order, self.num_functions, dtype, self.grid.device)
            cached = (key, (shift.to(dtype), inv_h.to(dtype), self._tables[tkey]))
            self._params_cache[dtype] = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extrapolate == "clamp":
            x = self.clamp_to_grid(x)
        if not self.is_uniform():
            return cox_de_boor(x, self.grid, self.order)
        shift, inv_h, tables = self._uniform_params(x.dtype)
        return _dense_features(x, shift, inv_h, tables)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, coef: torch.Tensor, grid_eps: float = 0.02) -> torch.Tensor:
        """Move every input's knots to the samples ``x`` (batch, in); returns refitted coef (out, in, n).

        The new coefficients reproduce the old spline on ``x`` by least squares (float64).
        """
        target = edge_values(self(x), coef)  # (batch, out, in)
        knots = data_knots(x, self.grid_size, self.order, grid_eps).to(self.grid.dtype)
        old = self.grid.clone()
        self.grid.copy_(knots)
        try:
            return fit_coefficients(self(x), target)
        except Exception:
            self.grid.copy_(old)  # leave the basis as it was
            raise

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        extra: torch.Tensor | None = None,
        extra_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.extrapolate == "clamp":
            x = self.clamp_to_grid(x)
        if not self.is_uniform():
            return super().linear(x, weight, extra, extra_weight)
        shift, inv_h, tables = self._uniform_params(x.dtype)
        if self.sparse is True or (self.sparse == "auto" and self.num_functions >= SPARSE_MIN_FUNCTIONS):
            return _sparse_linear(x, weight, extra, extra_weight, shift, inv_h, tables)
        if extra is not None:
            # the base branch rides along as one more column: a single GEMM for the whole layer
            weight = torch.cat([weight, extra_weight.unsqueeze(-1)], dim=-1)  # (out, in, n+1)
        if self.order == 3 and torch.compiler.is_compiling():
            # under torch.compile: plain element-wise ops that inductor fuses into one kernel
            return _cardinal_cubic_linear(x, extra, weight, shift, inv_h)
        return _UniformBSplineLinear.apply(x, extra, weight, shift, inv_h, tables)

    def clamp_to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp inputs to the grid range ``[grid[:, k], grid[:, G + k]]`` (``extrapolate="clamp"``).

        The upper end moves one ulp inwards: the last interval is half-open, and for order 0 the
        end itself would fall outside every basis.

        Args:
            x: (batch, in).

        Returns:
            (batch, in), differentiable (gradient 0 where clamped).
        """
        lo = self.grid[:, self.order].to(x.dtype)  # (in,)
        hi = self.grid[:, self.grid_size + self.order].to(x.dtype)
        return torch.clamp(x, lo, torch.nextafter(hi, lo))

    @torch.no_grad()
    def refine(
        self, size: int, coef: torch.Tensor, *, uniform: bool | None = None
    ) -> tuple["BSplineBasis", torch.Tensor]:
        """A copy on ``size`` intervals, with coefficients that keep every edge's spline.

        Two ways, chosen by ``uniform``:

        * ``uniform=False``: every old knot stays, outer ones included, and each interval of the
          grid range is split into equal parts (``size // grid_size`` each when ``size`` is a
          multiple, else as evenly as possible, see :func:`split_counts`). The coefficients
          follow by exact knot insertion (:func:`insert_knots`, the Oslo algorithm, float64), so
          the spline is kept to round-off everywhere, for any ``size``. Unless the old grid was
          uniform and ``size`` a multiple, the new knots are not uniform (the Cox-de Boor path).
        * ``uniform=True``: the new grid is uniform over the grid range, with its ``order`` outer
          knots each side at the new spacing, so the fast path stays. When the old grid is
          uniform and ``size`` a multiple of ``grid_size``, the spline is kept exactly on the grid
          range (knot insertion); otherwise the coefficients are a float64 least-squares fit on
          dense samples of the grid range. Outside the grid range the spline fades out within k
          new intervals instead of k old ones, so it changes there.

        The default, ``None``, keeps a uniform grid uniform and refines any other grid (after
        ``update_grid``, which already uses the general path) exactly.

        Args:
            size: The new ``grid_size``; an int >= the current one.
            coef: (out, in, grid_size + order) coefficients on this basis.
            uniform: Make the new grid uniform (``True``), keep every old knot (``False``), or
                follow this grid (``None``).

        Returns:
            The finer basis (same order, ``extrapolate``, dtype and device) and its coefficients
            (out, in, size + order) in ``coef``'s dtype.

        Raises:
            ValueError: ``size`` is not an int >= ``grid_size``, or ``coef`` has the wrong shape.
        """
        size = check_refine_size(size, self.grid_size, "grid_size", "bspline")
        if coef.dim() != 3 or tuple(coef.shape[1:]) != (self.in_features, self.num_functions):
            raise ValueError(
                f"refine expects coef of shape (out, {self.in_features}, {self.num_functions}), "
                f"got {tuple(coef.shape)}"
            )
        k, grid_size = self.order, self.grid_size
        was_uniform = self.is_uniform()
        if uniform is None:
            uniform = was_uniform
        old = self.grid.to(torch.float64)  # (in, G + 2k + 1)
        c64 = coef.to(torch.float64)
        increasing = bool((old.diff(dim=-1) > 0).all())  # knot insertion needs distinct knots
        if not uniform and increasing:
            knots = split_intervals(old, k, split_counts(grid_size, size))
            new_coef = insert_knots(old, c64, knots, k)
        elif uniform and was_uniform and increasing and size % grid_size == 0:
            ratio = size // grid_size
            split = split_intervals(old, k, [ratio] * grid_size, outer=ratio)  # every interval split
            start = k * (ratio - 1)  # keep the k outer knots nearest to the grid range each side
            knots = split[:, start : start + size + 2 * k + 1]
            new_coef = insert_knots(old, c64, knots, k)
        else:
            if uniform:
                lo, hi = old[:, k], old[:, grid_size + k]  # (in,)
                steps = torch.arange(-k, size + k + 1, dtype=torch.float64, device=old.device) / size
                knots = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * steps  # (in, size + 2k + 1)
                first, old_last, last = k, grid_size + k, size + k  # fit on the grid range
            else:  # repeated knots: follow their spacing, keep the outer ones, fit everywhere
                knots = resampled_knots(old, k, size)
                first, old_last, last = 0, old.shape[1] - 1, knots.shape[1] - 1
            x = torch.cat([_interval_samples(old, first, old_last), _interval_samples(knots, first, last)])
            target = edge_values(local_bspline_features(x, old, k), c64)  # (samples, out, in)
            new_coef = fit_coefficients(local_bspline_features(x, knots, k), target)
        finer = BSplineBasis(
            self.in_features, grid_size=size, order=k, grid_range=self.grid_range,
            extrapolate=self.extrapolate,
        )
        finer.grid = knots.to(self.grid)  # same dtype and device as this grid
        if "sparse" in vars(self):  # an evaluation-path choice set on this instance
            finer.sparse = self.sparse
        return finer, new_coef.to(coef.dtype)

def data_knots(x: torch.Tensor, grid_size: int, order: int, grid_eps: float = 0.02) -> torch.Tensor:
    """Knots that follow the samples: pykan's mix of uniform and quantile grid points.

    ``grid_eps * uniform(min, max) + (1 - grid_eps) * quantiles`` for the G + 1 interior knots,
    then ``order`` knots each side at the mean spacing. Strictly increasing whenever
    ``grid_eps > 0`` (constant inputs get a small window around their value).

    Args:
        x: (batch, in) samples.

    Returns:
        (in, G + 2k + 1) in ``x``'s dtype.
    """
    if not 0.0 <= grid_eps <= 1.0:
        raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps!r}")
    x = x.to(torch.float64)
    lo, hi = data_range(x)  # (in,)
    levels = torch.linspace(0, 1, grid_size + 1, dtype=torch.float64, device=x.device)
    uniform = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * levels  # (in, G+1)
    adaptive = torch.quantile(x.clamp(lo, hi), levels, dim=0).t()  # (in, G+1)
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    inner = grid_eps * uniform + (1 - grid_eps) * adaptive
    h = (inner[:, -1:] - inner[:, :1]) / grid_size  # (in, 1)
    steps = torch.arange(1, order + 1, dtype=torch.float64, device=x.device)
    left = inner[:, :1] - h * steps.flip(0)
    right = inner[:, -1:] + h * steps
    return torch.cat([left, inner, right], dim=-1)


def split_counts(grid_size: int, size: int) -> list[int]:
    """Into how many parts each of ``grid_size`` intervals is split to make ``size`` (>= grid_size).

    ``size // grid_size`` each when it divides; otherwise spread as evenly (and symmetrically) as
    rounding allows, e.g. 3 -> 5 gives [2, 1, 2].
    """
    edges = [math.floor(i * size / grid_size + 0.5) for i in range(grid_size + 1)]
    return [b - a for a, b in zip(edges, edges[1:])]


def split_intervals(knots: torch.Tensor, order: int, parts: Sequence[int], outer: int = 1) -> torch.Tensor:
    """Split interval ``i`` of the grid range into ``parts[i]`` equal parts, the outer ones into ``outer``.

    Args:
        knots: (in, G + 2k + 1) knot vectors with ``order`` = k outer knots each side.
        parts: G positive ints.

    Returns:
        (in, sum(parts) + 2k * outer + 1), containing every old knot.
    """
    k = order
    counts = [outer] * k + list(parts) + [outer] * k
    pieces = [knots[:, :1]]
    for i, count in enumerate(counts):
        a, b = knots[:, i : i + 1], knots[:, i + 1 : i + 2]  # (in, 1)
        frac = torch.arange(1, count + 1, dtype=knots.dtype, device=knots.device) / count
        pieces.append(a + (b - a) * frac)  # ends exactly at b
        pieces[-1][:, -1:] = b
    return torch.cat(pieces, dim=-1)


def resampled_knots(knots: torch.Tensor, order: int, grid_size: int) -> torch.Tensor:
    """Knots for ``grid_size`` intervals that follow the spacing of the given ones, outer knots kept.

    The new interior knots interpolate the old interior knots linearly at the fractional
    positions ``j * G_old / grid_size``, so they keep the density of a grid adapted to data.

    Args:
        knots: (in, G_old + 2k + 1) knot vectors with ``order`` = k outer knots each side.

    Returns:
        (in, grid_size + 2k + 1) float64.
    """
    knots = knots.to(torch.float64)
    k = order
    old_size = knots.shape[1] - 2 * k - 1
    inner = knots[:, k : k + old_size + 1]  # (in, G_old + 1)
    pos = torch.arange(grid_size + 1, dtype=torch.float64, device=knots.device) * (old_size / grid_size)
    j = pos.floor().long().clamp(max=old_size - 1)
    new_inner = inner[:, j] + (inner[:, j + 1] - inner[:, j]) * (pos - j)  # (in, grid_size + 1)
    new_inner[:, 0], new_inner[:, -1] = inner[:, 0], inner[:, -1]
    return torch.cat([knots[:, :k], new_inner, knots[:, old_size + k + 1 :]], dim=-1)


def insert_knots(
    knots: torch.Tensor, coef: torch.Tensor, new_knots: torch.Tensor, order: int
) -> torch.Tensor:
    """Coefficients of the same spline on a refined knot vector (the Oslo algorithm), in float64.

    New coefficient ``j`` is the blossom of the old spline's polynomial piece at ``new_knots[j]``,
    evaluated at ``new_knots[j+1 .. j+k]`` by a de Boor-like recursion. Outside the old knots the
    spline is 0, which the recursion sees as zero coefficients of virtual B-splines.

    Every old knot strictly inside ``(new_knots[:, 0], new_knots[:, -1])`` must be a new knot too,
    and the new ends must lie within the old ones. The result then reproduces the old spline
    exactly (to round-off) on ``[new_knots[:, k], new_knots[:, -k-1]]``, and everywhere when the
    ends coincide.

    Args:
        knots: (in, m) strictly increasing old knots.
        coef: (out, in, m - order - 1).
        new_knots: (in, m') refined knots.
        order: Polynomial degree k.

    Returns:
        (out, in, m' - order - 1) float64.
    """
    k = order
    t = knots.to(torch.float64)
    tau = new_knots.to(torch.float64)
    c = coef.to(torch.float64)
    n_in, m = t.shape
    n_new = tau.shape[1] - k - 1
    dev = t.device
    # k virtual knots each side (real index i is padded index i + k); they only ever weigh the
    # zero coefficients of virtual B-splines
    pad = ((t[:, -1] - t[:, 0]).abs() + 1.0).unsqueeze(-1)  # (in, 1)
    steps = torch.arange(1, k + 1, dtype=torch.float64, device=dev)
    tp = torch.cat([t[:, :1] - pad * steps.flip(0), t, t[:, -1:] + pad * steps], dim=-1)  # (in, m + 2k)
    cp = torch.nn.functional.pad(c, (k, k))  # (out, in, n + 2k)
    # mu: the old interval holding each new knot, t_mu <= tau_j < t_{mu+1} (real index)
    mu = torch.searchsorted(t.contiguous(), tau[:, :n_new].contiguous(), right=True) - 1
    mu = mu.clamp(0, m - 2)  # (in, n_new)
    # weights of the k+1 old coefficients mu-k .. mu in each new one: run the recursion on the
    # unit vectors, so its cost does not grow with the number of outputs
    eye = torch.eye(k + 1, dtype=torch.float64, device=dev)
    weights = eye.expand(n_in, n_new, k + 1, k + 1)  # (in, n_new, position s, unit)
    for level in range(1, k + 1):
        arg = tau[:, level : level + n_new].unsqueeze(-1)  # tau_{j+level}, (in, n_new, 1)
        s = torch.arange(level, k + 1, device=dev)  # positions still alive
        lo_idx = (mu.unsqueeze(-1) + s).reshape(n_in, -1)  # padded index of t_i, i = mu - k + s
        lo_t = tp.gather(1, lo_idx).view(n_in, n_new, -1)
        hi_t = tp.gather(1, lo_idx + (k + 1 - level)).view(n_in, n_new, -1)
        den = hi_t - lo_t
        alpha = _ratio_or_zero(arg - lo_t, den)
        alpha = alpha.unsqueeze(-1)  # (in, n_new, k - level + 1, 1)
        weights = (1 - alpha) * weights[..., :-1, :] + alpha * weights[..., 1:, :]
    weights = weights[..., 0, :]  # (in, n_new, k + 1)
    out = torch.zeros(c.shape[0], n_in, n_new, dtype=torch.float64, device=dev)
    for s in range(k + 1):  # padded index of old coefficient mu - k + s is mu + s
        idx = (mu + s).unsqueeze(0).expand(c.shape[0], -1, -1)
        out += weights[..., s] * cp.gather(-1, idx)
    return out


def local_bspline_features(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """B-spline values on any knot vectors by de Boor's local recursion (same values as :func:`cox_de_boor`).

    Only the ``order + 1`` bases that are non-zero at each input are computed (O(k^2) work per
    input instead of O(k * m)), then scattered into the dense result. Not differentiable in ``x``
    through the interval search; meant for sampling (least-squares fits), not for training.

    Args:
        x: (batch, in).
        knots: (in, m) non-decreasing knots per input.
        order: Polynomial degree k.

    Returns:
        (batch, in, m - order - 1) in ``x``'s dtype; zero outside ``[knots[0], knots[-1])``.
    """
    k = order
    t = knots.to(x.dtype)
    n_in, m = t.shape
    n = m - k - 1
    # k virtual knots each side (padded index = real index + k) so every interval has k+1 bases
    pad = ((t[:, -1] - t[:, 0]).abs() + 1.0).unsqueeze(-1)
    steps = torch.arange(1, k + 1, dtype=t.dtype, device=t.device)
    tp = torch.cat([t[:, :1] - pad * steps.flip(0), t, t[:, -1:] + pad * steps], dim=-1)  # (in, m + 2k)
    inside = (x >= t[:, 0]) & (x < t[:, -1])  # (batch, in)
    xc = torch.where(inside, x, t[:, 0].expand_as(x))
    j = torch.searchsorted(t.contiguous(), xc.t().contiguous(), right=True).t() - 1  # (batch, in) interval
    j = j.clamp(0, m - 2) + k  # padded index of the interval's left knot
    tpx = tp.unsqueeze(0).expand(x.shape[0], -1, -1)  # (batch, in, m + 2k)

    def knot(offset: int) -> torch.Tensor:
        return tpx.gather(-1, (j + offset).unsqueeze(-1)).squeeze(-1)  # (batch, in)

    left = [None] + [xc - knot(1 - d) for d in range(1, k + 1)]  # left[d] = x - t_{j+1-d}
    right = [None] + [knot(d) - xc for d in range(1, k + 1)]  # right[d] = t_{j+d} - x
    values = [torch.ones_like(xc)]
    for d in range(1, k + 1):
        saved = torch.zeros_like(xc)
        new = []
        for r in range(d):
            den = right[r + 1] + left[d - r]
            temp = _ratio_or_zero(values[r], den)
            new.append(saved + right[r + 1] * temp)
            saved = left[d - r] * temp
        new.append(saved)
        values = new
    local = torch.stack(values, dim=-1) * inside.unsqueeze(-1)  # (batch, in, k+1): bases j-k .. j
    index = (j - k).unsqueeze(-1) - k + torch.arange(k + 1, device=x.device)  # real basis index
    valid = (index >= 0) & (index < n)
    out = x.new_zeros(*x.shape, n)
    return out.scatter_add_(-1, index.clamp(0, n - 1), local * valid)


def _ratio_or_zero(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (repeated or virtual knots)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def _interval_samples(knots: torch.Tensor, first: int, last: int, per: int = 8) -> torch.Tensor:
    """``per`` points inside each knot interval ``first .. last - 1``, as samples (points, in)."""
    left = knots[:, first:last].unsqueeze(-1)  # (in, intervals, 1)
    width = (knots[:, first + 1 : last + 1] - knots[:, first:last]).unsqueeze(-1)
    frac = (torch.arange(per, dtype=knots.dtype, device=knots.device) + 0.5) / per
    return (left + width * frac).reshape(knots.shape[0], -1).t()


def _check_range(grid_range: Sequence[float], who: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ValueError(f"{who} grid_range must be two numbers (low, high), got {grid_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{who} grid_range must be finite with low < high, got {grid_range!r}")
    return (lo, hi)


@hookimpl
def kantk_bases():
    yield BasisSpec("bspline", BSplineBasis, "B-splines of order k on G intervals (pykan's basis)")
