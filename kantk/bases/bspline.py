"""B-spline basis of order k on G intervals, with per-input knot vectors.

Two evaluation paths give the same values:

* uniform knots (the default grid): the closed local form. For an input in interval ``j`` only
  the ``k + 1`` bases ``j - k .. j`` are non-zero, and on that interval they are fixed
  polynomials of the fractional position ``t``; they are evaluated by Horner's rule and
  scattered into the dense (batch, in, n) tensor. :meth:`BSplineBasis.linear` fuses this with the
  coefficient matmul in one autograd function that keeps only ``x`` for backward and recomputes
  what it needs there with differentiable ops, so higher derivatives work too.
* non-uniform knots (after a grid update from data): the Cox-de Boor recursion.

Outside the extended grid every basis is zero: values are finite and the layer's base branch
carries the function on.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from kantk.bases.base import Basis
from kantk.plugins import hookimpl
from kantk.types import BasisSpec


def uniform_knots(in_features: int, grid_size: int, order: int, grid_range: Sequence[float]) -> torch.Tensor:
    """Uniform knot vectors with ``order`` extra knots each side.

    Returns:
        (in_features, grid_size + 2 * order + 1), float64.
    """
    lo, hi = float(grid_range[0]), float(grid_range[1])
    h = (hi - lo) / grid_size
    steps = torch.arange(-order, grid_size + order + 1, dtype=torch.float64)
    return (lo + steps * h).expand(in_features, -1).contiguous()


def cox_de_boor(x: torch.Tensor, knots: torch.Tensor, order: int) -> torch.Tensor:
    """Reference B-spline evaluation by the Cox-de Boor recursion (any knot vectors).

    Args:
        x: (batch, in).
        knots: (in, m) non-decreasing knots per input; gives ``m - order - 1`` bases.
        order: Polynomial degree k.

    Returns:
        (batch, in, m - order - 1). Zero outside ``[knots[0], knots[-1])``.
    """
    knots = knots.to(x.dtype)
    xe = x.unsqueeze(-1)  # (batch, in, 1)
    # degree 0: indicator of each knot interval, (batch, in, m - 1)
    basis = ((xe >= knots[:, :-1]) & (xe < knots[:, 1:])).to(x.dtype)
    for d in range(1, order + 1):
        left_den = knots[:, d:-1] - knots[:, : -(d + 1)]  # (in, m - 1 - d)
        right_den = knots[:, d + 1 :] - knots[:, 1:-d]
        left = (xe - knots[:, : -(d + 1)]) / torch.where(left_den > 0, left_den, torch.ones_like(left_den))
        right = (knots[:, d + 1 :] - xe) / torch.where(right_den > 0, right_den, torch.ones_like(right_den))
        left = torch.where(left_den > 0, left, torch.zeros_like(left))
        right = torch.where(right_den > 0, right, torch.zeros_like(right))
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis


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


def _local_eval(
    x: torch.Tensor, t0: torch.Tensor, inv_h: torch.Tensor, poly: torch.Tensor, order: int, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and (masked) local values + derivatives of the uniform B-spline.

    Args:
        x: (batch, in). t0, inv_h: (in,) first knot and inverse spacing. poly: (k+1, 2(k+1)).

    Returns:
        pos: (batch, in, k+1) basis index of each local value, clamped into [0, n).
        vals: (batch, in, 2(k+1)) values then derivatives d/dx, zero where the basis does not exist.
    """
    k1 = order + 1
    u = (x - t0) * inv_h  # grid units from the first knot
    # keep huge inputs finite and their index in range; beyond this every basis is zero anyway
    u = u.clamp(-1.0, float(n + order + 1))
    j = torch.floor(u)
    t = (u - j).unsqueeze(-1)  # (batch, in, 1)
    vals = poly[order].expand(*t.shape[:-1], 2 * k1)
    for p in range(order - 1, -1, -1):  # Horner over the powers of t
        vals = torch.addcmul(poly[p], vals, t)
    offsets = torch.arange(-order, 1, device=x.device)
    pos = j.long().unsqueeze(-1) + offsets  # (batch, in, k+1)
    valid = ((pos >= 0) & (pos < n)).to(x.dtype)
    scale = torch.cat([valid, valid * inv_h.unsqueeze(-1)], dim=-1)
    return pos.clamp_(0, n - 1), vals * scale


