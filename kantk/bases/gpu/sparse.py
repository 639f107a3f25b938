"""Sparse kernels for cubic B-splines on large grids: only the four non-zero functions per input
(time flat in G). Experimental: see :class:`SparseEdges`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kantk.bases.gpu.common import (
    BASE_ACTIVATIONS_TORCH,
    BASE_NONE,
    BSPLINE_KNOTS,
    KernelSpec,
    _base_value,
    _bspline_locals,
    _input_tile,
    _input_tile_at,
    _pick,
    _reference_backward,
    _store_input_grads,
    cdiv,
)


@triton.jit
def _weight_rows(wt_ptr, p, i, ok, offs_n, mask_n, NW, OUT):
    """(BM, BN): row ``i`` (BM, 1) of input p's weights, for each row of the tile; 0 where not ``ok``."""
    rows = p * NW + tl.where(ok, i, 0)
    return tl.load(wt_ptr + rows * OUT + offs_n[None, :], mask=ok & mask_n[None, :], other=0.0)


@triton.jit
def _sparse_forward_kernel(
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
    BM: tl.constexpr,
    BN: tl.constexpr,
):
    """y[b, q] = sum_p sum_r v_r(x[b, p]) wt[p, j - 3 + r, q] (+ b(x) wt[p, NF, q]): only the four
    non-zero B-splines per input, their weight rows gathered (time flat in G). One input at a
    time, (BM, BN) tiles."""
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    mask_n = offs_n < OUT
    acc = tl.zeros((BM, BN), dtype=y_ptr.dtype.element_ty)
    for p in range(0, IN):  # input p as a (BM, 1) tile
        _, offs_p, mask_p, mask_x, xs = _input_tile_at(xs_ptr, tl.program_id(0), p, B, IN, BM, 1)
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
            xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
        )
        nan = xs != xs
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            v = tl.where(nan, xs, tl.where(ok, _pick(r, v0, v1, v2, v3), 0.0))  # (BM, 1)
            acc += v * _weight_rows(wt_ptr, p, i, ok, offs_n, mask_n, NW, OUT)
        if BASE != 0:
            xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
            a = tl.where(mask_x, _base_value(xb, BASE), 0.0)  # (BM, 1)
            wb = tl.load(wt_ptr + (p * NW + NF) * OUT + offs_n, mask=mask_n, other=0.0)  # (BN,)
            acc += a * wb[None, :]
    tl.store(
        y_ptr + offs_m[:, None] * OUT + offs_n[None, :], acc, mask=(offs_m < B)[:, None] & mask_n[None, :]
    )


@triton.jit
def _sparse_grad_input_kernel(
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
    BM: tl.constexpr,
    BN: tl.constexpr,
):
    """d/dxs[b, p] = sum_r d_r(x[b, p]) <g[b, :], wt[p, j - 3 + r, :]>; d/dxb with b'(xb) and wt[p, NF].
    One program per (input p, block of rows), (BM, BN) tiles, on a 1-D grid (inputs fastest: no
    axis has CUDA's 65535 limit, whatever the batch)."""
    pid = tl.program_id(0)
    p = pid % IN
    offs_m, offs_p, mask_p, mask_x, xs = _input_tile_at(xs_ptr, pid // IN, p, B, IN, BM, 1)
    mask_m = offs_m < B
    j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
        xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
    )
    acc = tl.zeros((BM, 1), dtype=gxs_ptr.dtype.element_ty)
    accb = tl.zeros((BM, 1), dtype=gxs_ptr.dtype.element_ty)
    for n_start in range(0, OUT, BN):
        offs_n = n_start + tl.arange(0, BN)
        mask_n = offs_n < OUT
        g = tl.load(
            g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0
        )
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            w = _weight_rows(wt_ptr, p, i, ok, offs_n, mask_n, NW, OUT)
            acc += tl.sum(g * w, axis=1)[:, None] * _pick(r, d0, d1, d2, d3)
        if BASE != 0:
            wb = tl.load(wt_ptr + (p * NW + NF) * OUT + offs_n, mask=mask_n, other=0.0)
            accb += tl.sum(g * wb[None, :], axis=1)[:, None]
    _store_input_grads(acc, accb, xb_ptr, gxs_ptr, gxb_ptr, offs_m, offs_p, mask_x, IN, BASE, SAME)


