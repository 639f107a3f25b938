"""Entry points of the GPU kernels: :func:`layer_edges` (from a layer's weights) and
:func:`fused_edges` (from composed weights), and the choice of form (``KANTK_TRITON_FORM``)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch

from kantk.bases.base import basis_major_weights
from kantk.bases.gpu.common import KernelSpec, _params, row_chunks
from kantk.bases.gpu.fused import FusedEdges
from kantk.bases.gpu.gemm import GemmLayer
from kantk.bases.gpu.sparse import SparseEdges

#: ``KANTK_TRITON_FORM``: ``gemm`` (default: the basis matrix in chunks, cuBLAS GEMMs) or
#: ``fused`` (basis values generated inside the GEMM tiles, nothing materialised).
ENV_FORM = "KANTK_TRITON_FORM"
FORMS = ("gemm", "fused")

#: The fused and sparse kernels address a row's values with 32-bit offsets (``row * width``):
#: a batch whose ``rows * max(in, out)`` would reach 2**31 elements runs in chunks of rows below
#: it (the GEMM form is chunked by its own, smaller limit).
ROW_INDEX_LIMIT = 2**31 - 1


def on_input_device(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run ``fn(xs, ...)`` with ``xs``' CUDA device as the current one: Triton launches on the
    current device and its stream, so a layer on ``cuda:1`` in a process whose current device is 0
    would run on GPU 0 with GPU 1's pointers. (The backward runs on autograd's thread for the
    tensors' device, which sets it.) Other devices (the interpreter's CPU tensors): as it is."""

    @functools.wraps(fn)
    def run(xs: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if xs.device.type != "cuda":
            return fn(xs, *args, **kwargs)
        with torch.cuda.device(xs.device):
            return fn(xs, *args, **kwargs)

    return run


def form() -> str:
    chosen = os.environ.get(ENV_FORM, FORMS[0]).strip().lower()
    return chosen if chosen in FORMS else FORMS[0]


@on_input_device
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
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The layer's edge sum from its own weights: ``coef`` (out, in, n), ``scale`` (out, in),
    ``base_weight`` (out, in) or None, and the edge ``mask`` (out, in) that multiplies both, or None
    (already applied): the GEMM form's kernels apply it (a mask that requires grad is multiplied
    out by PyTorch); the other arguments as in :func:`fused_edges`."""
    if mask is not None and (form() != "gemm" or mask.requires_grad):  # PyTorch applies it
        scale, base_weight = scale * mask, None if base_weight is None else base_weight * mask
        mask = None
    if form() != "gemm":
        wt = basis_major_weights(coef, scale, base_weight)
        return fused_edges(xs, xb, wt, spec, p0, p1, low)
    same = xb is xs
    xs = xs.contiguous()
    xb = xs if same else xb.contiguous()
    p0, p1 = _params(p0, p1, xs)
    bw = None if base_weight is None else base_weight.contiguous()
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (coef, scale, bw))
    mask = None if mask is None else mask.contiguous()
    return GemmLayer.apply(xs, xb, coef.contiguous(), scale.contiguous(), bw, mask, p0, p1, spec, low, keep)


@on_input_device
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
    """The layer product from composed weights by the fused form (or the sparse kernels).

    Args:
        xs: (batch, in) basis input; xb: (batch, in) base-branch input (may be ``xs``).
        wt: (in, n_w, out) composed weights, basis-major.
        spec: The basis kind and options.
        p0, p1: Basis constants: first knot and 1/spacing (in,) for uniform B-splines; knots
            (in, M) for general ones; centres (in, n) and widths (in,) for RBFs; centres and
            half widths (in,) for Chebyshev (``xs`` is then the raw input, squashed inside).
        low: ``torch.bfloat16``/``torch.float16`` to run the products on tensor cores with
            float32 accumulation (autocast), else None.
        sparse: Cubic B-splines only: touch only the four non-zero functions per input
            (:class:`SparseEdges`, for large grids; ``low`` is ignored).

    Returns:
        (batch, out) in ``xs``' dtype.
    """
    if sparse:
        low = None
    chunks = row_chunks(xs.shape[0], max(xs.shape[1], wt.shape[-1]), ROW_INDEX_LIMIT)
    if len(chunks) > 1:  # one call per chunk of rows; autograd sums the weight gradients
        parts = []
        for a, b in chunks:
            part = xs[a:b]
            parts.append(fused_edges(part, part if xb is xs else xb[a:b], wt, spec, p0, p1, low, sparse))
        return torch.cat(parts)
    same = xb is xs
    xs = xs.contiguous()
    xb = xs if same else xb.contiguous()
    p0, p1 = _params(p0, p1, xs)
    if low is not None:
        wt = wt.to(low)
    if sparse:
        return SparseEdges.apply(xs, xb, wt.contiguous(), p0, p1, spec)
    return FusedEdges.apply(xs, xb, wt.contiguous(), p0, p1, spec)
