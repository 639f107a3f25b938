"""Gaussian radial basis functions on a set of centres (fast-kan's basis, wider by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kantk._validation import check_int, check_number
from kantk.bases import gpu
from kantk.bases.base import (
    Basis,
    EdgeWeights,
    check_grid_range,
    check_refine_coef,
    check_refine_size,
    data_range,
    distinct_quantiles,
    edge_sum,
    edge_values,
    fit_coefficients,
    functorch_active,
    refit_with_buffers,
)
from kantk.plugins import hookimpl
from kantk.types import BasisSpec

#: |z| beyond which exp(-z*z) is 0 in every float dtype; z is clamped there (see forward).
_Z_MAX = 100.0


class RBFBasis(Basis):
    """Gaussian bumps ``exp(-((x - c_i) / w)^2)`` on ``num_centers`` centres per input.

    The width ``w`` is ``width_scale`` times the mean spacing of the centres. fast-kan uses
    ``width_scale=1``; the default 2 makes neighbouring bumps overlap more, so that moving the
    centres (``update_grid``) or refining them keeps a smooth function to about 5e-4 and 1e-5
    instead of about 6e-3 and 6e-4 to 2e-3 (a Gaussian cannot be rebuilt exactly from narrower ones
    spaced about as far apart as they are wide), at about the same accuracy when training.

    Args:
        in_features: Number of inputs.
        num_centers: Number of centres (>= 2), uniformly spaced over ``grid_range`` at first.
        grid_range: (low, high) of the first and last centre.
        width_scale: Bump width in units of the centre spacing (> 0).

    Buffers:
        centers: (in_features, num_centers).
        width: (in_features,) bump width.
    """

    centers: torch.Tensor  # buffers, declared for type checkers (nn.Module.__getattr__ is untyped)
    width: torch.Tensor

    def __init__(
        self,
        in_features: int,
        num_centers: int = 8,
        grid_range: Sequence[float] = (-1.0, 1.0),
        width_scale: float = 2.0,
    ):
        super().__init__(in_features)
        check_int("rbf num_centers", num_centers, 2)
        check_number("rbf width_scale", width_scale, 0, strict=True, finite=True)
        lo, hi = check_grid_range(grid_range, "rbf")
        self.num_centers = num_centers
        self.grid_range = (lo, hi)
        self.width_scale = float(width_scale)
        centers = torch.linspace(lo, hi, num_centers, dtype=torch.float64)
        self.register_buffer(
            "centers", centers.expand(in_features, -1).contiguous().to(torch.get_default_dtype())
        )
        spacing = (hi - lo) / (num_centers - 1)
        self.register_buffer("width", torch.full((in_features,), self.width_scale * spacing))

    @property
    def num_functions(self) -> int:
        return self.num_centers

    def range_ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and the last centre per input, two (in,) tensors of ``dtype``
        (:class:`~kantk.bases.SupportsInputRange`)."""
        return self.centers.amin(dim=-1).to(dtype), self.centers.amax(dim=-1).to(dtype)

    def config(self) -> dict[str, Any]:
        return {
            "num_centers": self.num_centers,
            "grid_range": list(self.grid_range),
            "width_scale": self.width_scale,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float16:  # x - c overflows float16 on wide grids (6e4 - -6e4): in float32
            return self.forward(x.float()).to(torch.float16)
        centers = self.centers.to(x.dtype)
        inv_width = self.width.to(x.dtype).reciprocal()
        if functorch_active() or centers.requires_grad or inv_width.requires_grad:
            return _bumps(x, centers, inv_width)  # torch.func has no rule for _Bumps; nor do centres
        return _Bumps.apply(x, centers, inv_width)

    def fused_edges(self, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
        """The layer's edge sum: fused Triton kernels on CUDA (float32, autocast too), else
        :func:`~kantk.bases.base.edge_sum`."""
        if gpu.available(x, weights.coef):
            return gpu.rbf(self, x, weights)
        return edge_sum(self, x, weights)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, coef: torch.Tensor, grid_eps: float = 0.02) -> torch.Tensor:
        """Move the centres to the samples (quantile-spaced, mixed with uniform by ``grid_eps``).

        The centres span the samples' range plus half a mean spacing each side, so the extreme
        samples sit between two bumps rather than on the last one (the old function near the ends
        of the range is then rebuilt about 10x closer); the width is ``width_scale`` times the
        mean spacing.

        Returns refitted coef (out, in, n) that keep the edge functions on ``x``.
        """
        target = edge_values(self(x), coef)  # (batch, out, in)
        xd = x.to(torch.float64)
        lo, hi = data_range(xd)
        levels = torch.linspace(0, 1, self.num_centers, dtype=torch.float64, device=x.device)
        uniform = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * levels
        adaptive = distinct_quantiles(xd.clamp(lo, hi), levels).t()
        centers = grid_eps * uniform + (1 - grid_eps) * adaptive  # (in, C)
        stretch = 1 + 1 / (self.num_centers - 1)  # half a mean spacing more on each side
        mid = ((lo + hi) / 2).unsqueeze(-1)
        centers = mid + (centers - mid) * stretch
        spacing = stretch * (hi - lo) / (self.num_centers - 1)
        width = self.width_scale * spacing
        dtype = self.centers.dtype
        if not (torch.isfinite(centers.to(dtype)).all() and torch.isfinite(width.to(dtype)).all()):
            # float32 samples near 3e38: the stretched centres overflowed, silently
            raise ValueError(
                f"update_grid: samples as large as {float(xd.abs().max()):.3g} put the centres beyond the "
                f"largest {dtype} number; scale the inputs, or use float64"
            )
        return refit_with_buffers(self, x, target, centers=centers, width=width)

    @torch.no_grad()
    def refine(self, size: int, coef: torch.Tensor) -> tuple[RBFBasis, torch.Tensor]:
        """A copy with ``size`` narrower bumps, refitted by least squares (approximate).

        The old bumps reach about one width beyond the first and last centre; the new centres
        split that range, ``[c_0 - w, c_last + w]``, into ``size + 1`` parts following the old
        centres' spacing (interpolated, so centres adapted to data stay adapted), and the new
        width is ``width_scale`` times the new mean spacing. The coefficients are a float64
        least-squares fit on dense samples of the old centres' range (the range the function is
        kept on; beyond it the bumps fade out and the fit would trade accuracy inside for
        accuracy there). Narrower Gaussians rebuild wider ones closely but not exactly: with the
        default ``width_scale=2`` expect a relative change of about 1e-5 on the centres' range
        (about 6e-4 to 2e-3 with fast-kan's ``width_scale=1``).

        Args:
            size: The new ``num_centers``; an int >= the current one.
            coef: (out, in, num_centers) coefficients on this basis.

        Returns:
            The finer basis (same dtype and device) and its coefficients (out, in, size).

        Raises:
            ValueError: ``size`` is not an int >= ``num_centers``, or ``coef`` has the wrong shape.
        """
        size = check_refine_size(size, self.num_centers, "num_centers", "rbf")
        check_refine_coef(self, coef)
        if size == self.num_centers:  # an equal copy (the contract); a refit moved the function
            same = RBFBasis(
                self.in_features, num_centers=size, grid_range=self.grid_range, width_scale=self.width_scale
            )
            same.centers = self.centers.clone()
            same.width = self.width.clone()
            return same, coef.detach().clone()
        old_c = self.centers.to(torch.float64)  # (in, C)
        w = self.width.to(torch.float64).unsqueeze(-1)  # (in, 1)
        reach = torch.cat([old_c[:, :1] - w, old_c, old_c[:, -1:] + w], dim=-1)  # (in, C + 2)
        n_parts = self.num_centers + 1
        pos = torch.arange(1, size + 1, dtype=torch.float64, device=old_c.device) * (n_parts / (size + 1))
        j = pos.floor().long().clamp(max=n_parts - 1)
        centers = reach[:, j] + (reach[:, j + 1] - reach[:, j]) * (pos - j)  # (in, size)
        width = self.width_scale * (reach[:, -1] - reach[:, 0]) / (size + 1)  # (in,)
        finer = RBFBasis(
            self.in_features, num_centers=size, grid_range=self.grid_range, width_scale=self.width_scale
        )
        finer.centers = centers.to(self.centers)  # same dtype and device as this basis
        finer.width = width.to(self.width)
        n_samples = 16 * (size + 1) + 1
        steps = torch.linspace(0, 1, n_samples, dtype=torch.float64, device=old_c.device).unsqueeze(-1)
        lo, hi = old_c[:, 0], old_c[:, -1]
        x = lo + (hi - lo) * steps  # (samples, in)
        old_feats = self._features64(x, old_c, w[:, 0])  # (samples, in, C)
        target = edge_values(old_feats, coef.to(torch.float64))  # (samples, out, in)
        new_coef = fit_coefficients(self._features64(x, centers, width), target)
        return finer, new_coef.to(coef.dtype)

    @staticmethod
    def _features64(x: torch.Tensor, centers: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """Float64 bumps: x (batch, in), centers (in, C), width (in,) -> (batch, in, C)."""
        return _bumps(x, centers, width.reciprocal())


def _bumps(x: torch.Tensor, centers: torch.Tensor, inv_width: torch.Tensor) -> torch.Tensor:
    """``exp(-z*z)`` with ``z = (x - c) / w`` (times ``1/w``, not a broadcast division), in
    differentiable torch ops."""
    return torch.exp(-_scaled(x, centers, inv_width).square())


def _scaled(x: torch.Tensor, centers: torch.Tensor, inv_width: torch.Tensor) -> torch.Tensor:
    """z (batch, in, C), clamped where exp(-z*z) is 0 anyway: z*z overflowing to inf gave
    inf * 0 = NaN gradients (x = 3e38 in float32, 4e4 in float16). The difference comes first:
    ``x/w - c/w`` cancelled (centres near 1000: float32 bumps 4e-5 off, bfloat16 ones 1.0)."""
    z = (x.unsqueeze(-1) - centers) * inv_width.unsqueeze(-1)
    return z.clamp(-_Z_MAX, _Z_MAX)


class _Bumps(torch.autograd.Function):
    """:func:`_bumps` in 6 passes over the (batch, in, C) values forward and 3 backward (autograd
    took 17 kernels, most of the RBF layer's time over the matmul floor on the CPU).

    Backward: d exp(-z^2)/dx = -2 z exp(-z^2) / w. Where z was clamped the bump is exactly 0
    (exp(-1e4)), so the gradient is 0 there, as clamp's backward gives. Double backward
    (``create_graph=True``) recomputes the bumps with :func:`_bumps`' differentiable ops.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, centers: torch.Tensor, inv_width: torch.Tensor) -> torch.Tensor:
        z = torch.sub(x.unsqueeze(-1), centers).mul_(inv_width.unsqueeze(-1))  # as _scaled
        z.clamp_(-_Z_MAX, _Z_MAX)
        phi = torch.mul(z, z).neg_().exp_()
        ctx.save_for_backward(x, centers, inv_width, z, phi)
        return phi

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, centers, inv_width, z, phi = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        if torch.is_grad_enabled():  # create_graph: a differentiable recomputation
            z = _scaled(x, centers, inv_width)
            return (grad * torch.exp(-z.square()) * z).sum(-1) * (-2 * inv_width), None, None
        return torch.mul(grad, phi).mul_(z).sum(-1).mul_(-2 * inv_width), None, None


@hookimpl
def kantk_bases():
    yield BasisSpec("rbf", RBFBasis, "Gaussian radial basis functions (fast-kan)")
