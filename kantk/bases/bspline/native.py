"""The native CPU path: C++ kernels (``_native_bspline.cpp``, built by :mod:`.native_build`) for the
dense basis-major GEMM path and the sparse path, with their autograd functions."""

from __future__ import annotations

import numpy as np
import torch

from kantk.bases.bspline.local import _LocalTables
from kantk.bases.bspline.native_build import _ptr, _require, _suffix, library
from kantk.bases.bspline.torch_dense import _add_weight_grad, _differentiable_backward, _row_chunks

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


def fill_dense(
    x, shift, inv_h, extra, n: int, order: int, extend: bool, coefs: np.ndarray, out: torch.Tensor
) -> None:
    """out (rows, n [+1], in) = the dense basis values of x (rows, in) [| extra], basis-major."""
    rows, n_in = x.shape
    width = n + (extra is not None)
    _require(out.shape == (rows, width, n_in) and out.dtype == x.dtype, "out of (rows, width, in)")
    fn = getattr(library(), f"kantk_fill_dense_{_suffix(x)}")
    err = fn(
        _ptr(x),
        _ptr(shift),
        _ptr(inv_h),
        _ptr(extra),
        rows,
        n_in,
        n,
        order,
        int(extend),
        coefs.ctypes.data,
        _ptr(out),
        torch.get_num_threads(),
    )
    if err:
        raise RuntimeError(f"kantk_fill_dense failed ({err})")


def grad_input(
    x,
    shift,
    inv_h,
    grad_dense,
    n: int,
    order: int,
    extend: bool,
    coefs: np.ndarray,
    grad_x: torch.Tensor | None,
    grad_extra: torch.Tensor | None,
) -> None:
    """grad_x (rows, in) and grad_extra (rows, in) from grad_dense (rows, width, in)."""
    rows, width, n_in = grad_dense.shape
    _require(grad_extra is None or width == n + 1, "a base column in grad_dense")
    fn = getattr(library(), f"kantk_grad_input_{_suffix(x)}")
    err = fn(
        _ptr(x),
        _ptr(shift),
        _ptr(inv_h),
        _ptr(grad_dense),
        rows,
        n_in,
        width,
        n,
        order,
        int(extend),
        coefs.ctypes.data,
        _ptr(grad_x),
        _ptr(grad_extra),
        torch.get_num_threads(),
    )
    if err:
        raise RuntimeError(f"kantk_grad_input failed ({err})")


def compose_weight(
    coef: torch.Tensor, scale: torch.Tensor, extra_weight: torch.Tensor | None, out: torch.Tensor
) -> None:
    """out (o, n [+1], in) = [coef (o, in, n) * scale (o, in) | extra_weight (o, in)], basis-major."""
    o, n_in, n = coef.shape
    _require(out.shape == (o, n + (extra_weight is not None), n_in), "out of (o, width, in)")
    getattr(library(), f"kantk_compose_weight_{_suffix(coef)}")(
        _ptr(coef), _ptr(scale), _ptr(extra_weight), o, n_in, n, _ptr(out), torch.get_num_threads()
    )


def compose_weight_grad(
    grad_w: torch.Tensor,
    coef: torch.Tensor,
    scale: torch.Tensor,
    grad_coef: torch.Tensor | None,
    grad_scale: torch.Tensor | None,
    grad_extra_weight: torch.Tensor | None,
) -> None:
    """The gradients of :func:`compose_weight` from grad_w (o, width, in); None outputs are skipped."""
    o, n_in, n = coef.shape
    getattr(library(), f"kantk_compose_weight_grad_{_suffix(coef)}")(
        _ptr(grad_w),
        _ptr(coef),
        _ptr(scale),
        o,
        n_in,
        n,
        grad_w.shape[1],
        _ptr(grad_coef),
        _ptr(grad_scale),
        _ptr(grad_extra_weight),
        torch.get_num_threads(),
    )


