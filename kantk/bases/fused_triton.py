"""Fused KAN-layer kernels for CUDA in Triton, shared by the built-in bases (optional).

A KAN layer is one GEMM ``y = [B(x) | b(x)] @ W`` whose A operand, the basis values of every
input plus the base branch ``b(x)`` (SiLU), is cheap to compute and expensive to store. These
kernels never write it to memory: each program evaluates the basis values of its tile of inputs
in registers, one basis function at a time, and multiplies them into the matching tile of the
weight with ``tl.dot``. The backward does the same for the input gradient (with the basis
derivatives) and for the weight gradient (a GEMM over the batch).

Kinds of basis (the ``KIND`` constant of the kernels):

* ``BSPLINE_UNIFORM``: cubic B-splines on equally spaced knots, the closed local form (for an
  input in interval ``j`` only the bases ``j-3 .. j`` are non-zero; four cubic pieces of the
  fractional position);
* ``BSPLINE_KNOTS``: cubic B-splines on any non-decreasing knots (after ``update_grid``): the
  interval is found by counting knots, the four values by de Boor's recursion, unrolled;
* ``CHEBYSHEV``: Chebyshev polynomials of an already squashed input ``z`` (the caller applies
  tanh), by the three-term recurrence carried over the loop of functions;
* ``RBF``: Gaussian bumps ``exp(-((x - c_i) / w)^2)``.

Weights arrive composed and basis-major, ``wt`` (in, n_w, out) with ``wt[p, i, q]`` the weight of
function ``i`` of input ``p`` in output ``q`` and, when the layer has a base branch, its weight in
the last slot ``i = n``. The kernels take two inputs: ``xs`` (what the basis sees: clamped, or
tanh-squashed, by differentiable PyTorch ops before) and ``xb`` (what the base branch sees).

Only imported where Triton is installed (``pip install kantk[gpu]``); with ``TRITON_INTERPRET=1``
the same kernels run on CPU tensors (how CI tests them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import triton
import triton.language as tl

BSPLINE_UNIFORM = 0
BSPLINE_KNOTS = 1
CHEBYSHEV = 2
RBF = 3

BASE_NONE = 0
BASE_SILU = 1
BASE_IDENTITY = 2

#: Names of the base activations the kernels fuse.
BASE_KINDS = {"zero": BASE_NONE, "silu": BASE_SILU, "identity": BASE_IDENTITY}


def interpreting() -> bool:
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``: kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# ----------------------------------------------------------------------------- device helpers


@triton.jit
def _cubic_pieces(t):
    """Values and derivatives (per grid unit) of the four non-zero cubic pieces at t in [0, 1)."""
    s = 1.0 - t
    t2 = t * t
    t3 = t2 * t
    v0 = s * s * s * (1.0 / 6.0)
    v3 = t3 * (1.0 / 6.0)
    v1 = t3 * 0.5 - t2 + 2.0 / 3.0
    v2 = 1.0 - v0 - v1 - v3
    d0 = s * s * -0.5
    d3 = t2 * 0.5
    d1 = t2 * 1.5 - 2.0 * t
    d2 = -(d0 + d1 + d3)
    return v0, v1, v2, v3, d0, d1, d2, d3


@triton.jit
def _safe_div(num, den):
    return tl.where(den > 0, num / tl.where(den > 0, den, 1.0), 0.0)


@triton.jit
def _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND: tl.constexpr, EXTEND: tl.constexpr):
    """Interval j (int32) and the four local values and d/dx of every input of a tile.

    ``KIND == BSPLINE_UNIFORM``: p0 = first knot (in,), p1 = 1 / spacing (in,).
    ``KIND == BSPLINE_KNOTS``: p0 = knots (in, M), row-major.
    """
    if KIND == 0:
        t0 = tl.load(p0_ptr + offs_p, mask=mask_p, other=0.0)
        inv_h = tl.load(p1_ptr + offs_p, mask=mask_p, other=1.0)
        s = (xs - t0[None, :]) * inv_h[None, :]  # position in grid units from the first knot
        sc = tl.minimum(tl.maximum(s, -2.0), M + 1.0)  # huge inputs: every basis is zero anyway
        jf = tl.floor(sc)
        jf = tl.where(s == s, jf, 0.0)  # NaN: a valid interval, NaN values
        j = jf.to(tl.int32)
        if EXTEND:
            j = tl.minimum(tl.maximum(j, 3), NF - 1)
        t = s - j.to(s.dtype)
        v0, v1, v2, v3, d0, d1, d2, d3 = _cubic_pieces(t)
        scale = inv_h[None, :]
        d0 = d0 * scale
        d1 = d1 * scale
        d2 = d2 * scale
        d3 = d3 * scale
    else:
        # interval: the number of knots <= x, minus one (-1 before the first knot)
        cnt = tl.zeros(xs.shape, dtype=tl.int32)
        row = offs_p * M
        for m in range(0, M):
            km = tl.load(p0_ptr + row + m, mask=mask_p, other=0.0)
            cnt += (xs >= km[None, :]).to(tl.int32)
        j = cnt - 1
        if EXTEND:
            j = tl.minimum(tl.maximum(j, 3), NF - 1)
        base = row[None, :]
        pm = mask_p[None, :]
        # knots t_{j-2} .. t_{j+3}, clamped into the vector (values for missing bases are dropped)
        tm2 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j - 2, 0), M - 1), mask=pm, other=0.0)
        tm1 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j - 1, 0), M - 1), mask=pm, other=0.0)
        tj0 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j, 0), M - 1), mask=pm, other=0.0)
        tp1 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j + 1, 0), M - 1), mask=pm, other=0.0)
        tp2 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j + 2, 0), M - 1), mask=pm, other=0.0)
        tp3 = tl.load(p0_ptr + base + tl.minimum(tl.maximum(j + 3, 0), M - 1), mask=pm, other=0.0)
        l1 = xs - tj0
        l2 = xs - tm1
        l3 = xs - tm2
        r1 = tp1 - xs
        r2 = tp2 - xs
        r3 = tp3 - xs
        # de Boor's triangle (degree 1, 2, 3), zero where a knot span has no length
        q = _safe_div(1.0, tp1 - tj0)
        a0 = r1 * q
        a1 = l1 * q
        q = _safe_div(a0, tp1 - tm1)
        b0 = r1 * q
        sv = l2 * q
        q = _safe_div(a1, tp2 - tj0)
        b1 = sv + r2 * q
        b2 = l1 * q
        e0 = _safe_div(b0, tp1 - tm2)
        e1 = _safe_div(b1, tp2 - tm1)
        e2 = _safe_div(b2, tp3 - tj0)
        v0 = r1 * e0
        v1 = l3 * e0 + r2 * e1
        v2 = l2 * e1 + r3 * e2
        v3 = l1 * e2
        d0 = -3.0 * e0
        d1 = 3.0 * (e0 - e1)
        d2 = 3.0 * (e1 - e2)
        d3 = 3.0 * e2
    return j, v0, v1, v2, v3, d0, d1, d2, d3


@triton.jit
def _pick(r, v0, v1, v2, v3):
    """The local value of slot r (0..3), 0 for any other r."""
    out = tl.where(r == 0, v0, 0.0)
    out = tl.where(r == 1, v1, out)
    out = tl.where(r == 2, v2, out)
    out = tl.where(r == 3, v3, out)
    return out


@triton.jit
def _mma(acc, a, b, LOW: tl.constexpr, LOWT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b: in LOWT (bf16/fp16) on tensor cores when LOW, else in the inputs' dtype."""
    if LOW:
        return acc + tl.dot(a.to(LOWT), b.to(LOWT))
    else:
        return acc + tl.dot(a.to(acc.dtype), b.to(acc.dtype), input_precision=PRECISION)


