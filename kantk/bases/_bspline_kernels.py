"""The fast evaluation paths of the B-spline basis on uniform grids (see :mod:`kantk.bases.bspline`).

For an input in interval ``j`` only the ``k + 1`` bases ``j - k .. j`` are non-zero, and on that
interval they are fixed polynomials of the fractional position ``t``. Here: those polynomials,
their tables, the fused autograd function that scatters them into one dense matrix and does the
layer's single GEMM (with reusable scratch buffers and row chunks), the compile-friendly cardinal
cubic form, and the sparse gather path for large grids.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
import torch

from kantk.bases import _native


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

    def __init__(self, order: int, n: int, dtype: torch.dtype, device: torch.device, extend: bool = False):
        self.order, self.n = order, n
        # extrapolate="extend": inputs beyond the grid range use its outermost interval's
        # polynomials (t outside [0, 1)), so every input has all k+1 bases
        self.extend = extend
        poly = _local_polynomials(order)
        self.value_coefs = [[float(c) for c in poly[:, r]] for r in range(order + 1)]
        self.deriv_coefs = [[float(c) for c in poly[:, order + 1 + r]] for r in range(order + 1)]
        self.native_coefs = _native.coefficient_table(poly)  # what the native kernels read
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
    if tables.order == 0:  # a constant piece: still NaN for a NaN input
        vals = vals + t.unsqueeze(-1) * 0.0
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


def _row_chunks(batch: int, per_row: int, min_rows: int = 1) -> list[tuple[int, int]]:
    rows = max(min_rows, CHUNK_ELEMENTS // max(1, per_row))
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
                _add_weight_grad(grad_w, g, dense.view(rows, -1), single)
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


def _add_weight_grad(grad_w: torch.Tensor, g: torch.Tensor, dense: torch.Tensor, single: bool) -> None:
    """grad_w (out, features) = g^T @ dense for the only chunk of rows, += for one of several."""
    if single:
        torch.mm(g.t(), dense, out=grad_w)  # (out, rows) @ (rows, features)
    else:
        grad_w.addmm_(g.t(), dense)


def _native_linear(x, coef, scale, extra, extra_weight, shift, inv_h, tables: _LocalTables) -> torch.Tensor:
    """[B(x) | extra] @ [coef * scale | extra_weight]^T on a uniform grid, by native kernels.

    See :mod:`kantk.bases._native`. The kernels build the dense matrix basis-major,
    (batch, n [+1], in), so that their loops run along the inputs and vectorise; the weight is
    composed (``coef * scale``, base column appended) and laid out the same way in one pass.

    Args: x, extra: (batch, in); coef: (out, in, n); scale, extra_weight: (out, in).
    Returns: (batch, out).
    """
    if extra is not None:
        extra, extra_weight = extra.contiguous(), extra_weight.contiguous()
    return _NativeBSplineLinear.apply(
        x.contiguous(), extra, coef.contiguous(), scale.contiguous(), extra_weight, shift, inv_h, tables
    )


class _NativeBSplineLinear(torch.autograd.Function):
    """y = dense @ W^T with the dense (batch, width, in) matrix and W (out, width, in) built natively.

    Like :class:`_UniformBSplineLinear` (row chunks; the scratch matrix of a single chunk kept
    for the backward, rebuilt from ``x`` otherwise), basis-major and with the weight composition
    ``W = [coef * scale | extra_weight]`` inside, so that its gradients are one native pass too.
    A backward that records a graph (double backward) uses the differentiable formulas of
    :func:`_differentiable_backward`.
    """

    @staticmethod
    def forward(ctx, x, extra, coef, scale, extra_weight, shift, inv_h, tables):  # type: ignore[override]
        batch, n_in = x.shape
        n_out, width = coef.shape[0], tables.n + (extra is not None)
        weight = coef.new_empty(n_out, width, n_in)
        _native.compose_weight(coef, scale, extra_weight, weight)
        w2t = weight.view(n_out, -1).t()  # (width*in, out)
        chunks = _row_chunks(batch, n_in * width)
        single = len(chunks) == 1
        key = id(tables)
        role = ("native", key) if single else "native"
        y = x.new_empty(batch, n_out)
        for a, b in chunks:
            dense = _scratch(role, (b - a, width, n_in), x)
            _native_fill(x[a:b], shift, inv_h, None if extra is None else extra[a:b], tables, dense)
            torch.mm(dense.view(b - a, -1), w2t, out=y[a:b])
        ctx.tables, ctx.chunks, ctx.interiors = tables, chunks, [False]
        ctx.kept = (key, _keep(key, dense, None)) if single else None
        ctx.save_for_backward(x, extra, coef, scale, extra_weight, shift, inv_h, weight)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, extra, coef, scale, extra_weight, shift, inv_h, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            return _native_differentiable_backward(ctx, grad_out, x, extra, coef, scale, extra_weight, shift, inv_h)
        tables: _LocalTables = ctx.tables
        batch, n_in = x.shape
        n, width = tables.n, weight.shape[1]
        w2 = weight.view(weight.shape[0], -1)  # (out, width*in)
        need_x, need_extra = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and extra is not None
        need_coef, need_scale = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        need_ew = ctx.needs_input_grad[4] and extra_weight is not None
        need_w = need_coef or need_scale or need_ew
        grad_x = x.new_empty(batch, n_in) if need_x else None
        grad_extra = x.new_empty(batch, n_in) if need_extra else None
        single = len(ctx.chunks) == 1
        grad_w = None
        if need_w:
            grad_w = _scratch("gradw", tuple(w2.shape), w2)
            if not single:
                grad_w.zero_()
        kept = _kept(*ctx.kept) if ctx.kept is not None else None
        for a, b in ctx.chunks:
            rows = b - a
            g = grad_out[a:b]
            if need_w:
                if kept is not None:  # the forward's own matrix, untouched since
                    dense = kept[0]
                else:
                    dense = _scratch("native", (rows, width, n_in), x)
                    _native_fill(x[a:b], shift, inv_h, None if extra is None else extra[a:b], tables, dense)
                _add_weight_grad(grad_w, g, dense.view(rows, -1), single)
            if need_x or need_extra:
                grad_dense = torch.mm(g, w2, out=_scratch("grad", (rows, width * n_in), g))
                _native.grad_input(
                    x[a:b], shift, inv_h, grad_dense.view(rows, width, n_in), n, tables.order,
                    tables.extend, tables.native_coefs, grad_x[a:b] if need_x else None,
                    grad_extra[a:b] if need_extra else None,
                )
        grad_coef = grad_scale = grad_ew = None
        if need_w:
            grad_coef = torch.empty_like(coef) if need_coef else None
            grad_scale = torch.empty_like(scale) if need_scale else None
            grad_ew = torch.empty_like(extra_weight) if need_ew else None
            _native.compose_weight_grad(grad_w.view(weight.shape), coef, scale, grad_coef, grad_scale, grad_ew)
        return grad_x, grad_extra, grad_coef, grad_scale, grad_ew, None, None, None


def _native_sparse_linear(x, coef, scale, extra, extra_weight, shift, inv_h, tables: _LocalTables) -> torch.Tensor:
    """The sparse product (order+1 local coefficients per input) by the native kernels, plus the
    base branch as one small GEMM. Time flat in G but for one pass over ``coef``.

    Args: x, extra: (batch, in); coef: (out, in, n); scale, extra_weight: (out, in).
    Returns: (batch, out).
    """
    y = _NativeSparseLinear.apply(x.contiguous(), None, coef.contiguous(), scale.contiguous(), None, shift, inv_h, tables)
    if extra is not None:
        y = torch.addmm(y, extra, extra_weight.t())
    return y


class _NativeSparseLinear(torch.autograd.Function):
    """y = B(x) @ (coef * scale)^T touching only the order+1 non-zero bases per input (native).

    The signature matches :class:`_NativeBSplineLinear` (``extra`` and ``extra_weight`` are always
    None here) so that both share the differentiable backward used for double backward (built
    from the dense formulas: cost linear in G there, as with ``sparse=False``).
    """

    @staticmethod
    def forward(ctx, x, extra, coef, scale, extra_weight, shift, inv_h, tables):  # type: ignore[override]
        y = x.new_empty(x.shape[0], coef.shape[0])
        # every thread sums into its own (rows, out) buffer: row chunks keep those bounded
        per_row = coef.shape[0] * max(1, torch.get_num_threads())
        for a, b in _row_chunks(x.shape[0], per_row, min_rows=NATIVE_SPARSE_MIN_CHUNK_ROWS):
            _native.sparse_forward(x[a:b], shift, inv_h, coef, scale, tables.n, tables.order, tables.extend,
                                   tables.native_coefs, y[a:b])
        ctx.tables, ctx.interiors = tables, [False]
        ctx.save_for_backward(x, coef, scale, shift, inv_h)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, coef, scale, shift, inv_h = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            return _native_differentiable_backward(ctx, grad_out, x, None, coef, scale, None, shift, inv_h)
        tables: _LocalTables = ctx.tables
        need_x, need_coef, need_scale = ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        grad_x = torch.empty_like(x) if need_x else None
        grad_coef = torch.empty_like(coef) if need_coef else None
        grad_scale = torch.empty_like(scale) if need_scale else None
        if need_x or need_coef or need_scale:
            _native.sparse_backward(x, shift, inv_h, coef, scale, grad_out.contiguous(), tables.n, tables.order,
                                    tables.extend, tables.native_coefs, grad_x, grad_coef, grad_scale)
        return grad_x, None, grad_coef, grad_scale, None, None, None, None


def _native_differentiable_backward(ctx, grad_out, x, extra, coef, scale, extra_weight, shift, inv_h):
    """The backward of :class:`_NativeBSplineLinear` from differentiable PyTorch ops (double backward)."""
    parts = [coef * scale.unsqueeze(-1)]
    if extra is not None:
        parts.append(extra_weight.unsqueeze(-1))
    weight = torch.cat(parts, dim=-1)  # (out, in, width)
    needs = ctx.needs_input_grad
    grad_x, grad_extra, grad_w, *_ = _differentiable_backward(
        ctx, grad_out, x, extra, weight, shift, inv_h, needs=(needs[0], needs[1], any(needs[2:5]))
    )
    grad_coef = grad_scale = grad_ew = None
    if grad_w is not None:
        n = coef.shape[-1]
        grad_spline = grad_w[..., :n]
        grad_coef = grad_spline * scale.unsqueeze(-1) if ctx.needs_input_grad[2] else None
        grad_scale = (grad_spline * coef).sum(-1) if ctx.needs_input_grad[3] else None
        grad_ew = grad_w[..., n] if extra is not None and ctx.needs_input_grad[4] else None
    return grad_x, grad_extra, grad_coef, grad_scale, grad_ew, None, None, None


def _native_fill(x, shift, inv_h, extra, tables: _LocalTables, dense: torch.Tensor) -> None:
    """dense (rows, n [+1], in) = [B(x) | extra], basis-major, by the native kernel."""
    _native.fill_dense(x, shift, inv_h, extra, tables.n, tables.order, tables.extend, tables.native_coefs, dense)


def _differentiable_backward(ctx, grad_out, x, extra, weight, shift, inv_h, needs=None):
    """The backward of :class:`_UniformBSplineLinear` built from differentiable ops (whole batch).

    ``needs``: which of (x, extra, weight) need a gradient; default ``ctx.needs_input_grad[:3]``.
    """
    need_x, need_extra, need_w = ctx.needs_input_grad[:3] if needs is None else needs
    tables: _LocalTables = ctx.tables
    batch, n_in = x.shape
    width = weight.shape[-1]
    interior = all(ctx.interiors)
    row, t = _locate(x, shift, inv_h, tables)
    pos, vals = _local_values(row, t, tables, interior=interior)
    grad_x = grad_extra = grad_w = None
    if need_w:
        dense = _scatter_dense(pos, vals, width)
        if extra is not None:
            col = torch.tensor([tables.n], device=x.device)
            dense = dense.index_copy(-1, col, extra.unsqueeze(-1))
        grad_w = (grad_out.t() @ dense.view(batch, -1)).view(weight.shape)  # (out, in, width)
    if need_x or need_extra:
        grad_dense = (grad_out @ weight.reshape(weight.shape[0], -1)).view(batch, n_in, width)
        if need_x:
            local = grad_dense.gather(-1, pos)  # (batch, in, k+1)
            if not interior:
                local = local * tables.valid.index_select(0, row.reshape(-1)).view_as(local)
            derivs = torch.stack(_local_derivatives(t, tables), dim=-1)  # d/du, (batch, in, k+1)
            grad_x = (local * derivs).sum(-1) * inv_h
        if extra is not None and need_extra:
            grad_extra = grad_dense[..., tables.n]
    return grad_x, grad_extra, grad_w, None, None, None




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

#: With the native kernels (:mod:`kantk.bases._native`) the sparse path is the faster one from
#: G=5 on for layers of up to NATIVE_SPARSE_MAX_OUT outputs (measured on 2 cores, batch 256-4096:
#: 0.66-0.9x the dense path's time at widths 2-512 and 1024 -> 64; 1.3-1.6x at 1024 or 2048
#: outputs, whose accumulator rows outgrow the caches), and from NATIVE_SPARSE_MIN_FUNCTIONS
#: functions per input at any width (G=10: 0.8x at width 128).
NATIVE_SPARSE_MIN_FUNCTIONS = 11
NATIVE_SPARSE_MAX_OUT = 512
#: The native sparse forward sums each thread's share into its own (rows, out) buffer; it runs
#: in row chunks of CHUNK_ELEMENTS / (out * threads) rows, but at least this many (each chunk
#: lays the coefficients out again).
NATIVE_SPARSE_MIN_CHUNK_ROWS = 1024


def _sparse_linear(x, weight, extra, extra_weight, shift, inv_h, tables):
    """y[b,q] = sum_{p,r} weight[q, p, pos[b,p,r]] * vals[b,p,r] (+ extra @ extra_weight^T).

    Only the order+1 non-zero bases per input are touched, so the cost does not grow with G.
    Twice differentiable: see :class:`_SparseBSplineLinear`.

    Args: x, extra: (batch, in); weight: (out, in, n); extra_weight: (out, in).
    Returns: (batch, out).
    """
    if torch.is_grad_enabled():
        y = _SparseBSplineLinear.apply(x, None, weight, shift, inv_h, tables)
    else:  # inference: no graph to record
        y = _embedding_bag_linear(x, weight, shift, inv_h, tables)
    if extra is not None:
        y = torch.addmm(y, extra, extra_weight.t())
    return y


def _embedding_bag_linear(x, weight, shift, inv_h, tables):
    """The sparse product through ``embedding_bag`` (differentiable once, in x and weight)."""
    batch, n_in = x.shape
    n = weight.shape[-1]
    row, t = _locate(x, shift, inv_h, tables)
    pos = _positions(row, tables)  # (batch, in, k+1)
    vals = _values(row, t, tables, interior=False)  # differentiable in x through t
    flat = pos + (torch.arange(n_in, device=x.device) * n).unsqueeze(-1)  # index into (in*n) rows
    table = weight.reshape(weight.shape[0], -1).t().contiguous()  # (in*n, out)
    return torch.nn.functional.embedding_bag(
        flat.view(batch, -1), table, per_sample_weights=vals.reshape(batch, -1), mode="sum"
    )


class _SparseBSplineLinear(torch.autograd.Function):
    """B(x) @ W^T touching only the order+1 non-zero bases per input (``embedding_bag``).

    ``embedding_bag`` has no double backward, so this wraps it: the forward records
    ``embedding_bag``'s own graph on detached copies of ``x`` and ``weight``, and a plain backward
    runs through it (cost flat in G); a backward that records a graph (``create_graph=True``,
    e.g. d2y/dx2 for a physics-informed loss) is built from the dense, differentiable formulas of
    the fused dense path instead (cost linear in G, like ``sparse=False``). The signature matches
    :class:`_UniformBSplineLinear` (``extra`` is always None here) so both share that backward.
    """

    @staticmethod
    def forward(ctx, x, extra, weight, shift, inv_h, tables):  # type: ignore[override]
        ctx.tables, ctx.interiors = tables, [False]  # masked formulas in a recorded backward
        ctx.save_for_backward(x, weight, shift, inv_h)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        with torch.enable_grad():
            xl = x.detach().requires_grad_(need_x)
            wl = weight.detach().requires_grad_(need_w)
            y = _embedding_bag_linear(xl, wl, shift, inv_h, tables)
        ctx.inner = (y, [v for v, need in ((xl, need_x), (wl, need_w)) if need])
        return y.detach()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, shift, inv_h = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            return _differentiable_backward(ctx, grad_out, x, None, weight, shift, inv_h)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        y, leaves = ctx.inner
        # retain_graph: the outer graph may be run backward again (retain_graph=True there)
        grads = iter(torch.autograd.grad(y, leaves, grad_out, retain_graph=True) if leaves else ())
        grad_x = next(grads) if need_x else None
        grad_w = next(grads) if need_w else None
        return grad_x, None, grad_w, None, None, None