def sparse_forward(
    x, shift, inv_h, coef, scale, n: int, order: int, extend: bool, coefs: np.ndarray, out: torch.Tensor
) -> None:
    """out (rows, o) = sum over inputs and their order+1 local bases of scale * coef * B(x)."""
    rows, n_in = x.shape
    n_out = coef.shape[0]
    _require(out.shape == (rows, n_out) and coef.shape == (n_out, n_in, n), "out (rows, o), coef (o, in, n)")
    err = getattr(library(), f"kantk_sparse_forward_{_suffix(x)}")(
        _ptr(x),
        _ptr(shift),
        _ptr(inv_h),
        _ptr(coef),
        _ptr(scale),
        rows,
        n_in,
        n_out,
        n,
        order,
        int(extend),
        coefs.ctypes.data,
        _ptr(out),
        torch.get_num_threads(),
    )
    if err:
        raise RuntimeError(f"kantk_sparse_forward failed ({err})")


def sparse_backward(
    x,
    shift,
    inv_h,
    coef,
    scale,
    grad_out,
    n: int,
    order: int,
    extend: bool,
    coefs: np.ndarray,
    grad_x: torch.Tensor | None,
    grad_coef: torch.Tensor | None,
    grad_scale: torch.Tensor | None,
) -> None:
    """The gradients of :func:`sparse_forward` from grad_out (rows, o); None outputs are skipped."""
    rows, n_in = x.shape
    err = getattr(library(), f"kantk_sparse_backward_{_suffix(x)}")(
        _ptr(x),
        _ptr(shift),
        _ptr(inv_h),
        _ptr(coef),
        _ptr(scale),
        _ptr(grad_out),
        rows,
        n_in,
        coef.shape[0],
        n,
        order,
        int(extend),
        coefs.ctypes.data,
        _ptr(grad_x),
        _ptr(grad_coef),
        _ptr(grad_scale),
        torch.get_num_threads(),
    )
    if err:
        raise RuntimeError(f"kantk_sparse_backward failed ({err})")


def _native_linear(
    x, coef, scale, extra, extra_weight, shift, inv_h, tables: _LocalTables, ws
) -> torch.Tensor:
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
        x.contiguous(), extra, coef.contiguous(), scale.contiguous(), extra_weight, shift, inv_h, tables, ws
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
    def forward(ctx, x, extra, coef, scale, extra_weight, shift, inv_h, tables, ws):
        batch, n_in = x.shape
        n_out, width = coef.shape[0], tables.n + (extra is not None)
        weight = coef.new_empty(n_out, width, n_in)
        compose_weight(coef, scale, extra_weight, weight)
        w2t = weight.view(n_out, -1).t()  # (width*in, out)
        chunks = _row_chunks(batch, n_in * width)
        single = len(chunks) == 1
        role = "kept native" if single else "native"
        y = x.new_empty(batch, n_out)
        for a, b in chunks:
            dense = ws.scratch(role, (b - a, width, n_in), x)
            _native_fill(x[a:b], shift, inv_h, None if extra is None else extra[a:b], tables, dense)
            torch.mm(dense.view(b - a, -1), w2t, out=y[a:b])
        ctx.tables, ctx.chunks, ctx.interiors, ctx.ws = tables, chunks, [False], ws
        ctx.kept = ws.keep(dense, None) if single else None
        ctx.save_for_backward(x, extra, coef, scale, extra_weight, shift, inv_h, weight)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, extra, coef, scale, extra_weight, shift, inv_h, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            grads = _native_differentiable_backward(
                ctx, grad_out, x, extra, coef, scale, extra_weight, shift, inv_h
            )
            return (*grads, None)
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
            grad_w = ctx.ws.scratch("gradw", tuple(w2.shape), w2)
            if not single:
                grad_w.zero_()
        kept = ctx.ws.kept(ctx.kept) if ctx.kept is not None else None
        for a, b in ctx.chunks:
            rows = b - a
            g = grad_out[a:b]
            if need_w:
                if kept is not None:  # the forward's own matrix, untouched since
                    dense = kept[0]
                else:
                    dense = ctx.ws.scratch("native", (rows, width, n_in), x)
                    _native_fill(x[a:b], shift, inv_h, None if extra is None else extra[a:b], tables, dense)
                assert grad_w is not None  # made above when need_w
                _add_weight_grad(grad_w, g, dense.view(rows, -1), single)
            if need_x or need_extra:
                grad_dense = torch.mm(g, w2, out=ctx.ws.scratch("grad", (rows, width * n_in), g))
                grad_input(
                    x[a:b],
                    shift,
                    inv_h,
                    grad_dense.view(rows, width, n_in),
                    n,
                    tables.order,
                    tables.extend,
                    tables.native_coefs,
                    grad_x[a:b] if grad_x is not None else None,  # None unless need_x
                    grad_extra[a:b] if grad_extra is not None else None,
                )
        grad_coef = grad_scale = grad_ew = None
        if grad_w is not None:  # need_w
            grad_coef = torch.empty_like(coef) if need_coef else None
            grad_scale = torch.empty_like(scale) if need_scale else None
            grad_ew = torch.empty_like(extra_weight) if need_ew else None
            compose_weight_grad(grad_w.view(weight.shape), coef, scale, grad_coef, grad_scale, grad_ew)
        return grad_x, grad_extra, grad_coef, grad_scale, grad_ew, None, None, None, None