def _scatter_dense(pos: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """(batch, in, k+1) local values at ``pos`` -> dense (batch, in, n)."""
    dense = values.new_zeros(*values.shape[:-1], n)
    return dense.scatter_add(-1, pos, values)


class _UniformBSplineLinear(torch.autograd.Function):
    """y = dense_bspline(x) @ W^T for uniform knots; saves only x and W for backward.

    The backward recomputes the local values with differentiable ops, so double backward
    (d2y/dx2 for physics-informed losses) works through it.
    """

    @staticmethod
    def forward(ctx, x, weight, t0, inv_h, poly, order, n):  # type: ignore[override]
        ctx.order, ctx.n = order, n
        ctx.save_for_backward(x, weight, t0, inv_h, poly)
        k1 = order + 1
        pos, vals = _local_eval(x, t0, inv_h, poly, order, n)
        dense = _scatter_dense(pos, vals[..., :k1], n)  # (batch, in, n)
        # (batch, in*n) @ (in*n, out)
        return dense.reshape(x.shape[0], -1) @ weight.reshape(weight.shape[0], -1).t()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, t0, inv_h, poly = ctx.saved_tensors
        order, n = ctx.order, ctx.n
        k1 = order + 1
        batch, n_in = x.shape
        pos, vals = _local_eval(x, t0, inv_h, poly, order, n)
        grad_x = grad_w = None
        w2 = weight.reshape(weight.shape[0], -1)  # (out, in*n)
        if ctx.needs_input_grad[1]:
            dense = _scatter_dense(pos, vals[..., :k1], n).reshape(batch, -1)
            grad_w = (grad_out.t() @ dense).reshape(weight.shape)  # (out, in*n) -> (out, in, n)
        if ctx.needs_input_grad[0]:
            grad_dense = (grad_out @ w2).reshape(batch, n_in, n)  # (batch, in, n)
            grad_local = grad_dense.gather(-1, pos)  # (batch, in, k+1)
            grad_x = (grad_local * vals[..., k1:]).sum(-1)
        return grad_x, grad_w, None, None, None, None, None


class BSplineBasis(Basis):
    """B-splines of order ``order`` on ``grid_size`` intervals, ``order`` extra knots each side.

    Args:
        in_features: Number of inputs, each with its own knot vector.
        grid_size: Number of intervals G inside ``grid_range`` (>= 1).
        order: Polynomial degree k (>= 0; 3 is cubic).
        grid_range: (low, high) of the initial uniform grid.

    Buffers:
        grid: (in_features, G + 2k + 1) knots, non-decreasing per input.
    """

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
    ):
        super().__init__(in_features)
        if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
            raise ValueError(f"bspline grid_size must be an int >= 1, got {grid_size!r}")
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            raise ValueError(f"bspline order must be an int >= 0, got {order!r}")
        grid_range = _check_range(grid_range, "bspline")
        self.grid_size = grid_size
        self.order = order
        self.grid_range = grid_range
        self.register_buffer("grid", uniform_knots(in_features, grid_size, order, grid_range).to(torch.get_default_dtype()))
        # plain attribute, not a buffer: module.to(float32) must not round these constants
        self._local_poly = torch.from_numpy(_local_polynomials(order))
        self._poly_cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._uniform_cache: tuple[int, int, bool] | None = None

    @property
    def num_functions(self) -> int:
        return self.grid_size + self.order

    def config(self) -> dict[str, Any]:
        return {"grid_size": self.grid_size, "order": self.order, "grid_range": list(self.grid_range)}

    def is_uniform(self) -> bool:
        """Whether every input's knots are equally spaced (then the fast local form is used)."""
        if self.grid.device.type == "meta":  # shape-only tracing: no values to inspect
            return True
        key = (self.grid._version, self.grid.data_ptr())
        if self._uniform_cache is None or self._uniform_cache[:2] != key:
            diffs = self.grid.diff(dim=-1)
            h = diffs[:, :1]
            uniform = bool(((diffs - h).abs() <= 1e-6 * h.abs()).all() and (h > 0).all())
            self._uniform_cache = (*key, uniform)
        return self._uniform_cache[2]

    def _uniform_params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t0 = self.grid[:, 0].to(dtype)
        inv_h = (1.0 / (self.grid[:, 1] - self.grid[:, 0])).to(dtype)
        key = (dtype, self.grid.device)
        if key not in self._poly_cache:
            self._poly_cache[key] = self._local_poly.to(device=self.grid.device, dtype=dtype)
        return t0, inv_h, self._poly_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_uniform():
            return cox_de_boor(x, self.grid, self.order)
        t0, inv_h, poly = self._uniform_params(x.dtype)
        pos, vals = _local_eval(x, t0, inv_h, poly, self.order, self.num_functions)
        return _scatter_dense(pos, vals[..., : self.order + 1], self.num_functions)

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if not self.is_uniform():
            return super().linear(x, weight)
        t0, inv_h, poly = self._uniform_params(x.dtype)
        return _UniformBSplineLinear.apply(x, weight, t0, inv_h, poly, self.order, self.num_functions)


def _check_range(grid_range: Sequence[float], who: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ValueError(f"{who} grid_range must be two numbers (low, high), got {grid_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{who} grid_range must be finite with low < high, got {grid_range!r}")
    return (lo, hi)


@hookimpl
def kantk_bases():
    yield BasisSpec("bspline", BSplineBasis, "B-splines of order k on G intervals (pykan's basis)")
