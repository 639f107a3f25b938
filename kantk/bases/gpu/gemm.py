"""The GEMM form (default): one Triton pass writes the basis matrix of a chunk of rows, cuBLAS
multiplies it, one pass contracts the matrix gradient with the basis derivatives; the layer's
weight is composed in the same launch as the matrix, and its gradient split in the same launch as
the contraction (the tiles of both parts share one 1-D grid): two Triton launches a step.
"""

from __future__ import annotations

from typing import NamedTuple

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
    _input_tile_at,
    _layer_reference_backward,
    _pick,
    _rbf_value,
    _squash,
    _store_input_grads,
    cdiv,
    row_chunks,
)


@triton.jit
def _fill_tile(
    pid_m,
    pid_p,
    xs_ptr,
    xb_ptr,
    a_ptr,
    p0_ptr,
    p1_ptr,
    ROWS,
    IN,
    NF,
    NW,
    M,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
):
    """a[b, i * IN + p] = A_i(xs[b, p]) for i < NF, and b(xb[b, p]) at i = NF: the basis matrix,
    basis-major (stores run along the inputs), in one pass; tile (pid_m, pid_p) of rows x inputs."""
    offs_m, offs_p, mask_p, mask_x, xs = _input_tile_at(xs_ptr, pid_m, pid_p, ROWS, IN, BM, BP)
    out = a_ptr + offs_m[:, None] * (NW * IN) + offs_p[None, :]
    dt = a_ptr.dtype.element_ty
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
            xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
        )
        for i in range(0, NF):
            a = _pick(i - j + 3, v0, v1, v2, v3)
            a = tl.where(xs == xs, a, xs)  # NaN in, NaN out
            tl.store(out + i * IN, a.to(dt), mask=mask_x)
    elif KIND == 2:
        z, dz = _squash(xs, offs_p, mask_p, p0_ptr, p1_ptr)
        t_prev = z
        t_cur = tl.full(xs.shape, 1.0, xs.dtype)
        for i in range(0, NF):
            tl.store(out + i * IN, t_cur.to(dt), mask=mask_x)
            t_next = 2.0 * z * t_cur - t_prev
            t_prev = t_cur
            t_cur = t_next
    else:
        for i in range(0, NF):
            a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
            tl.store(out + i * IN, a.to(dt), mask=mask_x)
    if BASE != 0:
        xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        tl.store(out + NF * IN, _base_value(xb, BASE).to(dt), mask=mask_x)


@triton.jit
def _contract_tile(
    pid_m,
    pid_p,
    xs_ptr,
    xb_ptr,
    g_ptr,
    gxs_ptr,
    gxb_ptr,
    p0_ptr,
    p1_ptr,
    ROWS,
    IN,
    NF,
    NW,
    M,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    SAME: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
):
    """d/dxs[b, p] = sum_i g[b, i * IN + p] A_i'(xs[b, p]), d/dxb[b, p] = g[b, NF * IN + p] b'(xb[b, p]),
    where g = dL/d(basis matrix) (rows, NW * IN), basis-major; tile (pid_m, pid_p) of rows x inputs."""
    offs_m, offs_p, mask_p, mask_x, xs = _input_tile_at(xs_ptr, pid_m, pid_p, ROWS, IN, BM, BP)
    grow = g_ptr + offs_m[:, None] * (NW * IN) + offs_p[None, :]
    acc = tl.zeros(xs.shape, dtype=xs.dtype)
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(
            xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND
        )
        # only the four intervals' functions j-3 .. j are non-zero: gather their four columns
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            gi = tl.load(grow + tl.where(ok, i, 0) * IN, mask=ok, other=0.0)
            acc += gi.to(xs.dtype) * _pick(r, d0, d1, d2, d3)
    elif KIND == 2:
        z, dz = _squash(xs, offs_p, mask_p, p0_ptr, p1_ptr)
        t_prev = z
        t_cur = tl.full(xs.shape, 1.0, xs.dtype)
        u_prev = tl.full(xs.shape, 1.0, xs.dtype)
        u_cur = tl.zeros(xs.shape, dtype=xs.dtype)
        for i in range(0, NF):
            gi = tl.load(grow + i * IN, mask=mask_x, other=0.0)
            acc += gi.to(xs.dtype) * u_cur
            u_next = 2.0 * t_cur + 2.0 * z * u_cur - u_prev
            t_next = 2.0 * z * t_cur - t_prev
            t_prev = t_cur
            t_cur = t_next
            u_prev = u_cur
            u_cur = u_next
        acc = acc * dz  # d/dz to d/dx
    else:
        for i in range(0, NF):
            a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
            gi = tl.load(grow + i * IN, mask=mask_x, other=0.0)
            acc += gi.to(xs.dtype) * da
    s_base = acc
    if BASE != 0:
        s_base = tl.load(grow + NF * IN, mask=mask_x, other=0.0).to(xs.dtype)
    _store_input_grads(acc, s_base, xb_ptr, gxs_ptr, gxb_ptr, offs_m, offs_p, mask_x, IN, BASE, SAME)