def _native_sparse_linear(
    x, coef, scale, extra, extra_weight, shift, inv_h, tables: _LocalTables
) -> torch.Tensor:
    """The sparse product (order+1 local coefficients per input) by the native kernels, plus the
    base branch as one small GEMM. Time flat in G but for one pass over ``coef``.

    Args: x, extra: (batch, in); coef: (out, in, n); scale, extra_weight: (out, in).
    Returns: (batch, out).
    """
    y = _NativeSparseLinear.apply(
        x.contiguous(), None, coef.contiguous(), scale.contiguous(), None, shift, inv_h, tables
    )
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
    def forward(ctx, x, extra, coef, scale, extra_weight, shift, inv_h, tables):
        y = x.new_empty(x.shape[0], coef.shape[0])
        # every thread sums into its own (rows, out) buffer: row chunks keep those bounded
        per_row = coef.shape[0] * max(1, torch.get_num_threads())
        for a, b in _row_chunks(x.shape[0], per_row, min_rows=NATIVE_SPARSE_MIN_CHUNK_ROWS):
            sparse_forward(
                x[a:b],
                shift,
                inv_h,
                coef,
                scale,
                tables.n,
                tables.order,
                tables.extend,
                tables.native_coefs,
                y[a:b],
            )
        ctx.tables, ctx.interiors = tables, [False]
        ctx.save_for_backward(x, coef, scale, shift, inv_h)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        x, coef, scale, shift, inv_h = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True
            return _native_differentiable_backward(ctx, grad_out, x, None, coef, scale, None, shift, inv_h)
        tables: _LocalTables = ctx.tables
        need_x, need_coef, need_scale = (
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[2],
            ctx.needs_input_grad[3],
        )
        grad_x = torch.empty_like(x) if need_x else None
        grad_coef = torch.empty_like(coef) if need_coef else None
        grad_scale = torch.empty_like(scale) if need_scale else None
        if need_x or need_coef or need_scale:
            sparse_backward(
                x,
                shift,
                inv_h,
                coef,
                scale,
                grad_out.contiguous(),
                tables.n,
                tables.order,
                tables.extend,
                tables.native_coefs,
                grad_x,
                grad_coef,
                grad_scale,
            )
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
    fill_dense(x, shift, inv_h, extra, tables.n, tables.order, tables.extend, tables.native_coefs, dense)