@triton.jit
def _locate_kernel(
    xs_ptr,
    key_ptr,
    p0_ptr,
    p1_ptr,
    B,
    IN,
    NF,
    M,
    KIND: tl.constexpr,
    EXTEND: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
):
    """key[p, b] = the interval of x[b, p] plus one, clamped into [0, M] (0: before the grid)."""
    offs_m, offs_p, mask_p, mask_x, xs = _input_tile(xs_ptr, B, IN, BM, BP)
    j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
        xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
    )
    key = tl.minimum(tl.maximum(j + 1, 0), M)
    tl.store(key_ptr + offs_p[None, :] * B + offs_m[:, None], key, mask=mask_x)


@triton.jit
def _sparse_grad_weight_kernel(
    xs_ptr,
    g_ptr,
    perm_ptr,
    start_ptr,
    part_ptr,
    p0_ptr,
    p1_ptr,
    B,
    IN,
    OUT,
    NF,
    M,
    NJ,
    KIND: tl.constexpr,
    EXTEND: tl.constexpr,
    BR: tl.constexpr,
    BN: tl.constexpr,
):
    """part[p, jj, r, q] = sum over the rows b whose input p lies in interval jj of v_r(x[b, p]) g[b, q]
    (rows grouped by interval beforehand: perm, start). One program per (input, interval, outputs)."""
    p = tl.program_id(0)
    jj = tl.program_id(1)
    offs_n = tl.program_id(2) * BN + tl.arange(0, BN)
    mask_n = offs_n < OUT
    begin = tl.load(start_ptr + p * (M + 2) + jj + 1)
    end = tl.load(start_ptr + p * (M + 2) + jj + 2)
    offs_p = p + tl.arange(0, 1)
    mask_p = offs_p < IN
    acc0 = tl.zeros((BN,), dtype=part_ptr.dtype.element_ty)
    acc1 = tl.zeros((BN,), dtype=part_ptr.dtype.element_ty)
    acc2 = tl.zeros((BN,), dtype=part_ptr.dtype.element_ty)
    acc3 = tl.zeros((BN,), dtype=part_ptr.dtype.element_ty)
    for r_start in range(begin, end, BR):
        offs_r = r_start + tl.arange(0, BR)
        mask_r = offs_r < end
        rows = tl.load(perm_ptr + p * B + offs_r, mask=mask_r, other=0)
        xs = tl.load(
            xs_ptr + rows[:, None] * IN + offs_p[None, :], mask=mask_r[:, None], other=0.0
        )  # (BR, 1)
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
            xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
        )
        g = tl.load(
            g_ptr + rows[:, None] * OUT + offs_n[None, :], mask=mask_r[:, None] & mask_n[None, :], other=0.0
        )
        nan = xs != xs
        acc0 += tl.sum(tl.where(nan, xs, v0) * g, axis=0)
        acc1 += tl.sum(tl.where(nan, xs, v1) * g, axis=0)
        acc2 += tl.sum(tl.where(nan, xs, v2) * g, axis=0)
        acc3 += tl.sum(tl.where(nan, xs, v3) * g, axis=0)
    base = part_ptr + ((p * NJ + jj) * 4) * OUT + offs_n
    tl.store(base, acc0, mask=mask_n)
    tl.store(base + OUT, acc1, mask=mask_n)
    tl.store(base + 2 * OUT, acc2, mask=mask_n)
    tl.store(base + 3 * OUT, acc3, mask=mask_n)


#: Tiles of the sparse kernels: (rows, outputs, warps) of the forward and of the input gradient.
#: Each program gathers, for every input, weight rows of that input's table (G + k rows by the
#: tile's outputs): many rows a tile let the rows reuse the table from the L1 cache instead of
#: reading it from L2 again (at G = 200, w256, B8192: about 1.7 GB of L2 reads per pass with 256
#: rows a tile, 8-13 GB with 32). Chosen by that estimate and so that neither kernel spills
#: registers compiled for sm_90 (``python benchmarks/kernel_compile.py``; the input gradient's
#: earlier (128, 64, 4) spilled 6-7 KB a thread); not yet timed on a GPU
#: (``benchmarks/layer_speed.py --device cuda`` times variants of them).
SPARSE_TILES = {"forward": (128, 32, 4), "grad_input": (128, 16, 8)}


