"""The PyTorch dense path on uniform grids: one GEMM over the scattered basis matrix, row chunks.

Also the compile-friendly cardinal cubic form (under ``torch.compile``) and the differentiable
backward that every uniform path falls back to for a double backward.
"""

from __future__ import annotations

import torch

from kantk.bases.bspline.local import (
    _all_interior,
    _local_derivatives,
    _local_values,
    _LocalTables,
    _locate,
    _positions,
    _scatter_dense,
    _values,
)

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
    def forward(ctx, x, extra, weight, shift, inv_h, tables, ws):
        # x, extra: (batch, in); weight: (out, in, width = n [+1]); shift, inv_h: (in,);
        # ws: the basis' Workspace
        batch, n_in = x.shape
        width = weight.shape[-1]
        w2t = weight.reshape(weight.shape[0], -1).t()  # (in*width, out)
        chunks = _row_chunks(batch, n_in * width)
        y = x.new_empty(batch, weight.shape[0])
        interiors = []
        vals = None
        single = len(chunks) == 1
        # one chunk: buffers kept for its backward; several: reused per chunk, rebuilt there
        roles = ("kept pos", "kept dense") if single else ("pos", "dense")
        for a, b in chunks:
            row, t = _locate(x[a:b], shift, inv_h, tables)
            interior = _all_interior(row, tables)
            interiors.append(interior)
            pos, vals = _local_values(row, t, tables, interior=interior, ws=ws, role=roles[0])
            dense = _scatter_dense(pos, vals, width, ws=ws, role=roles[1])  # (rows, in, width)
            if extra is not None:
                dense[..., tables.n] = extra[a:b]
            torch.mm(dense.view(b - a, -1), w2t, out=y[a:b])  # (rows, in*width) @ (in*width, out)
        ctx.tables, ctx.interiors, ctx.chunks, ctx.ws = tables, interiors, chunks, ws
        ctx.kept = ws.keep(dense, pos) if single else None
        # small batch: keep (row, t, vals) instead of recomputing them
        ctx.save_for_backward(
            x, extra, weight, shift, inv_h, *((row, t, vals) if single else (None, None, None))
        )
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, extra, weight, shift, inv_h, saved_row, saved_t, saved_vals = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: rebuild from x with a graph
            return (*_differentiable_backward(ctx, grad_out, x, extra, weight, shift, inv_h), None)
        tables: _LocalTables = ctx.tables
        batch, n_in = x.shape
        width = weight.shape[-1]
        w2 = weight.reshape(weight.shape[0], -1)  # (out, in*width)
        need_x, need_extra, need_w = (
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1] and extra is not None,
            ctx.needs_input_grad[2],
        )
        grad_x = x.new_empty(batch, n_in) if need_x else None
        grad_extra = x.new_empty(batch, n_in) if need_extra else None
        single = len(ctx.chunks) == 1
        grad_w = (torch.empty_like(w2) if single else torch.zeros_like(w2)) if need_w else None
        kept = ctx.ws.kept(ctx.kept) if ctx.kept is not None else None
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
                pos = _positions(row, tables, ws=ctx.ws)
                if need_w:
                    vals = saved_vals if saved_vals is not None else _values(row, t, tables, interior)
                    dense = _scatter_dense(pos, vals, width, ws=ctx.ws)
                    if extra is not None:
                        dense[..., tables.n] = extra[a:b]
            if need_w:
                assert grad_w is not None  # made above when need_w
                _add_weight_grad(grad_w, g, dense.view(rows, -1), single)
            if need_x or need_extra:
                grad_dense = torch.mm(g, w2, out=ctx.ws.scratch("grad", (rows, n_in * width), g)).view(
                    rows, n_in, width
                )
                if grad_x is not None:  # need_x
                    local = grad_dense.gather(-1, pos)  # (rows, in, k+1)
                    if not interior:
                        local = local * tables.valid.index_select(0, row.reshape(-1)).view_as(local)
                    derivs = _local_derivatives(t, tables)  # d/du, each (rows, in)
                    acc = local[..., 0] * derivs[0]
                    for r in range(1, tables.order + 1):
                        acc = torch.addcmul(acc, local[..., r], derivs[r])
                    torch.mul(acc, inv_h, out=grad_x[a:b])
                if grad_extra is not None:  # need_extra
                    grad_extra[a:b] = grad_dense[..., tables.n]
        return (
            grad_x,
            grad_extra,
            None if grad_w is None else grad_w.view(weight.shape),
            None,
            None,
            None,
            None,
        )


def _add_weight_grad(grad_w: torch.Tensor, g: torch.Tensor, dense: torch.Tensor, single: bool) -> None:
    """grad_w (out, features) = g^T @ dense for the only chunk of rows, += for one of several."""
    if single:
        torch.mm(g.t(), dense, out=grad_w)  # (out, rows) @ (rows, features)
    else:
        grad_w.addmm_(g.t(), dense)


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
        # explicit sizes: an empty batch cannot infer the -1 ("cannot reshape tensor of 0 elements")
        grad_w = (grad_out.t() @ dense.reshape(batch, n_in * width)).view(weight.shape)  # (out, in, width)
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


def _cardinal_cubic_linear(x, extra, weight, shift, inv_h, extend=False):
    """[B(x) | extra] @ W^T for cubic B-splines on a uniform grid, as plain element-wise ops.

    The same local form as every other uniform path (:func:`_locate`'s row and fractional
    position ``t``, :func:`_cubic_values`' four pieces, the same arithmetic), but the dense matrix
    is built by comparing each basis index with the input's row instead of a scatter: basis ``i``
    takes local piece ``r = i - row + 4`` where ``0 <= r <= 3``, else 0. Eager PyTorch runs this as
    a dozen passes over (batch, in, n); under ``torch.compile`` inductor fuses them into one, which
    is why the dispatcher uses it only while compiling. ``extend``: the row is clamped into the
    interior, so inputs on the outer intervals continue the outermost pieces
    (``extrapolate="extend"``, as in :class:`_LocalTables`).

    Args: x, extra: (batch, in); weight: (out, in, n [+1]); shift, inv_h: (in,).
    Returns: (batch, out).
    """
    n = weight.shape[-1] - (extra is not None)
    # position in grid units from one knot before the first, kept finite (as in _locate)
    u = torch.addcmul(shift, x, inv_h).clamp(0.0, float(n + 4))
    row = torch.floor(u)
    if extend:  # the interior rows of a cubic: 4 .. n (_LocalTables.first/last_interior)
        row = row.clamp(4.0, float(n))
    t = u - row
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    v0 = s * s * s * (1.0 / 6.0)
    v3 = t3 * (1.0 / 6.0)
    v1 = t3 * 0.5 - t2 + 2.0 / 3.0
    v2 = (1.0 - v0 - v3) - v1  # partition of unity, as _cubic_values
    r = torch.arange(n, device=x.device, dtype=x.dtype) - (row - 4.0).unsqueeze(-1)  # (batch, in, n)
    # a product with the 0/1 mask, not a select: a NaN input stays NaN (as on the other paths)
    dense = (
        v0.unsqueeze(-1) * (r == 0)
        + v1.unsqueeze(-1) * (r == 1)
        + v2.unsqueeze(-1) * (r == 2)
        + v3.unsqueeze(-1) * (r == 3)
    )
    if extra is not None:
        dense = torch.cat([dense, extra.unsqueeze(-1)], dim=-1)  # (batch, in, n+1)
    return dense.flatten(1) @ weight.flatten(1).t()
