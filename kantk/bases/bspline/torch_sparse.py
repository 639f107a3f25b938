"""The PyTorch sparse path on uniform grids: only the order+1 non-zero bases per input (time flat in G)."""

from __future__ import annotations

import torch

from kantk.bases.bspline.local import _locate, _positions, _values
from kantk.bases.bspline.torch_dense import _differentiable_backward

#: From this many basis functions per input on, ``sparse="auto"`` gathers the order+1 non-zero
#: coefficient rows per input (an embedding-bag weighted sum, time flat in G) instead of one dense
#: matmul over all G+k functions (time linear in G). Measured crossover on 2 cores: G ~ 60.
SPARSE_MIN_FUNCTIONS = 64


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
    table = weight.flatten(1).t().contiguous()  # (in*n, out)
    return torch.nn.functional.embedding_bag(
        flat.flatten(1), table, per_sample_weights=vals.flatten(1), mode="sum"
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
    def forward(ctx, x, extra, weight, shift, inv_h, tables):
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
    def backward(ctx, grad_out):
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