@triton.jit
def _compose_tile(
    pid_r,
    pid_q,
    coef_ptr,
    scale_ptr,
    bw_ptr,
    em_ptr,
    w_ptr,
    IN,
    OUT,
    NF,
    NW,
    HAS_BW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BR: tl.constexpr,
    BQ: tl.constexpr,
):
    """w[i * IN + p, q] = coef[q, p, i] * scale[q, p] (i < NF), bw[q, p] (i = NF): the GEMM's weight,
    both times the edge mask em[q, p] when HAS_MASK; tile (pid_r, pid_q) of its rows x outputs."""
    offs_r = pid_r * BR + tl.arange(0, BR)
    offs_q = pid_q * BQ + tl.arange(0, BQ)
    i = offs_r // IN
    p = offs_r % IN
    mask = (offs_r < NW * IN)[:, None] & (offs_q < OUT)[None, :]
    qp = offs_q[None, :] * IN + p[:, None]  # index of (q, p)
    spline = i[:, None] < NF
    c = tl.load(coef_ptr + qp * NF + tl.where(spline, i[:, None], 0), mask=mask & spline, other=0.0)
    sc = tl.load(scale_ptr + qp, mask=mask & spline, other=0.0)
    w = c * sc
    if HAS_BW:
        b = tl.load(bw_ptr + qp, mask=mask & (i[:, None] >= NF), other=0.0)
        w = tl.where(spline, w, b)
    if HAS_MASK:
        w = w * tl.load(em_ptr + qp, mask=mask, other=0.0)
    tl.store(w_ptr + offs_r[:, None] * OUT + offs_q[None, :], w.to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _decompose_tile(
    pid_p,
    pid_q,
    g_ptr,
    coef_ptr,
    scale_ptr,
    gcoef_ptr,
    gscale_ptr,
    gbw_ptr,
    em_ptr,
    IN,
    OUT,
    NF,
    NEED_COEF: tl.constexpr,
    NEED_SCALE: tl.constexpr,
    NEED_BW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BP: tl.constexpr,
    BQ: tl.constexpr,
):
    """From g = dL/dw (NW * IN, OUT): dL/dcoef = g * scale, dL/dscale = sum_i g * coef, dL/dbw = g[NF],
    each times the edge mask em when HAS_MASK; tile (pid_p, pid_q) of inputs x outputs."""
    offs_p = pid_p * BP + tl.arange(0, BP)
    offs_q = pid_q * BQ + tl.arange(0, BQ)
    mask = (offs_p < IN)[:, None] & (offs_q < OUT)[None, :]
    qp = offs_q[None, :] * IN + offs_p[:, None]
    sc = tl.load(scale_ptr + qp, mask=mask, other=0.0)
    em = tl.full((BP, BQ), 1.0, sc.dtype)
    if HAS_MASK:
        em = tl.load(em_ptr + qp, mask=mask, other=0.0)
        sc = sc * em
    acc = tl.zeros((BP, BQ), dtype=gscale_ptr.dtype.element_ty)
    for i in range(0, NF):
        g = tl.load(g_ptr + (i * IN + offs_p[:, None]) * OUT + offs_q[None, :], mask=mask, other=0.0)
        if NEED_COEF:
            tl.store(gcoef_ptr + qp * NF + i, (g * sc).to(gcoef_ptr.dtype.element_ty), mask=mask)
        if NEED_SCALE:
            c = tl.load(coef_ptr + qp * NF + i, mask=mask, other=0.0)
            acc += (g * c).to(acc.dtype)
    if NEED_SCALE:
        tl.store(gscale_ptr + qp, (acc * em).to(gscale_ptr.dtype.element_ty), mask=mask)
    if NEED_BW:
        g = tl.load(g_ptr + (NF * IN + offs_p[:, None]) * OUT + offs_q[None, :], mask=mask, other=0.0)
        tl.store(gbw_ptr + qp, (g * em).to(gbw_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _prepare_kernel(
    xs_ptr,
    xb_ptr,
    a_ptr,
    p0_ptr,
    p1_ptr,
    ROWS,
    IN,
    NF,
    NW,
    M,
    coef_ptr,
    scale_ptr,
    bw_ptr,
    em_ptr,
    w_ptr,
    OUT,
    N_FILL,
    TILES_P,
    TILES_Q,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    HAS_BW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
    BR: tl.constexpr,
    BQ: tl.constexpr,
):
    """The forward's one launch (1-D grid): programs [0, N_FILL) write tiles of the basis matrix
    (TILES_P input tiles per row tile), the others tiles of the composed weight (TILES_Q output
    tiles per row tile). Either part may have no programs."""
    pid = tl.program_id(0)
    if pid < N_FILL:
        _fill_tile(
            pid // TILES_P,
            pid % TILES_P,
            xs_ptr,
            xb_ptr,
            a_ptr,
            p0_ptr,
            p1_ptr,
            ROWS,
            IN,
            NF,
            NW,
            M,
            KIND,
            BASE,
            EXTEND,
            BM,
            BP,
        )
    else:
        k = pid - N_FILL
        _compose_tile(
            k // TILES_Q,
            k % TILES_Q,
            coef_ptr,
            scale_ptr,
            bw_ptr,
            em_ptr,
            w_ptr,
            IN,
            OUT,
            NF,
            NW,
            HAS_BW,
            HAS_MASK,
            BR,
            BQ,
        )


@triton.jit
def _finish_kernel(
    xs_ptr,
    xb_ptr,
    gm_ptr,
    gxs_ptr,
    gxb_ptr,
    p0_ptr,
    p1_ptr,
    ROWS,
    IN,
    NF,
    NW,
    M,
    gw_ptr,
    coef_ptr,
    scale_ptr,
    gcoef_ptr,
    gscale_ptr,
    gbw_ptr,
    em_ptr,
    OUT,
    N_CONTRACT,
    TILES_P,
    TILES_Q,
    KIND: tl.constexpr,
    BASE: tl.constexpr,
    EXTEND: tl.constexpr,
    SAME: tl.constexpr,
    NEED_COEF: tl.constexpr,
    NEED_SCALE: tl.constexpr,
    NEED_BW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BM: tl.constexpr,
    BP: tl.constexpr,
    BPD: tl.constexpr,
    BQ: tl.constexpr,
):
    """The backward's one launch after its GEMMs (1-D grid): programs [0, N_CONTRACT) contract tiles
    of dL/d(basis matrix) ``gm`` into the input gradients (TILES_P input tiles per row tile), the
    others split tiles of dL/dw ``gw`` into the weights' gradients (TILES_Q output tiles per input
    tile). Either part may have no programs."""
    pid = tl.program_id(0)
    if pid < N_CONTRACT:
        _contract_tile(
            pid // TILES_P,
            pid % TILES_P,
            xs_ptr,
            xb_ptr,
            gm_ptr,
            gxs_ptr,
            gxb_ptr,
            p0_ptr,
            p1_ptr,
            ROWS,
            IN,
            NF,
            NW,
            M,
            KIND,
            BASE,
            EXTEND,
            SAME,
            BM,
            BP,
        )
    else:
        k = pid - N_CONTRACT
        _decompose_tile(
            k // TILES_Q,
            k % TILES_Q,
            gw_ptr,
            coef_ptr,
            scale_ptr,
            gcoef_ptr,
            gscale_ptr,
            gbw_ptr,
            em_ptr,
            IN,
            OUT,
            NF,
            NEED_COEF,
            NEED_SCALE,
            NEED_BW,
            HAS_MASK,
            BPD,
            BQ,
        )


#: Rows per chunk of the GEMM form are chosen so one chunk's basis matrix holds about this many
#: elements (256 MB in float32): memory stays bounded whatever the batch.
GEMM_CHUNK_ELEMENTS = 1 << 26

#: A basis matrix of at most this many elements (128 MB in float32), made in one chunk, is kept
#: from the forward for the weight gradient instead of being written again in the backward: small
#: layers are bound by kernel launches on a GPU (one launch and one pass fewer per step), large
#: ones by their GEMMs, where holding the matrix between forward and backward would cost memory
#: for little time.
GEMM_KEEP_ELEMENTS = 1 << 25


def _chunks(rows: int, per_row: int) -> list[tuple[int, int]]:
    """Row ranges of at most GEMM_CHUNK_ELEMENTS matrix elements; one empty range for no rows (the
    weight is still composed, and its gradient, zero, still split)."""
    return row_chunks(rows, per_row, GEMM_CHUNK_ELEMENTS)


#: Whether this PyTorch has ``torch.mm(a, b, out_dtype)`` (float32 results of bf16/fp16 products
#: on CUDA, straight from cuBLAS's float32 accumulator); set to False if it ever refuses a call.
_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()


def _mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` as ``dtype``. Under autocast (bf16/fp16 operands, float32 wanted) on CUDA cuBLAS
    writes float32 directly: no rounding to bf16 first and no cast kernel after."""
    global _MM_OUT_DTYPE
    if a.dtype == dtype:
        return torch.mm(a, b)
    if _MM_OUT_DTYPE and a.is_cuda and dtype == torch.float32 and a.dtype in _LOW_TYPES:
        try:
            return torch.mm(a, b, out_dtype=dtype)
        except (RuntimeError, TypeError, NotImplementedError):  # a build or layout it does not take
            _MM_OUT_DTYPE = False
    return torch.mm(a, b).to(dtype)


#: Tiles of the GEMM form's two kernels: ``elements`` per tile of the basis matrix and of its
#: gradient (rows x inputs, up to 64 inputs wide), of the composed weight (``weight``: its rows x
#: outputs) and of its gradient's split (``split``: inputs x outputs), and the warps of a program.
#: Chosen so no variant spills registers when compiled for sm_90 (registers and spills from
#: ptxas: ``python benchmarks/kernel_compile.py``), at 4 elements a thread: these kernels are
#: bound by memory, and fewer registers a thread let more warps hide its latency. The earlier
#: tiles (2048 elements, 4 warps: 255 registers, spilling 36-472 bytes a thread in the backward's
#: launch) are timed beside them by ``benchmarks/layer_speed.py --device cuda``.
class GemmTiles(NamedTuple):
    elements: int
    weight: tuple[int, int]
    split: tuple[int, int]
    warps: int


GEMM_TILES = GemmTiles(elements=1024, weight=(16, 64), split=(16, 64), warps=8)


def _elementwise_blocks(n_in: int) -> tuple[int, int]:
    bp = 64 if n_in > 32 else (32 if n_in > 16 else 16)
    return GEMM_TILES.elements // bp, bp


def _prepare(xs, xb, p0, p1, spec: KernelSpec, m: int, n_w: int, dtype: torch.dtype, weights=None):
    """One launch: the basis matrix (rows, n_w * in) of a chunk of rows, basis-major, and, when
    ``weights`` = (coef, scale, base weight or None, edge mask or None) is given, the composed
    weight (n_w * in, out); both in ``dtype``. Returns (basis, weight or None)."""
    rows, n_in = xs.shape
    bm, bp = _elementwise_blocks(n_in)
    basis = torch.empty(rows, n_w * n_in, dtype=dtype, device=xs.device)
    tiles_p = cdiv(n_in, bp)
    n_fill = cdiv(rows, bm) * tiles_p
    w = None
    n_compose, tiles_q, out = 0, 1, 1
    coef = scale = bw = em = xs  # stand-ins when no weight is composed (never read)
    has_bw = has_mask = False
    br, bq = GEMM_TILES.weight
    if weights is not None:
        coef, scale, bw_or_none, em_or_none = weights
        has_bw, has_mask = bw_or_none is not None, em_or_none is not None
        bw = bw_or_none if has_bw else scale
        em = em_or_none if has_mask else scale
        out = coef.shape[0]
        w = torch.empty(n_w * n_in, out, dtype=dtype, device=xs.device)
        tiles_q = cdiv(out, bq)
        n_compose = cdiv(n_w * n_in, br) * tiles_q
    if n_fill + n_compose > 0:
        _prepare_kernel[(n_fill + n_compose,)](
            xs,
            xb,
            basis,
            p0,
            p1,
            rows,
            n_in,
            spec.num_functions,
            n_w,
            m,
            coef,
            scale,
            bw,
            em,
            basis if w is None else w,
            out,
            n_fill,
            tiles_p,
            tiles_q,
            KIND=spec.kind,
            BASE=spec.base,
            EXTEND=spec.extend,
            HAS_BW=has_bw,
            HAS_MASK=has_mask,
            BM=bm,
            BP=bp,
            BR=br,
            BQ=bq,
            num_warps=GEMM_TILES.warps,
        )
    return basis, w


def _finish(
    spec: KernelSpec, m: int, n_w: int, same: bool, xs, xb, p0, p1, contract=None, split=None
) -> None:
    """One launch after the backward's GEMMs: ``contract`` = (dL/d(basis matrix), grad xs, grad xb)
    of the chunk of rows ``xs``, ``xb`` into its input gradients, and ``split`` = (dL/dw, coef,
    scale, edge mask or None, grad coef, grad scale, grad base weight; None for a gradient not
    wanted) into the weights' gradients. Either may be None."""
    rows, n_in = xs.shape
    bm, bp = _elementwise_blocks(n_in)
    n_contract, tiles_p = 0, cdiv(n_in, bp)
    gm = gxs = gxb = xs  # stand-ins (never read or written)
    if contract is not None:
        gm, gxs, gxb = contract
        n_contract = cdiv(rows, bm) * tiles_p
    bpd, bq = GEMM_TILES.split
    n_split, tiles_q, out = 0, 1, 1
    gw = coef = scale = gcoef = gscale = gbw = em = xs
    need = (False, False, False)
    has_mask = False
    if split is not None:
        gw, coef, scale, em_or_none, gc, gs, gb = split
        has_mask = em_or_none is not None
        em = em_or_none if has_mask else scale
        need = (gc is not None, gs is not None, gb is not None)
        gcoef = coef if gc is None else gc
        gscale = scale if gs is None else gs
        gbw = scale if gb is None else gb
        out = coef.shape[0]
        tiles_q = cdiv(out, bq)
        n_split = cdiv(n_in, bpd) * tiles_q
    if n_contract + n_split == 0:
        return
    _finish_kernel[(n_contract + n_split,)](
        xs,
        xb,
        gm,
        gxs,
        gxb,
        p0,
        p1,
        rows,
        n_in,
        spec.num_functions,
        n_w,
        m,
        gw,
        coef,
        scale,
        gcoef,
        gscale,
        gbw,
        em,
        out,
        n_contract,
        tiles_p,
        tiles_q,
        KIND=spec.kind,
        BASE=spec.base,
        EXTEND=spec.extend,
        SAME=same,
        NEED_COEF=need[0],
        NEED_SCALE=need[1],
        NEED_BW=need[2],
        HAS_MASK=has_mask,
        BM=bm,
        BP=bp,
        BPD=bpd,
        BQ=bq,
        num_warps=GEMM_TILES.warps,
    )


class GemmLayer(torch.autograd.Function):
    """The GEMM form taking the layer's own weights (coef, scale, base weight, and the edge mask
    or None): the weight of the GEMM is composed (the mask applied), and its gradient split back,
    inside the launch that also writes the basis matrix (forward) or contracts its gradient
    (backward): a training step of a small layer launches two Triton kernels and three cuBLAS
    GEMMs and no other op (on a GPU, small layers are bound by launches)."""

    @staticmethod
    def forward(ctx, xs, xb, coef, scale, bw, mask, p0, p1, spec: KernelSpec, low, keep: bool = False):
        """``mask``: (out, in) applied to ``scale`` and ``bw`` inside the kernels (no gradient), or
        None. ``keep``: a backward for the weights will run (grad mode on outside this function,
        whose forward always runs without it), so a small basis matrix is worth keeping for it."""
        batch, n_in = xs.shape
        out, nf = coef.shape[0], coef.shape[2]
        n_w = nf + (bw is not None)
        wdtype = low if low is not None else xs.dtype
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        chunks = _chunks(batch, n_w * n_in)
        kept = w2t = None
        if len(chunks) == 1:
            basis, w2t = _prepare(xs, xb, p0, p1, spec, m, n_w, wdtype, (coef, scale, bw, mask))
            y = _mm(basis, w2t, xs.dtype)
            if keep and basis.numel() <= GEMM_KEEP_ELEMENTS:
                kept = basis  # the weight gradient's GEMM reads it again
        else:
            y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
            for a, b in chunks:  # the weight composed with the first chunk's matrix
                weights = (coef, scale, bw, mask) if w2t is None else None
                basis, w_new = _prepare(xs[a:b], xb[a:b], p0, p1, spec, m, n_w, wdtype, weights)
                w2t = w_new if w2t is None else w2t
                y[a:b] = _mm(basis, w2t, xs.dtype)
                del basis
        ctx.spec, ctx.m, ctx.same, ctx.low, ctx.has_bw = spec, m, xs is xb, low, bw is not None
        ctx.save_for_backward(xs, xb, coef, scale, bw, mask, p0, p1, w2t, kept)
        return y

    @staticmethod
    def backward(ctx, grad_out):
        xs, xb, coef, scale, bw, mask, p0, p1, w2t, kept = ctx.saved_tensors
        spec: KernelSpec = ctx.spec
        if torch.is_grad_enabled():  # create_graph=True: through the composed weight's reference
            return _layer_reference_backward(ctx, grad_out, xs, xb, coef, scale, bw, mask, spec)
        need_xs, need_xb, need_coef, need_scale, need_bw = ctx.needs_input_grad[:5]
        need_w = need_coef or need_scale or need_bw
        batch, n_in = xs.shape
        n_w = w2t.shape[0] // n_in
        g = grad_out.to(w2t.dtype)
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        grad_xs = torch.empty_like(xs) if (need_xs or need_xb) else None
        grad_xb = torch.empty_like(xb) if grad_xs is not None and has_base and not same else None
        grad_coef = torch.empty_like(coef) if need_coef else None
        grad_scale = torch.empty_like(scale) if need_scale else None
        grad_bw = torch.empty_like(bw) if (need_bw and bw is not None) else None
        acc_dtype = torch.float32 if w2t.dtype in _LOW_TYPES else w2t.dtype
        chunks = _chunks(batch, n_w * n_in)
        grad_w2t: torch.Tensor | None = None
        for a, b in chunks:
            whole = a == 0 and b == batch  # one chunk: no slicing (each view costs launch-bound time)
            gc = g if whole else g[a:b]
            xs_c, xb_c = (xs, xb) if whole else (xs[a:b], xb[a:b])
            if need_w:
                basis = (
                    kept if kept is not None else _prepare(xs_c, xb_c, p0, p1, spec, ctx.m, n_w, w2t.dtype)[0]
                )
                part = _mm(basis.t(), gc, acc_dtype)  # (n_w * in, out)
                grad_w2t = part if grad_w2t is None else grad_w2t.add_(part)
                del basis
            contract = None
            if grad_xs is not None:
                gmat = torch.mm(gc, w2t.t())  # (rows, n_w * in): dL/d(basis matrix)
                gxs_c = grad_xs if whole else grad_xs[a:b]
                gxb_c = gxs_c if grad_xb is None else (grad_xb if whole else grad_xb[a:b])
                contract = (gmat, gxs_c, gxb_c)
            split = None
            if need_w and b == batch:  # the last chunk's launch also splits dL/dw
                split = (grad_w2t, coef, scale, mask, grad_coef, grad_scale, grad_bw)
            _finish(spec, ctx.m, n_w, same, xs_c, xb_c, p0, p1, contract, split)
        return (
            grad_xs if need_xs else None,
            grad_xb if need_xb else None,
            grad_coef,
            grad_scale,
            grad_bw,
            None,  # mask
            None,
            None,
            None,
            None,
            None,
        )
