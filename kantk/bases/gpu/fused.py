"""The fused form: basis values generated in registers inside the GEMM tiles (``tl.dot``); the
(batch, in, n) basis matrix is never written. Lowest memory; slower than the GEMM form on an H200.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kantk.bases.gpu.common import (
    _LOW_TYPES,
    BASE_NONE,
    BSPLINE_KNOTS,
    KernelSpec,
    _base_value,
    _bspline_locals,
    _input_tile,
    _low_type,
    _mma,
    _pick,
    _precision,
    _rbf_value,
    _reference_backward,
    _squash,
    _store_input_grads,
    cdiv,
)


@triton.jit
def _forward_kernel(
    xs_ptr,
    xb_ptr,
    wt_ptr,
    y_ptr,
    p0_ptr,
    p1_ptr,
    B,
    IN,
    OUT,
    NF,
    NW,
    M,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    LOW: tl.constexpr,
    LOWT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BP: tl.constexpr,
):
    """y[b, q] = sum_{p, i} A_i(x[b, p]) wt[p, i, q]; A generated per tile, never stored."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mask_m = offs_m < B
    mask_n = offs_n < OUT
    acc = tl.zeros((BM, BN), dtype=y_ptr.dtype.element_ty)
    for p_start in range(0, IN, BP):
        offs_p = p_start + tl.arange(0, BP)
        mask_p = offs_p < IN
        mask_x = mask_m[:, None] & mask_p[None, :]
        xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        mask_w = mask_p[:, None] & mask_n[None, :]
        w_rows = wt_ptr + (offs_p[:, None] * NW) * OUT + offs_n[None, :]
        if BASE != 0:
            xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
            a = tl.where(mask_x, _base_value(xb, BASE), 0.0)
            w = tl.load(w_rows + NF * OUT, mask=mask_w, other=0.0)
            acc = _mma(acc, a, w, LOW, LOWT, PRECISION)
        if KIND <= 1:
            j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
                xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
            )
            for i in range(0, NF):
                a = _pick(i - j + 3, v0, v1, v2, v3)
                a = tl.where(xs == xs, a, xs)  # NaN in, NaN out
                a = tl.where(mask_x, a, 0.0)
                w = tl.load(w_rows + i * OUT, mask=mask_w, other=0.0)
                acc = _mma(acc, a, w, LOW, LOWT, PRECISION)
        elif KIND == 2:
            # T_{i+1} = 2 z T_i - T_{i-1} from T_{-1} = z, T_0 = 1 (no branch in the loop)
            z, dz = _squash(xs, offs_p, mask_p, p0_ptr, p1_ptr)
            t_prev = z
            t_cur = tl.full(xs.shape, 1.0, xs.dtype)
            for i in range(0, NF):
                a = tl.where(mask_x, t_cur, 0.0)
                t_next = 2.0 * z * t_cur - t_prev
                t_prev = t_cur
                t_cur = t_next
                w = tl.load(w_rows + i * OUT, mask=mask_w, other=0.0)
                acc = _mma(acc, a, w, LOW, LOWT, PRECISION)
        else:
            for i in range(0, NF):
                a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
                a = tl.where(mask_x, a, 0.0)
                w = tl.load(w_rows + i * OUT, mask=mask_w, other=0.0)
                acc = _mma(acc, a, w, LOW, LOWT, PRECISION)
    tl.store(y_ptr + offs_m[:, None] * OUT + offs_n[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _grad_input_kernel(
    xs_ptr,
    xb_ptr,
    wt_ptr,
    g_ptr,
    gxs_ptr,
    gxb_ptr,
    p0_ptr,
    p1_ptr,
    B,
    IN,
    OUT,
    NF,
    NW,
    M,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    SAME: tl.constexpr,
    LOW: tl.constexpr,
    LOWT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BP: tl.constexpr,
):
    """d/dxs[b, p] = sum_i A_i'(xs[b, p]) (g @ wt[p, i, :]^T)[b]; d/dxb likewise with b'(xb)."""
    offs_m, offs_p, mask_p, mask_x, xs = _input_tile(xs_ptr, B, IN, BM, BP)
    mask_m = offs_m < B
    acc_s = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
            xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
        )
    z = xs
    dz = xs
    if KIND == 2:
        z, dz = _squash(xs, offs_p, mask_p, p0_ptr, p1_ptr)
    # Chebyshev: T_{i-1}, T_i and their derivatives, from T_{-1} = z, T_0 = 1, T'_{-1} = 1, T'_0 = 0
    t_prev = z
    t_cur = tl.full(xs.shape, 1.0, xs.dtype)
    u_prev = tl.full(xs.shape, 1.0, xs.dtype)
    u_cur = tl.zeros(xs.shape, dtype=xs.dtype)
    for i in range(0, NF):
        s = _g_times_weight_column(
            g_ptr, wt_ptr, offs_m, mask_m, offs_p, mask_p, i, OUT, NW, acc_s, LOW, LOWT, PRECISION, BN
        )
        if KIND <= 1:
            da = _pick(i - j + 3, d0, d1, d2, d3)
        elif KIND == 2:
            da = u_cur
            # T'_{i+1} = 2 T_i + 2 z T'_i - T'_{i-1}
            u_next = 2.0 * t_cur + 2.0 * z * u_cur - u_prev
            t_next = 2.0 * z * t_cur - t_prev
            t_prev = t_cur
            t_cur = t_next
            u_prev = u_cur
            u_cur = u_next
        else:
            a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
        acc_s += s * da
    if KIND == 2:
        acc_s = acc_s * dz  # d/dz to d/dx
    s_base = acc_s
    if BASE != 0:
        s_base = _g_times_weight_column(
            g_ptr, wt_ptr, offs_m, mask_m, offs_p, mask_p, NF, OUT, NW, acc_s, LOW, LOWT, PRECISION, BN
        )
    _store_input_grads(acc_s, s_base, xb_ptr, gxs_ptr, gxb_ptr, offs_m, offs_p, mask_x, IN, BASE, SAME)


@triton.jit
def _g_times_weight_column(
    g_ptr,
    wt_ptr,
    offs_m,
    mask_m,
    offs_p,
    mask_p,
    i,
    OUT,
    NW,
    like,
    LOW: tl.constexpr,
    LOWT: tl.constexpr,
    PRECISION: tl.constexpr,
    BN: tl.constexpr,
):
    """(BM, BP) = g (BM, OUT) @ wt[p, i, :]^T (OUT, BP), over tiles of outputs (``like``: shape, dtype)."""
    s = tl.zeros(like.shape, dtype=like.dtype)
    for n_start in range(0, OUT, BN):
        offs_n = n_start + tl.arange(0, BN)
        mask_n = offs_n < OUT
        g = tl.load(
            g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0
        )
        wt = tl.load(
            wt_ptr + (offs_p[None, :] * NW + i) * OUT + offs_n[:, None],
            mask=mask_n[:, None] & mask_p[None, :],
            other=0.0,
        )
        s = _mma(s, g, wt, LOW, LOWT, PRECISION)
    return s


@triton.jit
def _grad_weight_kernel(
    xs_ptr,
    xb_ptr,
    g_ptr,
    wt_ptr,
    gwt_ptr,
    p0_ptr,
    p1_ptr,
    B,
    IN,
    OUT,
    NF,
    NW,
    M,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    LOW: tl.constexpr,
    LOWT: tl.constexpr,
    PRECISION: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BP: tl.constexpr,
):
    """gwt[p, i, q] = sum_b A_i(x[b, p]) g[b, q]; one program per (input tile, function, output tile)."""
    pid_p = tl.program_id(0)
    i = tl.program_id(1)
    pid_n = tl.program_id(2)
    offs_p = pid_p * BP + tl.arange(0, BP)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mask_p = offs_p < IN
    mask_n = offs_n < OUT
    acc = tl.zeros((BP, BN), dtype=gwt_ptr.dtype.element_ty)
    for m_start in range(0, B, BM):
        offs_m = m_start + tl.arange(0, BM)
        mask_m = offs_m < B
        mask_x = mask_m[:, None] & mask_p[None, :]
        if i == NF:  # the base branch's weight
            xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
            a = _base_value(xb, BASE)
        else:
            xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
            if KIND <= 1:
                j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
                    xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
                )
                a = _pick(i - j + 3, v0, v1, v2, v3)
                a = tl.where(xs == xs, a, xs)
            elif KIND == 2:
                z, dz = _squash(xs, offs_p, mask_p, p0_ptr, p1_ptr)
                t_prev = z
                t_cur = tl.full(xs.shape, 1.0, xs.dtype)
                for _ in range(0, i):
                    t_next = 2.0 * z * t_cur - t_prev
                    t_prev = t_cur
                    t_cur = t_next
                a = t_cur
            else:
                a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
        a = tl.where(mask_x, a, 0.0)
        g = tl.load(
            g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0
        )
        acc = _mma(acc, tl.trans(a), g, LOW, LOWT, PRECISION)
    tl.store(
        gwt_ptr + (offs_p[:, None] * NW + i) * OUT + offs_n[None, :],
        acc,
        mask=mask_p[:, None] & mask_n[None, :],
    )