class SparseEdges(torch.autograd.Function):
    """Cubic B-splines touching only the four non-zero functions per input (large grids): weight
    rows gathered in the forward and the input gradient; for the weight gradient the batch rows of
    each input are grouped by interval (a sort), so every (input, interval) sums its rows once,
    deterministically. Time flat in G; float32/float64 (no low-precision products).

    Experimental: the first version (3-D tiles: rows x inputs x outputs, reduced over the inputs)
    passed in Triton's interpreter but its forward gave wrong values on an H200 (2026-12-04;
    tests/unit/test_triton.py::test_sparse_kernels_match_the_pytorch_path). The forward and input
    gradient now take one input at a time in 2-D tiles, as every other kernel here does
    (2026-12-06, interpreter only): the path chooser takes this path only when forced until a GPU
    run confirms it."""

    @staticmethod
    def forward(ctx, xs, xb, wt, p0, p1, spec: KernelSpec):
        batch, n_in = xs.shape
        n_w, out = wt.shape[1], wt.shape[2]
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
        bm, bn, warps = SPARSE_TILES["forward"]
        _sparse_forward_kernel[(cdiv(batch, bm), cdiv(out, bn))](
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
            n_w,
            m,
            KIND=spec.kind,
            BASE=spec.base,
            EXTEND=spec.extend,
            BM=bm,
            BN=bn,
            num_warps=warps,
        )
        ctx.spec, ctx.m, ctx.same = spec, m, xs is xb
        ctx.save_for_backward(xs, xb, wt, p0, p1)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        xs, xb, wt, p0, p1 = ctx.saved_tensors
        spec: KernelSpec = ctx.spec
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            return _reference_backward(ctx, grad_out, xs, xb, wt, spec, needs)
        g = grad_out.to(xs.dtype).contiguous()
        batch, n_in = xs.shape
        n_w, out = wt.shape[1], wt.shape[2]
        nf, m = spec.num_functions, ctx.m
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        need_xs, need_xb, need_w = needs
        grad_xs = grad_xb = grad_wt = None
        if need_xs or need_xb:
            grad_xs = torch.empty_like(xs)
            grad_xb = torch.empty_like(xb) if has_base and not same else None
            bm, bn, warps = SPARSE_TILES["grad_input"]
            _sparse_grad_input_kernel[(n_in * cdiv(batch, bm),)](
                xs,
                xb,
                wt,
                g,
                grad_xs,
                grad_xs if grad_xb is None else grad_xb,
                p0,
                p1,
                batch,
                n_in,
                out,
                nf,
                n_w,
                m,
                KIND=spec.kind,
                BASE=spec.base,
                EXTEND=spec.extend,
                SAME=same,
                BM=bm,
                BN=bn,
                num_warps=warps,
            )
        if need_w:
            key = torch.empty(n_in, batch, dtype=torch.int32, device=xs.device)
            _locate_kernel[(cdiv(batch, 64), cdiv(n_in, 16))](
                xs,
                key,
                p0,
                p1,
                batch,
                n_in,
                nf,
                m,
                KIND=spec.kind,
                EXTEND=spec.extend,
                BM=64,
                BP=16,
            )
            sorted_key, perm = torch.sort(key, dim=1)  # rows of each input grouped by interval
            bounds = torch.arange(m + 2, dtype=torch.int32, device=xs.device).expand(n_in, -1).contiguous()
            start = torch.searchsorted(sorted_key, bounds).to(torch.int32)  # (in, M + 2)
            n_j = m - 1  # intervals of the extended grid
            part = torch.empty(n_in, n_j, 4, out, dtype=xs.dtype, device=xs.device)
            bn = 64 if out > 32 else 32
            _sparse_grad_weight_kernel[(n_in, n_j, cdiv(out, bn))](
                xs,
                g,
                perm.to(torch.int32),
                start,
                part,
                p0,
                p1,
                batch,
                n_in,
                out,
                nf,
                m,
                n_j,
                KIND=spec.kind,
                EXTEND=spec.extend,
                BR=32,
                BN=bn,
            )
            grad_wt = torch.zeros_like(wt)
            for r in range(4):  # function i gets slot r of interval i + 3 - r
                grad_wt[:, :nf] += part[:, 3 - r : 3 - r + nf, r]
            if has_base:
                base = BASE_ACTIVATIONS_TORCH[spec.base](xb)
                grad_wt[:, nf] = base.t() @ g
        if not need_xs:
            grad_xs = None
        if not need_xb:
            grad_xb = None
        return grad_xs, grad_xb, grad_wt, None, None, None