@triton.jit
def _base_value(xb, BASE: tl.constexpr):
    if BASE == 1:
        return xb / (1.0 + tl.exp(-xb))
    else:
        return xb


@triton.jit
def _base_derivative(xb, BASE: tl.constexpr):
    if BASE == 1:
        sig = 1.0 / (1.0 + tl.exp(-xb))
        return sig * (1.0 + xb * (1.0 - sig))
    else:
        return tl.full(xb.shape, 1.0, xb.dtype)


@triton.jit
def _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF):
    c = tl.load(p0_ptr + offs_p * NF + i, mask=mask_p, other=0.0)
    w = tl.load(p1_ptr + offs_p, mask=mask_p, other=1.0)
    z = (xs - c[None, :]) / w[None, :]
    v = tl.exp(-z * z)
    return v, -2.0 * z / w[None, :] * v


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _forward_kernel(
    xs_ptr, xb_ptr, wt_ptr, y_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr, LOW: tl.constexpr,
    LOWT: tl.constexpr, PRECISION: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
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
            j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
            for i in range(0, NF):
                a = _pick(i - j + 3, v0, v1, v2, v3)
                a = tl.where(xs == xs, a, xs)  # NaN in, NaN out
                a = tl.where(mask_x, a, 0.0)
                w = tl.load(w_rows + i * OUT, mask=mask_w, other=0.0)
                acc = _mma(acc, a, w, LOW, LOWT, PRECISION)
        elif KIND == 2:
            # T_{i+1} = 2 z T_i - T_{i-1} from T_{-1} = z, T_0 = 1 (no branch in the loop)
            t_prev = xs
            t_cur = tl.full(xs.shape, 1.0, xs.dtype)
            for i in range(0, NF):
                a = tl.where(mask_x, t_cur, 0.0)
                t_next = 2.0 * xs * t_cur - t_prev
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
    xs_ptr, xb_ptr, wt_ptr, g_ptr, gxs_ptr, gxb_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr, SAME: tl.constexpr,
    LOW: tl.constexpr, LOWT: tl.constexpr, PRECISION: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
):
    """d/dxs[b, p] = sum_i A_i'(xs[b, p]) (g @ wt[p, i, :]^T)[b]; d/dxb likewise with b'(xb)."""
    pid_m = tl.program_id(0)
    pid_p = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_p = pid_p * BP + tl.arange(0, BP)
    mask_m = offs_m < B
    mask_p = offs_p < IN
    mask_x = mask_m[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    acc_s = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
    # Chebyshev: T_{i-1}, T_i and their derivatives, from T_{-1} = z, T_0 = 1, T'_{-1} = 1, T'_0 = 0
    t_prev = xs
    t_cur = tl.full(xs.shape, 1.0, xs.dtype)
    u_prev = tl.full(xs.shape, 1.0, xs.dtype)
    u_cur = tl.zeros(xs.shape, dtype=xs.dtype)
    for i in range(0, NF):
        # (BM, BP) = g (BM, OUT) @ wt[p, i, :]^T (OUT, BP), over tiles of outputs
        s = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
        for n_start in range(0, OUT, BN):
            offs_n = n_start + tl.arange(0, BN)
            mask_n = offs_n < OUT
            g = tl.load(g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0)
            wt = tl.load(wt_ptr + (offs_p[None, :] * NW + i) * OUT + offs_n[:, None],
                         mask=mask_n[:, None] & mask_p[None, :], other=0.0)
            s = _mma(s, g, wt, LOW, LOWT, PRECISION)
        if KIND <= 1:
            da = _pick(i - j + 3, d0, d1, d2, d3)
        elif KIND == 2:
            da = u_cur
            # T'_{i+1} = 2 T_i + 2 z T'_i - T'_{i-1}
            u_next = 2.0 * t_cur + 2.0 * xs * u_cur - u_prev
            t_next = 2.0 * xs * t_cur - t_prev
            t_prev = t_cur
            t_cur = t_next
            u_prev = u_cur
            u_cur = u_next
        else:
            a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
        acc_s += s * da
    if BASE != 0:
        s = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
        for n_start in range(0, OUT, BN):
            offs_n = n_start + tl.arange(0, BN)
            mask_n = offs_n < OUT
            g = tl.load(g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0)
            wt = tl.load(wt_ptr + (offs_p[None, :] * NW + NF) * OUT + offs_n[:, None],
                         mask=mask_n[:, None] & mask_p[None, :], other=0.0)
            s = _mma(s, g, wt, LOW, LOWT, PRECISION)
        xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        gb = s * _base_derivative(xb, BASE)
        if SAME:
            acc_s += gb
        else:
            tl.store(gxb_ptr + offs_m[:, None] * IN + offs_p[None, :], gb, mask=mask_x)
    tl.store(gxs_ptr + offs_m[:, None] * IN + offs_p[None, :], acc_s, mask=mask_x)


@triton.jit
def _grad_weight_kernel(
    xs_ptr, xb_ptr, g_ptr, wt_ptr, gwt_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr,
    LOW: tl.constexpr, LOWT: tl.constexpr, PRECISION: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
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
                t_prev = xs
                t_cur = tl.full(xs.shape, 1.0, xs.dtype)
                for _ in range(0, i):
                    t_next = 2.0 * xs * t_cur - t_prev
                    t_prev = t_cur
                    t_cur = t_next
                a = t_cur
            else:
                a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
        a = tl.where(mask_x, a, 0.0)
        g = tl.load(g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0)
        acc = _mma(acc, tl.trans(a), g, LOW, LOWT, PRECISION)
    tl.store(gwt_ptr + (offs_p[:, None] * NW + i) * OUT + offs_n[None, :], acc, mask=mask_p[:, None] & mask_n[None, :])


@triton.jit
def _fill_kernel(
    xs_ptr, xb_ptr, a_ptr, p0_ptr, p1_ptr,
    ROWS, IN, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr,
    BM: tl.constexpr, BP: tl.constexpr,
):
    """a[b, i * IN + p] = A_i(xs[b, p]) for i < NF, and b(xb[b, p]) at i = NF: the basis matrix,
    basis-major (stores run along the inputs), in one pass."""
    pid_m = tl.program_id(0)
    pid_p = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_p = pid_p * BP + tl.arange(0, BP)
    mask_p = offs_p < IN
    mask_x = (offs_m < ROWS)[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    out = a_ptr + offs_m[:, None] * (NW * IN) + offs_p[None, :]
    dt = a_ptr.dtype.element_ty
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
        for i in range(0, NF):
            a = _pick(i - j + 3, v0, v1, v2, v3)
            a = tl.where(xs == xs, a, xs)  # NaN in, NaN out
            tl.store(out + i * IN, a.to(dt), mask=mask_x)
    elif KIND == 2:
        t_prev = xs
        t_cur = tl.full(xs.shape, 1.0, xs.dtype)
        for i in range(0, NF):
            tl.store(out + i * IN, t_cur.to(dt), mask=mask_x)
            t_next = 2.0 * xs * t_cur - t_prev
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
def _contract_kernel(
    xs_ptr, xb_ptr, g_ptr, gxs_ptr, gxb_ptr, p0_ptr, p1_ptr,
    ROWS, IN, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr, SAME: tl.constexpr,
    BM: tl.constexpr, BP: tl.constexpr,
):
    """d/dxs[b, p] = sum_i g[b, i * IN + p] A_i'(xs[b, p]), d/dxb[b, p] = g[b, NF * IN + p] b'(xb[b, p]),
    where g = dL/d(basis matrix) (rows, NW * IN), basis-major."""
    pid_m = tl.program_id(0)
    pid_p = tl.program_id(1)
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_p = pid_p * BP + tl.arange(0, BP)
    mask_p = offs_p < IN
    mask_x = (offs_m < ROWS)[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    grow = g_ptr + offs_m[:, None] * (NW * IN) + offs_p[None, :]
    acc = tl.zeros(xs.shape, dtype=xs.dtype)
    if KIND <= 1:
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
        # only the four intervals' functions j-3 .. j are non-zero: gather their four columns
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            gi = tl.load(grow + tl.where(ok, i, 0) * IN, mask=ok, other=0.0)
            acc += gi.to(xs.dtype) * _pick(r, d0, d1, d2, d3)
    elif KIND == 2:
        t_prev = xs
        t_cur = tl.full(xs.shape, 1.0, xs.dtype)
        u_prev = tl.full(xs.shape, 1.0, xs.dtype)
        u_cur = tl.zeros(xs.shape, dtype=xs.dtype)
        for i in range(0, NF):
            gi = tl.load(grow + i * IN, mask=mask_x, other=0.0)
            acc += gi.to(xs.dtype) * u_cur
            u_next = 2.0 * t_cur + 2.0 * xs * u_cur - u_prev
            t_next = 2.0 * xs * t_cur - t_prev
            t_prev = t_cur
            t_cur = t_next
            u_prev = u_cur
            u_cur = u_next
    else:
        for i in range(0, NF):
            a, da = _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF)
            gi = tl.load(grow + i * IN, mask=mask_x, other=0.0)
            acc += gi.to(xs.dtype) * da
    if BASE != 0:
        xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        gb = tl.load(grow + NF * IN, mask=mask_x, other=0.0).to(xs.dtype) * _base_derivative(xb, BASE)
        if SAME:
            acc += gb
        else:
            tl.store(gxb_ptr + offs_m[:, None] * IN + offs_p[None, :], gb, mask=mask_x)
    tl.store(gxs_ptr + offs_m[:, None] * IN + offs_p[None, :], acc, mask=mask_x)


@triton.jit
def _compose_kernel(
    coef_ptr, scale_ptr, bw_ptr, w_ptr, IN, OUT, NF, NW,
    BASE: tl.constexpr, BR: tl.constexpr, BQ: tl.constexpr,
):
    """w[i * IN + p, q] = coef[q, p, i] * scale[q, p] (i < NF), bw[q, p] (i = NF): the GEMM's weight."""
    offs_r = tl.program_id(0) * BR + tl.arange(0, BR)
    offs_q = tl.program_id(1) * BQ + tl.arange(0, BQ)
    i = offs_r // IN
    p = offs_r % IN
    mask = (offs_r < NW * IN)[:, None] & (offs_q < OUT)[None, :]
    qp = offs_q[None, :] * IN + p[:, None]  # index of (q, p)
    spline = i[:, None] < NF
    c = tl.load(coef_ptr + qp * NF + tl.where(spline, i[:, None], 0), mask=mask & spline, other=0.0)
    sc = tl.load(scale_ptr + qp, mask=mask & spline, other=0.0)
    w = c * sc
    if BASE != 0:
        b = tl.load(bw_ptr + qp, mask=mask & (i[:, None] >= NF), other=0.0)
        w = tl.where(spline, w, b)
    tl.store(w_ptr + offs_r[:, None] * OUT + offs_q[None, :], w.to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _decompose_kernel(
    g_ptr, coef_ptr, scale_ptr, gcoef_ptr, gscale_ptr, gbw_ptr, IN, OUT, NF,
    NEED_COEF: tl.constexpr, NEED_SCALE: tl.constexpr, NEED_BW: tl.constexpr,
    BP: tl.constexpr, BQ: tl.constexpr,
):
    """From g = dL/dw (NW * IN, OUT): dL/dcoef = g * scale, dL/dscale = sum_i g * coef, dL/dbw = g[NF]."""
    offs_p = tl.program_id(0) * BP + tl.arange(0, BP)
    offs_q = tl.program_id(1) * BQ + tl.arange(0, BQ)
    mask = (offs_p < IN)[:, None] & (offs_q < OUT)[None, :]
    qp = offs_q[None, :] * IN + offs_p[:, None]
    sc = tl.load(scale_ptr + qp, mask=mask, other=0.0)
    acc = tl.zeros((BP, BQ), dtype=gscale_ptr.dtype.element_ty)
    for i in range(0, NF):
        g = tl.load(g_ptr + (i * IN + offs_p[:, None]) * OUT + offs_q[None, :], mask=mask, other=0.0)
        if NEED_COEF:
            tl.store(gcoef_ptr + qp * NF + i, (g * sc).to(gcoef_ptr.dtype.element_ty), mask=mask)
        if NEED_SCALE:
            c = tl.load(coef_ptr + qp * NF + i, mask=mask, other=0.0)
            acc += (g * c).to(acc.dtype)
    if NEED_SCALE:
        tl.store(gscale_ptr + qp, acc.to(gscale_ptr.dtype.element_ty), mask=mask)
    if NEED_BW:
        g = tl.load(g_ptr + (NF * IN + offs_p[:, None]) * OUT + offs_q[None, :], mask=mask, other=0.0)
        tl.store(gbw_ptr + qp, g.to(gbw_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- sparse (large grids)


@triton.jit
def _sparse_forward_kernel(
    xs_ptr, xb_ptr, wt_ptr, y_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
):
    """y[b, q] = sum_p sum_r v_r(x[b, p]) wt[p, j - 3 + r, q] (+ b(x) wt[p, NF, q]): only the four
    non-zero B-splines per input, their weight rows gathered (time flat in G)."""
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    mask_m = offs_m < B
    mask_n = offs_n < OUT
    acc = tl.zeros((BM, BN), dtype=y_ptr.dtype.element_ty)
    for p_start in range(0, IN, BP):
        offs_p = p_start + tl.arange(0, BP)
        mask_p = offs_p < IN
        mask_x = mask_m[:, None] & mask_p[None, :]
        xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
        nan = xs != xs
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            v = _pick(r, v0, v1, v2, v3)
            v = tl.where(nan, xs, tl.where(ok, v, 0.0))
            row = offs_p[None, :] * NW + tl.where(ok, i, 0)  # (BM, BP)
            w = tl.load(wt_ptr + row[:, :, None] * OUT + offs_n[None, None, :],
                        mask=ok[:, :, None] & mask_n[None, None, :], other=0.0)
            acc += tl.sum(v[:, :, None] * w, axis=1)
        if BASE != 0:
            xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
            a = tl.where(mask_x, _base_value(xb, BASE), 0.0)
            wb = tl.load(wt_ptr + (offs_p[:, None] * NW + NF) * OUT + offs_n[None, :],
                         mask=mask_p[:, None] & mask_n[None, :], other=0.0)
            acc += tl.sum(a[:, :, None] * wb[None, :, :], axis=1)
    tl.store(y_ptr + offs_m[:, None] * OUT + offs_n[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _sparse_grad_input_kernel(
    xs_ptr, xb_ptr, wt_ptr, g_ptr, gxs_ptr, gxb_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, NW, M,
    KIND: tl.constexpr, BASE: tl.constexpr, EXTEND: tl.constexpr, SAME: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BP: tl.constexpr,
):
    """d/dxs[b, p] = sum_r d_r(x[b, p]) <g[b, :], wt[p, j - 3 + r, :]>; d/dxb with b'(xb) and wt[p, NF]."""
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_p = tl.program_id(1) * BP + tl.arange(0, BP)
    mask_m = offs_m < B
    mask_p = offs_p < IN
    mask_x = mask_m[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
    acc = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
    accb = tl.zeros((BM, BP), dtype=gxs_ptr.dtype.element_ty)
    for n_start in range(0, OUT, BN):
        offs_n = n_start + tl.arange(0, BN)
        mask_n = offs_n < OUT
        g = tl.load(g_ptr + offs_m[:, None] * OUT + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0)
        for r in tl.static_range(0, 4):
            i = j - 3 + r
            ok = mask_x & (i >= 0) & (i < NF)
            row = offs_p[None, :] * NW + tl.where(ok, i, 0)
            w = tl.load(wt_ptr + row[:, :, None] * OUT + offs_n[None, None, :],
                        mask=ok[:, :, None] & mask_n[None, None, :], other=0.0)
            acc += tl.sum(g[:, None, :] * w, axis=2) * _pick(r, d0, d1, d2, d3)
        if BASE != 0:
            wb = tl.load(wt_ptr + (offs_p[:, None] * NW + NF) * OUT + offs_n[None, :],
                         mask=mask_p[:, None] & mask_n[None, :], other=0.0)
            accb += tl.sum(g[:, None, :] * wb[None, :, :], axis=2)
    if BASE != 0:
        xb = tl.load(xb_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
        gb = accb * _base_derivative(xb, BASE)
        if SAME:
            acc += gb
        else:
            tl.store(gxb_ptr + offs_m[:, None] * IN + offs_p[None, :], gb, mask=mask_x)
    tl.store(gxs_ptr + offs_m[:, None] * IN + offs_p[None, :], acc, mask=mask_x)


@triton.jit
def _locate_kernel(
    xs_ptr, key_ptr, p0_ptr, p1_ptr, B, IN, NF, M,
    KIND: tl.constexpr, EXTEND: tl.constexpr, BM: tl.constexpr, BP: tl.constexpr,
):
    """key[p, b] = the interval of x[b, p] plus one, clamped into [0, M] (0: before the grid)."""
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_p = tl.program_id(1) * BP + tl.arange(0, BP)
    mask_p = offs_p < IN
    mask_x = (offs_m < B)[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
    key = tl.minimum(tl.maximum(j + 1, 0), M)
    tl.store(key_ptr + offs_p[None, :] * B + offs_m[:, None], key, mask=mask_x)


@triton.jit
def _sparse_grad_weight_kernel(
    xs_ptr, g_ptr, perm_ptr, start_ptr, part_ptr, p0_ptr, p1_ptr,
    B, IN, OUT, NF, M, NJ,
    KIND: tl.constexpr, EXTEND: tl.constexpr, BR: tl.constexpr, BN: tl.constexpr,
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
        xs = tl.load(xs_ptr + rows[:, None] * IN + offs_p[None, :], mask=mask_r[:, None], other=0.0)  # (BR, 1)
        j, v0, v1, v2, v3, d0, d1, d2, d3 = _bspline_locals(xs, offs_p, mask_p, p0_ptr, p1_ptr, M, NF, KIND, EXTEND)
        g = tl.load(g_ptr + rows[:, None] * OUT + offs_n[None, :], mask=mask_r[:, None] & mask_n[None, :], other=0.0)
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


# ----------------------------------------------------------------------------- host side


@dataclass(frozen=True)
class KernelSpec:
    """What the kernels need to know about a basis besides its tensors.

    Attributes:
        kind: One of ``BSPLINE_UNIFORM``, ``BSPLINE_KNOTS``, ``CHEBYSHEV``, ``RBF``.
        num_functions: n, functions per input.
        base: One of ``BASE_NONE``, ``BASE_SILU``, ``BASE_IDENTITY``.
        extend: B-splines: continue the outermost polynomial pieces (``extrapolate="extend"``).
        reference: ``reference(xs, xb, wt) -> y``, the same product by differentiable PyTorch ops:
            the double backward (``create_graph=True``) runs through it.
    """

    kind: int
    num_functions: int
    base: int
    extend: bool
    reference: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


#: ``tl.dot`` precision for float32 with TF32 off: ``tf32x3`` (three TF32 tensor-core products that
#: together round like float32) or ``ieee`` (plain float32 FMAs). ``KANTK_TRITON_PRECISION`` sets it.
ENV_PRECISION = "KANTK_TRITON_PRECISION"
PRECISIONS = ("tf32x3", "ieee")


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot`` precision: TF32 if the user allowed it for matmuls, else float32-accurate."""
    if dtype != torch.float32 or interpreting():
        return "ieee"
    if torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    chosen = os.environ.get(ENV_PRECISION, PRECISIONS[0]).strip().lower()
    return chosen if chosen in PRECISIONS else PRECISIONS[0]


def _blocks(out: int, n_in: int) -> tuple[int, int, int]:
    bm = int(os.environ.get("KANTK_TRITON_BM", "64"))
    bn = 64 if out > 32 else (32 if out > 16 else 16)
    bp = 32 if n_in > 16 else 16
    return bm, bn, bp


def _params(p0: torch.Tensor | None, p1: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    empty = like.new_zeros(1)
    return (
        empty if p0 is None else p0.to(like.dtype).contiguous(),
        empty if p1 is None else p1.to(like.dtype).contiguous(),
    )


_LOW_TYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _low_type(wt: torch.Tensor):
    return _LOW_TYPES.get(wt.dtype, tl.float32)


class FusedEdges(torch.autograd.Function):
    """``y = sum_{p,i} A_i(xs) wt[p, i] + b(xb) wt[p, n]`` with the fused kernels (once differentiable;
    a second derivative goes through ``spec.reference``)."""

    @staticmethod
    def forward(ctx, xs, xb, wt, p0, p1, spec: KernelSpec):  # type: ignore[override]
        # xs, xb: (B, in); wt: (in, n_w, out), in xs' dtype or bf16/fp16 (products on tensor
        # cores, float32 accumulation); p0, p1: basis constants (see fused_edges)
        batch, n_in = xs.shape
        out = wt.shape[-1]
        y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
        bm, bn, bp = _blocks(out, n_in)
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        low = wt.dtype in _LOW_TYPES
        grid = (triton.cdiv(batch, bm), triton.cdiv(out, bn))
        _forward_kernel[grid](
            xs, xb, wt, y, p0, p1, batch, n_in, out, spec.num_functions, wt.shape[1], m,
            KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, LOW=low, LOWT=_low_type(wt),
            PRECISION=_precision(xs.dtype), BM=bm, BN=bn, BP=bp,
        )
        ctx.spec, ctx.m, ctx.same = spec, m, xs is xb
        ctx.save_for_backward(xs, xb, wt, p0, p1)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
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
            KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, LOW=low, LOWT=_low_type(wt),
            PRECISION=_precision(xs.dtype), BM=bm, BN=bn, BP=bp,
        )
        need_xs, need_xb, need_w = needs
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        grad_xs = grad_xb = grad_w = None
        if need_xs or need_xb:
            grad_xs = torch.empty(batch, n_in, dtype=xs.dtype, device=xs.device)
            grad_xb = torch.empty_like(grad_xs) if has_base and not same else grad_xs
            _grad_input_kernel[(triton.cdiv(batch, bm), triton.cdiv(n_in, bp))](
                xs, xb, wt, g, grad_xs, grad_xb, p0, p1, batch, n_in, out, spec.num_functions, n_w, ctx.m,
                SAME=same, **consts,
            )
            if same or not has_base:  # one input (summed by the kernel), or no base branch
                grad_xb = None
            if not need_xb:
                grad_xb = None
        if need_w:
            grad_w = torch.empty(wt.shape, dtype=xs.dtype, device=wt.device)
            _grad_weight_kernel[(triton.cdiv(n_in, bp), n_w, triton.cdiv(out, bn))](
                xs, xb, g, wt, grad_w, p0, p1, batch, n_in, out, spec.num_functions, n_w, ctx.m, **consts,
            )
            grad_w = grad_w.to(wt.dtype)
        return grad_xs, grad_xb, grad_w, None, None, None


#: Rows per chunk of the GEMM form are chosen so one chunk's basis matrix holds about this many
#: elements (256 MB in float32): memory stays bounded whatever the batch.
GEMM_CHUNK_ELEMENTS = 1 << 26


def _chunks(rows: int, per_row: int) -> list[tuple[int, int]]:
    step = max(1, GEMM_CHUNK_ELEMENTS // max(1, per_row))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def _elementwise_blocks(n_in: int) -> tuple[int, int]:
    bp = 64 if n_in > 32 else (32 if n_in > 16 else 16)
    return 32, bp


class GemmEdges(torch.autograd.Function):
    """The same product as :class:`FusedEdges` by the GEMM form: one Triton pass writes the basis
    matrix of a chunk of rows (basis-major, float32 or the autocast dtype), cuBLAS multiplies it
    (with PyTorch's own float32/TF32 settings, like ``nn.Linear``), and one Triton pass contracts
    the matrix gradient with the basis derivatives. The matrix is rebuilt in backward, not kept."""

    @staticmethod
    def forward(ctx, xs, xb, wt, p0, p1, spec: KernelSpec):  # type: ignore[override]
        batch, n_in = xs.shape
        n_w, out = wt.shape[1], wt.shape[2]
        w2t = wt.permute(1, 0, 2).reshape(n_w * n_in, out)  # (n_w * in, out), row i * in + p
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
        for a, b in _chunks(batch, n_w * n_in):
            basis = _fill(xs[a:b], xb[a:b], p0, p1, spec, m, n_w, wt.dtype)
            y[a:b] = torch.mm(basis, w2t)
        ctx.spec, ctx.m, ctx.same = spec, m, xs is xb
        ctx.save_for_backward(xs, xb, wt, p0, p1)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xs, xb, wt, p0, p1 = ctx.saved_tensors
        spec: KernelSpec = ctx.spec
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return _reference_backward(ctx, grad_out, xs, xb, wt, spec, needs)
        batch, n_in = xs.shape
        n_w, out = wt.shape[1], wt.shape[2]
        w2t = wt.permute(1, 0, 2).reshape(n_w * n_in, out)
        g = grad_out.to(wt.dtype)
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        need_xs, need_xb, need_w = needs
        grad_xs = torch.empty_like(xs) if (need_xs or need_xb) else None
        grad_xb = torch.empty_like(xb) if (need_xs or need_xb) and has_base and not same else None
        grad_w2t = torch.zeros(n_w * n_in, out, dtype=torch.float32 if wt.dtype in _LOW_TYPES else wt.dtype,
                               device=wt.device) if need_w else None
        bm, bp = _elementwise_blocks(n_in)
        for a, b in _chunks(batch, n_w * n_in):
            gc = g[a:b]
            if need_w:
                basis = _fill(xs[a:b], xb[a:b], p0, p1, spec, ctx.m, n_w, wt.dtype)
                if grad_w2t.dtype == basis.dtype:
                    grad_w2t.addmm_(basis.t(), gc)
                else:  # autocast: products in the low dtype, sums in float32
                    grad_w2t += torch.mm(basis.t(), gc).to(grad_w2t.dtype)
                del basis
            if grad_xs is not None:
                gmat = torch.mm(gc, w2t.t())  # (rows, n_w * in): dL/d(basis matrix)
                rows = b - a
                _contract_kernel[(triton.cdiv(rows, bm), triton.cdiv(n_in, bp))](
                    xs[a:b], xb[a:b], gmat, grad_xs[a:b], grad_xs[a:b] if grad_xb is None else grad_xb[a:b],
                    p0, p1, rows, n_in, spec.num_functions, n_w, ctx.m,
                    KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, SAME=same, BM=bm, BP=bp,
                )
        grad_wt = None
        if need_w:
            grad_wt = grad_w2t.view(n_w, n_in, out).permute(1, 0, 2).to(wt.dtype)
        if not need_xb:
            grad_xb = None
        return grad_xs if need_xs else None, grad_xb, grad_wt, None, None, None


def _fill(xs, xb, p0, p1, spec: KernelSpec, m: int, n_w: int, dtype: torch.dtype) -> torch.Tensor:
    """The basis matrix (rows, n_w * in) of a chunk of rows, basis-major, in ``dtype``."""
    rows, n_in = xs.shape
    basis = torch.empty(rows, n_w * n_in, dtype=dtype, device=xs.device)
    bm, bp = _elementwise_blocks(n_in)
    _fill_kernel[(triton.cdiv(rows, bm), triton.cdiv(n_in, bp))](
        xs, xb, basis, p0, p1, rows, n_in, spec.num_functions, n_w, m,
        KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, BM=bm, BP=bp,
    )
    return basis


def _reference_backward(ctx, grad_out, xs, xb, wt, spec: KernelSpec, needs):
    """A backward that records a graph (double backward), through ``spec.reference``."""
    if ctx.same:  # one tensor in both slots: its whole gradient once
        needs = (needs[0] or needs[1], False, needs[2])
    inputs = (xs, xb, wt)
    wanted = [t for t, need in zip(inputs, needs) if need]
    y = spec.reference(*inputs)
    grads = iter(torch.autograd.grad(y, wanted, grad_out, create_graph=True, allow_unused=True))
    return (*(next(grads) if need else None for need in needs), None, None, None)


#: ``KANTK_TRITON_FORM``: ``gemm`` (default: the basis matrix in chunks, cuBLAS GEMMs) or
#: ``fused`` (basis values generated inside the GEMM tiles, nothing materialised).
ENV_FORM = "KANTK_TRITON_FORM"
FORMS = ("gemm", "fused")


def form() -> str:
    chosen = os.environ.get(ENV_FORM, FORMS[0]).strip().lower()
    return chosen if chosen in FORMS else FORMS[0]


def _compose(coef, scale, bw, n_w: int, dtype: torch.dtype) -> torch.Tensor:
    out, n_in, nf = coef.shape
    w = torch.empty(n_w * n_in, out, dtype=dtype, device=coef.device)
    grid = (triton.cdiv(n_w * n_in, 32), triton.cdiv(out, 64))
    _compose_kernel[grid](coef, scale, scale if bw is None else bw, w, n_in, out, nf, n_w,
                          BASE=int(bw is not None), BR=32, BQ=64)
    return w


class GemmLayer(torch.autograd.Function):
    """:class:`GemmEdges` taking the layer's own weights (coef, scale, base weight): the weight of
    the GEMM is composed and its gradient split back by one small kernel each, so a training step
    launches few kernels (on a GPU, small layers are bound by launches)."""

    @staticmethod
    def forward(ctx, xs, xb, coef, scale, bw, p0, p1, spec: KernelSpec, low):  # type: ignore[override]
        batch, n_in = xs.shape
        out, nf = coef.shape[0], coef.shape[2]
        n_w = nf + (bw is not None)
        wdtype = low if low is not None else xs.dtype
        w2t = _compose(coef, scale, bw, n_w, wdtype)  # (n_w * in, out)
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        chunks = _chunks(batch, n_w * n_in)
        if len(chunks) == 1:
            y = torch.mm(_fill(xs, xb, p0, p1, spec, m, n_w, wdtype), w2t)
            y = y if y.dtype == xs.dtype else y.to(xs.dtype)
        else:
            y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
            for a, b in chunks:
                y[a:b] = torch.mm(_fill(xs[a:b], xb[a:b], p0, p1, spec, m, n_w, wdtype), w2t)
        ctx.spec, ctx.m, ctx.same, ctx.low, ctx.has_bw = spec, m, xs is xb, low, bw is not None
        ctx.save_for_backward(xs, xb, coef, scale, bw, p0, p1, w2t)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xs, xb, coef, scale, bw, p0, p1, w2t = ctx.saved_tensors
        spec: KernelSpec = ctx.spec
        if torch.is_grad_enabled():  # create_graph=True: through the composed weight's reference
            return _layer_reference_backward(ctx, grad_out, xs, xb, coef, scale, bw, spec)
        need_xs, need_xb, need_coef, need_scale, need_bw = ctx.needs_input_grad[:5]
        need_w = need_coef or need_scale or need_bw
        batch, n_in = xs.shape
        out, nf = coef.shape[0], coef.shape[2]
        n_w = w2t.shape[0] // n_in
        g = grad_out.to(w2t.dtype)
        has_base = spec.base != BASE_NONE
        same = ctx.same and has_base
        grad_xs = torch.empty_like(xs) if (need_xs or need_xb) else None
        grad_xb = torch.empty_like(xb) if grad_xs is not None and has_base and not same else None
        acc_dtype = torch.float32 if w2t.dtype in _LOW_TYPES else w2t.dtype
        chunks = _chunks(batch, n_w * n_in)
        grad_w2t = None
        bm, bp = _elementwise_blocks(n_in)
        for a, b in chunks:
            gc = g[a:b]
            if need_w:
                basis = _fill(xs[a:b], xb[a:b], p0, p1, spec, ctx.m, n_w, w2t.dtype)
                part = torch.mm(basis.t(), gc)  # (n_w * in, out)
                part = part if part.dtype == acc_dtype else part.to(acc_dtype)
                grad_w2t = part if grad_w2t is None else grad_w2t.add_(part)
                del basis
            if grad_xs is not None:
                gmat = torch.mm(gc, w2t.t())  # (rows, n_w * in): dL/d(basis matrix)
                rows = b - a
                _contract_kernel[(triton.cdiv(rows, bm), triton.cdiv(n_in, bp))](
                    xs[a:b], xb[a:b], gmat, grad_xs[a:b], grad_xs[a:b] if grad_xb is None else grad_xb[a:b],
                    p0, p1, rows, n_in, spec.num_functions, n_w, ctx.m,
                    KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, SAME=same, BM=bm, BP=bp,
                )
        grad_coef = grad_scale = grad_bw = None
        if need_w:
            grad_coef = torch.empty_like(coef) if need_coef else None
            grad_scale = torch.empty_like(scale) if need_scale else None
            grad_bw = torch.empty_like(bw) if (need_bw and bw is not None) else None
            _decompose_kernel[(triton.cdiv(n_in, 32), triton.cdiv(out, 64))](
                grad_w2t, coef, scale, coef if grad_coef is None else grad_coef,
                scale if grad_scale is None else grad_scale, scale if grad_bw is None else grad_bw,
                n_in, out, nf, NEED_COEF=grad_coef is not None, NEED_SCALE=grad_scale is not None,
                NEED_BW=grad_bw is not None, BP=32, BQ=64,
            )
        return (grad_xs if need_xs else None, grad_xb if need_xb else None, grad_coef, grad_scale, grad_bw,
                None, None, None, None)


def _layer_reference_backward(ctx, grad_out, xs, xb, coef, scale, bw, spec: KernelSpec):
    needs = list(ctx.needs_input_grad[:5])
    if ctx.same:
        needs[0], needs[1] = needs[0] or needs[1], False
    inputs = (xs, xb, coef, scale, bw)
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    parts = [coef * scale.unsqueeze(-1)]
    if bw is not None:
        parts.append(bw.unsqueeze(-1))
    wt = torch.cat(parts, dim=-1).permute(1, 2, 0)  # (in, n_w, out)
    y = spec.reference(xs, xb, wt)
    grads = iter(torch.autograd.grad(y, wanted, grad_out, create_graph=True, allow_unused=True))
    out = [next(grads) if need and t is not None else None for t, need in zip(inputs, needs)]
    return (*out, None, None, None, None)


def layer_edges(
    xs: torch.Tensor,
    xb: torch.Tensor,
    coef: torch.Tensor,
    scale: torch.Tensor,
    base_weight: torch.Tensor | None,
    spec: KernelSpec,
    p0: torch.Tensor | None = None,
    p1: torch.Tensor | None = None,
    low: torch.dtype | None = None,
) -> torch.Tensor:
    """The layer's edge sum from its own weights: ``coef`` (out, in, n), ``scale`` (out, in) and
    ``base_weight`` (out, in) or None; the other arguments as in :func:`fused_edges`."""
    if form() != "gemm":
        parts = [coef * scale.unsqueeze(-1)]
        if base_weight is not None:
            parts.append(base_weight.unsqueeze(-1))
        wt = torch.cat(parts, dim=-1).permute(1, 2, 0)
        return fused_edges(xs, xb, wt, spec, p0, p1, low)
    xs = xs.contiguous()
    xb = xs if xb is xs else xb.contiguous()
    p0, p1 = _params(p0, p1, xs)
    bw = None if base_weight is None else base_weight.contiguous()
    return GemmLayer.apply(xs, xb, coef.contiguous(), scale.contiguous(), bw, p0, p1, spec, low)


class SparseEdges(torch.autograd.Function):
    """Cubic B-splines touching only the four non-zero functions per input (large grids): weight
    rows gathered in the forward and the input gradient; for the weight gradient the batch rows of
    each input are grouped by interval (a sort), so every (input, interval) sums its rows once,
    deterministically. Time flat in G; float32/float64 (no low-precision products).

    Experimental: correct in Triton's interpreter, but its forward gave wrong values on an H200
    (2026-12-04; tests/unit/test_triton.py::test_sparse_kernels_match_the_pytorch_path), so the
    path chooser takes it only when forced. Suspect the 3-D gathers/reductions of
    ``_sparse_forward_kernel``."""

    @staticmethod
    def forward(ctx, xs, xb, wt, p0, p1, spec: KernelSpec):  # type: ignore[override]
        batch, n_in = xs.shape
        n_w, out = wt.shape[1], wt.shape[2]
        m = p0.shape[-1] if spec.kind == BSPLINE_KNOTS else spec.num_functions + 4
        y = torch.empty(batch, out, dtype=xs.dtype, device=xs.device)
        bm, bn, bp = 32, (64 if out > 32 else 32), 4
        _sparse_forward_kernel[(triton.cdiv(batch, bm), triton.cdiv(out, bn))](
            xs, xb, wt, y, p0, p1, batch, n_in, out, spec.num_functions, n_w, m,
            KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, BM=bm, BN=bn, BP=bp,
        )
        ctx.spec, ctx.m, ctx.same = spec, m, xs is xb
        ctx.save_for_backward(xs, xb, wt, p0, p1)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
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
            bm, bn, bp = 32, (64 if out > 32 else 32), 4
            _sparse_grad_input_kernel[(triton.cdiv(batch, bm), triton.cdiv(n_in, bp))](
                xs, xb, wt, g, grad_xs, grad_xs if grad_xb is None else grad_xb, p0, p1,
                batch, n_in, out, nf, n_w, m,
                KIND=spec.kind, BASE=spec.base, EXTEND=spec.extend, SAME=same, BM=bm, BN=bn, BP=bp,
            )
        if need_w:
            key = torch.empty(n_in, batch, dtype=torch.int32, device=xs.device)
            _locate_kernel[(triton.cdiv(batch, 64), triton.cdiv(n_in, 16))](
                xs, key, p0, p1, batch, n_in, nf, m, KIND=spec.kind, EXTEND=spec.extend, BM=64, BP=16,
            )
            sorted_key, perm = torch.sort(key, dim=1)  # rows of each input grouped by interval
            bounds = torch.arange(m + 2, dtype=torch.int32, device=xs.device).expand(n_in, -1).contiguous()
            start = torch.searchsorted(sorted_key, bounds).to(torch.int32)  # (in, M + 2)
            n_j = m - 1  # intervals of the extended grid
            part = torch.empty(n_in, n_j, 4, out, dtype=xs.dtype, device=xs.device)
            bn = 64 if out > 32 else 32
            _sparse_grad_weight_kernel[(n_in, n_j, triton.cdiv(out, bn))](
                xs, g, perm.to(torch.int32), start, part, p0, p1, batch, n_in, out, nf, m, n_j,
                KIND=spec.kind, EXTEND=spec.extend, BR=32, BN=bn,
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


BASE_ACTIVATIONS_TORCH = {BASE_SILU: torch.nn.functional.silu, BASE_IDENTITY: lambda x: x}


def fused_edges(
    xs: torch.Tensor,
    xb: torch.Tensor,
    wt: torch.Tensor,
    spec: KernelSpec,
    p0: torch.Tensor | None = None,
    p1: torch.Tensor | None = None,
    low: torch.dtype | None = None,
    sparse: bool = False,
) -> torch.Tensor:
    """The fused layer product (see the module docstring).

    Args:
        xs: (batch, in) basis input; xb: (batch, in) base-branch input (may be ``xs``).
        wt: (in, n_w, out) composed weights, basis-major.
        spec: The basis kind and options.
        p0, p1: Basis constants: first knot and 1/spacing (in,) for uniform B-splines; knots
            (in, M) for general ones; centres (in, n) and widths (in,) for RBFs.
        low: ``torch.bfloat16``/``torch.float16`` to run the products on tensor cores with
            float32 accumulation (autocast), else None.
        sparse: Cubic B-splines only: touch only the four non-zero functions per input
            (:class:`SparseEdges`, for large grids; ``low`` is ignored).

    Returns:
        (batch, out) in ``xs``' dtype.
    """
    if sparse:
        low = None
    xs = xs.contiguous()
    xb = xs if xb is xs else xb.contiguous()
    p0, p1 = _params(p0, p1, xs)
    if low is not None:
        wt = wt.to(low)
    if sparse:
        return SparseEdges.apply(xs, xb, wt.contiguous(), p0, p1, spec)
    fn = GemmEdges if form() == "gemm" else FusedEdges
    return fn.apply(xs, xb, wt.contiguous(), p0, p1, spec)