#: Warps a program of each fused kernel. At 4, the forward and input-gradient kernels spilled up
#: to 732 and 1,804 bytes of registers a thread compiled for sm_90 (64 x 64 x 32 tiles); at 8, up
#: to 56 and 48 (``python benchmarks/kernel_compile.py``, triton 3.6). The weight-gradient kernel
#: does not spill at 4 except on moved knots (up to 1,184 bytes either way).
FUSED_WARPS = {"forward": 8, "grad_input": 8, "grad_weight": 4}


def _blocks(out: int, n_in: int) -> tuple[int, int, int]:
    bm = int(os.environ.get("KANTK_TRITON_BM", "64"))
    bn = 64 if out > 32 else (32 if out > 16 else 16)
    bp = 32 if n_in > 16 else 16
    return bm, bn, bp


class FusedEdges(torch.autograd.Function):
    """``y = sum_{p,i} A_i(xs) wt[p, i] + b(xb) wt[p, n]`` with the fused kernels (once differentiable;
    a second derivative goes through ``spec.reference``)."""

    @staticmethod
    def forward(ctx, xs, xb, wt, p0, p1, spec: KernelSpec):
        # xs, xb: (B, in); wt: (in, n_w, out), in xs' dtype or bf16/fp16 (products on tensor
        # cores, float32 accumulation); p0, p1: basis constants (see fused_edges)
        batch, n_in = xs.shape
        out = wt.shape[-1]
        y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
        bm, bn, bp = _blocks(out, n_in)
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        low = wt.dtype in _LOW_TYPES
        grid = (cdiv(batch, bm), cdiv(out, bn))
        _forward_kernel[grid](
            xs,
            xb,
            wt,
            y,
            p0,
            p1,
            batch,
            n_in,
            out,
            spec.num_functions,
            wt.shape[1],
            m,
            KIND=spec.kind,
            BASE=spec.base,
            EXTEND=spec.extend,
            LOW=low,
            LOWT=_low_type(wt),
            PRECISION=_precision(xs.dtype),
            BM=bm,
            BN=bn,
            BP=bp,
            num_warps=FUSED_WARPS["forward"],
        )
        ctx.spec, ctx.m, ctx.same = spec, m, xs is xb
        ctx.save_for_backward(xs, xb, wt, p0, p1)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        xs, xb, wt, p0, p1 = ctx.saved_tensors
        spec: KernelSpec = ctx.spec
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return _reference_backward(ctx, grad_out, xs, xb, wt, spec, needs)
        g = grad_out.to(xs.dtype).contiguous()
        batch, n_in = xs.shape
        out, n_w = wt.shape[-1], wt.shape[1]
        bm, bn, bp = _blocks(out, n_in)
        low = wt.dtype in _LOW_TYPES
        consts = dict(
            KIND=spec.kind,
            BASE=spec.base,
            EXTEND=spec.extend,
            LOW=low,
            LOWT=_low_type(wt),
            PRECISION=_precision(xs.dtype),
            BM=bm,
            BN=bn,
            BP=bp,
        )
        need_xs, need_xb, need_w = needs
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        grad_xs = grad_xb = grad_w = None
        if need_xs or need_xb:
            grad_xs = torch.empty(batch, n_in, dtype=xs.dtype, device=xs.device)
            grad_xb = torch.empty_like(grad_xs) if has_base and not same else grad_xs
            _grad_input_kernel[(cdiv(batch, bm), cdiv(n_in, bp))](
                xs,
                xb,
                wt,
                g,
                grad_xs,
                grad_xb,
                p0,
                p1,
                batch,
                n_in,
                out,
                spec.num_functions,
                n_w,
                ctx.m,
                SAME=same,
                num_warps=FUSED_WARPS["grad_input"],
                **consts,
            )
            if same or not has_base:  # one input (summed by the kernel), or no base branch
                grad_xb = None
            if not need_xb:
                grad_xb = None
        if need_w:
            grad_w = torch.empty(wt.shape, dtype=xs.dtype, device=wt.device)
            _grad_weight_kernel[(cdiv(n_in, bp), n_w, cdiv(out, bn))](
                xs,
                xb,
                g,
                wt,
                grad_w,
                p0,
                p1,
                batch,
                n_in,
                out,
                spec.num_functions,
                n_w,
                ctx.m,
                num_warps=FUSED_WARPS["grad_weight"],
                **consts,
            )
            grad_w = grad_w.to(wt.dtype)
        return grad_xs, grad_xb, grad_w, None, None, None
