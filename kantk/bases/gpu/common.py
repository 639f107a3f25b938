"""What the GPU kernels share: basis kinds, the record describing a call, device helpers that
evaluate the bases inside a tile, and the differentiable fallback for a double backward.

See :mod:`kantk.bases.gpu` for the map. Importing this module imports Triton.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kantk.bases.base import BASE_ACTIVATIONS, basis_major_weights

BSPLINE_UNIFORM = 0
BSPLINE_KNOTS = 1
CHEBYSHEV = 2
RBF = 3

BASE_NONE = 0
BASE_SILU = 1
BASE_IDENTITY = 2

#: Names of the base activations the kernels fuse.
BASE_KINDS = {"zero": BASE_NONE, "silu": BASE_SILU, "identity": BASE_IDENTITY}


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for launch grids, in plain Python (``triton.cdiv`` is a JIT function whose host
    call costs microseconds; a training step computes about ten of them)."""
    return -(-a // b)


def row_chunks(rows: int, per_row: int, limit: int) -> list[tuple[int, int]]:
    """Row ranges [a, b) of at most ``limit`` elements each (``per_row`` a row, at least one row a
    range); one empty range for no rows."""
    step = max(1, limit // max(1, per_row))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)] or [(0, 0)]


def interpreting() -> bool:
    """Whether Triton runs its interpreter (``TRITON_INTERPRET=1``: kernels on CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


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
            t = s - j.to(s.dtype)  # the end pieces continued
        else:  # the clamped position: from |s| ~ 1e19 (float32) the derivatives overflowed, and
            t = tl.where(s == s, sc - j.to(s.dtype), s)  # inf times the zero of a missing basis
            # made dy/dx NaN; a NaN input stays NaN
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
        else:  # inside the knots (NaN kept): +-inf gave inf * 0 = NaN in dy/dx; outside, every
            # basis is zero anyway and the slot mask drops the interval
            k_first = tl.load(p0_ptr + row, mask=mask_p, other=0.0)
            k_last = tl.load(p0_ptr + row + M - 1, mask=mask_p, other=0.0)
            xs = tl.where(xs == xs, tl.minimum(tl.maximum(xs, k_first[None, :]), k_last[None, :]), xs)
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
def _input_tile(xs_ptr, ROWS, IN, BM: tl.constexpr, BP: tl.constexpr):
    """A program's tile of inputs (program id 0: rows, 1: inputs): offsets, masks and the values."""
    return _input_tile_at(xs_ptr, tl.program_id(0), tl.program_id(1), ROWS, IN, BM, BP)


@triton.jit
def _input_tile_at(xs_ptr, pid_m, pid_p, ROWS, IN, BM: tl.constexpr, BP: tl.constexpr):
    """Tile (pid_m, pid_p) of the inputs (rows x inputs): offsets, masks and the values."""
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_p = pid_p * BP + tl.arange(0, BP)
    mask_p = offs_p < IN
    mask_x = (offs_m < ROWS)[:, None] & mask_p[None, :]
    xs = tl.load(xs_ptr + offs_m[:, None] * IN + offs_p[None, :], mask=mask_x, other=0.0)
    return offs_m, offs_p, mask_p, mask_x, xs


@triton.jit
def _store_input_grads(
    acc, s_base, xb_ptr, gxs_ptr, gxb_ptr, offs_m, offs_p, mask_x, IN, BASE: tl.constexpr, SAME: tl.constexpr
):
    """Store d/dxs = ``acc`` and d/dxb = ``s_base * b'(xb)`` (added to d/dxs when xs is xb)."""
    offs = offs_m[:, None] * IN + offs_p[None, :]
    if BASE != 0:
        xb = tl.load(xb_ptr + offs, mask=mask_x, other=0.0)
        gb = s_base * _base_derivative(xb, BASE)
        if SAME:
            acc += gb
        else:
            tl.store(gxb_ptr + offs, gb, mask=mask_x)
    tl.store(gxs_ptr + offs, acc, mask=mask_x)


@triton.jit
def _squash(x, offs_p, mask_p, p0_ptr, p1_ptr):
    """Chebyshev inputs: z = tanh((x - c) / hw) and dz/dx per input (p0 = centres c, p1 = half
    widths hw, (in,) each): the squash runs inside the kernels, not as PyTorch ops around them.
    tanh through exp(-2|u|), which cannot overflow; NaN in, NaN out."""
    c = tl.load(p0_ptr + offs_p, mask=mask_p, other=0.0)
    hw = tl.load(p1_ptr + offs_p, mask=mask_p, other=1.0)
    u = (x - c[None, :]) / hw[None, :]
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    z = tl.where(u < 0, -t, t)
    return z, (1.0 - z * z) / hw[None, :]


@triton.jit
def _rbf_value(xs, offs_p, mask_p, i, p0_ptr, p1_ptr, NF):
    c = tl.load(p0_ptr + offs_p * NF + i, mask=mask_p, other=0.0)
    w = tl.load(p1_ptr + offs_p, mask=mask_p, other=1.0)
    z = (xs - c[None, :]) / w[None, :]
    v = tl.exp(-z * z)
    return v, -2.0 * z / w[None, :] * v


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


def _params(
    p0: torch.Tensor | None, p1: torch.Tensor | None, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The basis constants as kernel arguments: ``like``'s dtype, contiguous; a one-element
    stand-in for a missing one (made only then: small layers are bound by host time)."""

    def arg(p: torch.Tensor | None) -> torch.Tensor:
        if p is None:
            return like.new_zeros(1)
        return p if p.dtype == like.dtype and p.is_contiguous() else p.to(like.dtype).contiguous()

    return arg(p0), arg(p1)


_LOW_TYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _low_type(wt: torch.Tensor):
    return _LOW_TYPES.get(wt.dtype, tl.float32)


def _independent(inputs, needs, same: bool):
    """Stand-ins for the inputs that autograd treats as independent of each other but that keep
    the graph back to the originals: ``xs`` may be computed from ``xb`` (a clamp), and a
    gradient taken with respect to ``xb`` must not run through ``xs`` as well."""
    out = []
    for t, need in zip(inputs, needs):
        if t is None or not need or not t.requires_grad:
            out.append(t)
        else:
            out.append(t.detach().requires_grad_() + (t - t.detach()))
    if same:  # one tensor in both slots
        out[1] = out[0]
    return out


def _reference_backward(ctx, grad_out, xs, xb, wt, spec: KernelSpec, needs):
    """A backward that records a graph (double backward), through ``spec.reference``."""
    if ctx.same:  # one tensor in both slots: its whole gradient once
        needs = (needs[0] or needs[1], False, needs[2])
    inputs = _independent((xs, xb, wt), needs, ctx.same)
    wanted = [t for t, need in zip(inputs, needs) if need]
    y = spec.reference(*inputs)
    grads = iter(torch.autograd.grad(y, wanted, grad_out, create_graph=True, allow_unused=True))
    return (*(next(grads) if need else None for need in needs), None, None, None)


def _layer_reference_backward(ctx, grad_out, xs, xb, coef, scale, bw, mask, spec: KernelSpec):
    needs = list(ctx.needs_input_grad[:5])
    if ctx.same:
        needs[0], needs[1] = needs[0] or needs[1], False
    inputs = _independent((xs, xb, coef, scale, bw), needs, ctx.same)
    xs, xb, coef, scale, bw = inputs
    wanted = [t for t, need in zip(inputs, needs) if need and t is not None]
    if mask is not None:  # the edge mask the kernels applied (no gradient)
        scale, bw = scale * mask, (None if bw is None else bw * mask)
    wt = basis_major_weights(coef, scale, bw)  # (in, n_w, out)
    y = spec.reference(xs, xb, wt)
    grads = iter(torch.autograd.grad(y, wanted, grad_out, create_graph=True, allow_unused=True))
    out = [next(grads) if need and t is not None else None for t, need in zip(inputs, needs)]
    return (*out, None, None, None, None, None, None)  # mask, p0, p1, spec, low, keep


#: The base activations by kernel constant, as PyTorch functions.
BASE_ACTIVATIONS_TORCH: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    kind: fn for name, kind in BASE_KINDS.items() if (fn := BASE_ACTIVATIONS[name]) is not None
}
