"""Knot vectors of the B-spline basis: from data, split for refinement, exact knot insertion."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from kantk.bases.base import data_range, distinct_quantiles, functorch_active


def data_knots(
    x: torch.Tensor, grid_size: int, order: int, grid_eps: float = 0.02, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Knots that follow the samples: pykan's mix of uniform and quantile grid points.

    ``grid_eps * uniform(min, max) + (1 - grid_eps) * quantiles`` for the G + 1 interior knots,
    then ``order`` knots each side at the mean spacing. Strictly increasing whenever
    ``grid_eps > 0`` (constant inputs get a small window around their value, 1e-3 wide relative
    to it, wider where ``dtype``, the knots' dtype, cannot tell that many knots apart: bfloat16).

    Args:
        x: (batch, in) samples.
        dtype: The dtype the knots will be stored in (default ``x``'s).

    Returns:
        (in, G + 2k + 1) in float64.
    """
    if not 0.0 <= grid_eps <= 1.0:
        raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps!r}")
    floats = [t for t in (x.dtype, dtype) if t is not None and t.is_floating_point]
    eps = max((torch.finfo(t).eps for t in floats), default=torch.finfo(torch.float64).eps)
    x = x.to(torch.float64)
    # intervals of at least two units of the dtype's last place: narrower columns were widened
    # for bfloat16 too (to 0.375 when 48 eps was the rule)
    lo, hi = data_range(x, min_width=max(1e-3, 2 * grid_size * eps))  # (in,)
    levels = torch.linspace(0, 1, grid_size + 1, dtype=torch.float64, device=x.device)
    uniform = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * levels  # (in, G+1)
    adaptive = distinct_quantiles(x.clamp(lo, hi), levels).t()  # (in, G+1)
    adaptive[:, 0], adaptive[:, -1] = lo, hi
    inner = grid_eps * uniform + (1 - grid_eps) * adaptive
    h = (inner[:, -1:] - inner[:, :1]) / grid_size  # (in, 1)
    steps = torch.arange(1, order + 1, dtype=torch.float64, device=x.device)
    left = inner[:, :1] - h * steps.flip(0)
    right = inner[:, -1:] + h * steps
    return torch.cat([left, inner, right], dim=-1)


def split_counts(grid_size: int, size: int) -> list[int]:
    """Into how many parts each of ``grid_size`` intervals is split to make ``size`` (>= grid_size).

    ``size // grid_size`` each when it divides; otherwise spread as evenly (and symmetrically) as
    rounding allows, e.g. 3 -> 5 gives [2, 1, 2].
    """
    edges = [math.floor(i * size / grid_size + 0.5) for i in range(grid_size + 1)]
    return [b - a for a, b in zip(edges, edges[1:])]


def split_intervals(knots: torch.Tensor, order: int, parts: Sequence[int], outer: int = 1) -> torch.Tensor:
    """Split interval ``i`` of the grid range into ``parts[i]`` equal parts, the outer ones into ``outer``.

    Args:
        knots: (in, G + 2k + 1) knot vectors with ``order`` = k outer knots each side.
        parts: G positive ints.

    Returns:
        (in, sum(parts) + 2k * outer + 1), containing every old knot.
    """
    k = order
    counts = [outer] * k + list(parts) + [outer] * k
    pieces = [knots[:, :1]]
    for i, count in enumerate(counts):
        a, b = knots[:, i : i + 1], knots[:, i + 1 : i + 2]  # (in, 1)
        frac = torch.arange(1, count + 1, dtype=knots.dtype, device=knots.device) / count
        pieces.append(a + (b - a) * frac)  # ends exactly at b
        pieces[-1][:, -1:] = b
    return torch.cat(pieces, dim=-1)


def resampled_knots(knots: torch.Tensor, order: int, grid_size: int) -> torch.Tensor:
    """Knots for ``grid_size`` intervals that follow the spacing of the given ones, outer knots kept.

    The new interior knots interpolate the old interior knots linearly at the fractional
    positions ``j * G_old / grid_size``, so they keep the density of a grid adapted to data.

    Args:
        knots: (in, G_old + 2k + 1) knot vectors with ``order`` = k outer knots each side.

    Returns:
        (in, grid_size + 2k + 1) float64.
    """
    knots = knots.to(torch.float64)
    k = order
    old_size = knots.shape[1] - 2 * k - 1
    inner = knots[:, k : k + old_size + 1]  # (in, G_old + 1)
    pos = torch.arange(grid_size + 1, dtype=torch.float64, device=knots.device) * (old_size / grid_size)
    j = pos.floor().long().clamp(max=old_size - 1)
    new_inner = inner[:, j] + (inner[:, j + 1] - inner[:, j]) * (pos - j)  # (in, grid_size + 1)
    new_inner[:, 0], new_inner[:, -1] = inner[:, 0], inner[:, -1]
    return torch.cat([knots[:, :k], new_inner, knots[:, old_size + k + 1 :]], dim=-1)


def insert_knots(
    knots: torch.Tensor, coef: torch.Tensor, new_knots: torch.Tensor, order: int
) -> torch.Tensor:
    """Coefficients of the same spline on a refined knot vector (the Oslo algorithm), in float64.

    New coefficient ``j`` is the blossom of the old spline's polynomial piece at ``new_knots[j]``,
    evaluated at ``new_knots[j+1 .. j+k]`` by a de Boor-like recursion. Outside the old knots the
    spline is 0, which the recursion sees as zero coefficients of virtual B-splines.

    Every old knot strictly inside ``(new_knots[:, 0], new_knots[:, -1])`` must be a new knot too,
    and the new ends must lie within the old ones. The result then reproduces the old spline
    exactly (to round-off) on ``[new_knots[:, k], new_knots[:, -k-1]]``, and everywhere when the
    ends coincide.

    Args:
        knots: (in, m) strictly increasing old knots.
        coef: (out, in, m - order - 1).
        new_knots: (in, m') refined knots.
        order: Polynomial degree k.

    Returns:
        (out, in, m' - order - 1) float64.
    """
    k = order
    t = knots.to(torch.float64)
    tau = new_knots.to(torch.float64)
    c = coef.to(torch.float64)
    n_in, m = t.shape
    n_new = tau.shape[1] - k - 1
    dev = t.device
    # k virtual knots each side (real index i is padded index i + k); they only ever weigh the
    # zero coefficients of virtual B-splines
    pad = ((t[:, -1] - t[:, 0]).abs() + 1.0).unsqueeze(-1)  # (in, 1)
    steps = torch.arange(1, k + 1, dtype=torch.float64, device=dev)
    tp = torch.cat([t[:, :1] - pad * steps.flip(0), t, t[:, -1:] + pad * steps], dim=-1)  # (in, m + 2k)
    cp = torch.nn.functional.pad(c, (k, k))  # (out, in, n + 2k)
    # mu: the old interval holding each new knot, t_mu <= tau_j < t_{mu+1} (real index)
    mu = torch.searchsorted(t.contiguous(), tau[:, :n_new].contiguous(), right=True) - 1
    mu = mu.clamp(0, m - 2)  # (in, n_new)
    # weights of the k+1 old coefficients mu-k .. mu in each new one: run the recursion on the
    # unit vectors, so its cost does not grow with the number of outputs
    eye = torch.eye(k + 1, dtype=torch.float64, device=dev)
    weights = eye.expand(n_in, n_new, k + 1, k + 1)  # (in, n_new, position s, unit)
    for level in range(1, k + 1):
        arg = tau[:, level : level + n_new].unsqueeze(-1)  # tau_{j+level}, (in, n_new, 1)
        alive = torch.arange(level, k + 1, device=dev)  # positions s still alive
        lo_idx = (mu.unsqueeze(-1) + alive).reshape(n_in, -1)  # padded index of t_i, i = mu - k + s
        lo_t = tp.gather(1, lo_idx).view(n_in, n_new, -1)
        hi_t = tp.gather(1, lo_idx + (k + 1 - level)).view(n_in, n_new, -1)
        den = hi_t - lo_t
        alpha = _ratio_or_zero(arg - lo_t, den)
        alpha = alpha.unsqueeze(-1)  # (in, n_new, k - level + 1, 1)
        weights = (1 - alpha) * weights[..., :-1, :] + alpha * weights[..., 1:, :]
    weights = weights[..., 0, :]  # (in, n_new, k + 1)
    out = torch.zeros(c.shape[0], n_in, n_new, dtype=torch.float64, device=dev)
    for s in range(k + 1):  # padded index of old coefficient mu - k + s is mu + s
        idx = (mu + s).unsqueeze(0).expand(c.shape[0], -1, -1)
        out += weights[..., s] * cp.gather(-1, idx)
    return out


def local_bspline_features(
    x: torch.Tensor, knots: torch.Tensor, order: int, extend: bool = False
) -> torch.Tensor:
    """B-spline values on any knot vectors by de Boor's local recursion (same values as :func:`cox_de_boor`).

    Only the ``order + 1`` bases that are non-zero at each input are computed (O(k^2) work per
    input instead of O(k * m)), then scattered into the dense result. Differentiable in ``x``
    (twice too) inside each knot interval, like the splines themselves; the basis's evaluation
    path for non-uniform grids.

    Args:
        x: (batch, in).
        knots: (in, m) non-decreasing knots per input.
        order: Polynomial degree k.
        extend: Evaluate inputs beyond the grid range ``[knots[k], knots[m - k - 1]]`` with the
            polynomials of its first or last interval (continuing the outer pieces) instead of
            the fading outer bases.

    Returns:
        (batch, in, m - order - 1) in ``x``'s dtype; zero outside ``[knots[0], knots[-1])``
        unless ``extend``; NaN for a NaN input. float16 inputs are computed in float32: the
        gradient of ``(x - t_i) / (t_j - t_i)`` overflowed float16 on knots 5e-4 apart (every
        input gradient NaN, the values finite).
    """
    if x.dtype == torch.float16:
        return local_bspline_features(x.float(), knots, order, extend).to(torch.float16)
    k = order
    t = knots.to(x.dtype)
    n_in, m = t.shape
    n = m - k - 1
    # k virtual knots each side (padded index = real index + k) so every interval has k+1 bases
    pad = ((t[:, -1] - t[:, 0]).abs() + 1.0).unsqueeze(-1)
    steps = torch.arange(1, k + 1, dtype=t.dtype, device=t.device)
    tp = torch.cat([t[:, :1] - pad * steps.flip(0), t, t[:, -1:] + pad * steps], dim=-1)  # (in, m + 2k)
    if extend:
        inside = torch.ones_like(x, dtype=torch.bool)
        xc = x
    else:
        inside = (x >= t[:, 0]) & (x < t[:, -1])  # (batch, in)
        xc = torch.where(inside, x, t[:, 0].expand_as(x))
    j = torch.searchsorted(t.contiguous(), xc.t().contiguous(), right=True).t() - 1  # (batch, in) interval
    j = j.clamp(k, m - k - 2) if extend else j.clamp(0, m - 2)  # extend: grid intervals only
    j = j + k  # padded index of the interval's left knot
    tpx = tp.unsqueeze(0).expand(x.shape[0], -1, -1)  # (batch, in, m + 2k)

    def knot(offset: int) -> torch.Tensor:
        return tpx.gather(-1, (j + offset).unsqueeze(-1)).squeeze(-1)  # (batch, in)

    left = [xc - knot(1 - d) for d in range(1, k + 1)]  # left[d - 1] = x - t_{j+1-d}
    right = [knot(d) - xc for d in range(1, k + 1)]  # right[d - 1] = t_{j+d} - x
    values = [torch.ones_like(xc)]
    for d in range(1, k + 1):
        saved = torch.zeros_like(xc)
        new = []
        for r in range(d):
            den = right[r] + left[d - r - 1]
            temp = _ratio_or_zero(values[r], den)
            new.append(saved + right[r] * temp)
            saved = left[d - r - 1] * temp
        new.append(saved)
        values = new
    local = torch.stack(values, dim=-1) * inside.unsqueeze(-1)  # (batch, in, k+1): bases j-k .. j
    index = (j - k).unsqueeze(-1) - k + torch.arange(k + 1, device=x.device)  # real basis index
    valid = (index >= 0) & (index < n)
    out = x.new_zeros(*x.shape, n)
    if functorch_active():  # vmap over stacked grids: the values are batched, the zeros not
        out = out.scatter_add(-1, index.clamp(0, n - 1), local * valid)
    else:
        out.scatter_add_(-1, index.clamp(0, n - 1), local * valid)
    # a NaN input is "outside" every comparison above: give it NaN, as the uniform paths do
    return torch.where(torch.isnan(x).unsqueeze(-1), torch.nan, out)


def _ratio_or_zero(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (repeated or virtual knots)."""
    positive = den > 0
    return torch.where(
        positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num)
    )


def _interval_samples(knots: torch.Tensor, first: int, last: int, per: int = 8) -> torch.Tensor:
    """``per`` points inside each knot interval ``first .. last - 1``, as samples (points, in)."""
    left = knots[:, first:last].unsqueeze(-1)  # (in, intervals, 1)
    width = (knots[:, first + 1 : last + 1] - knots[:, first:last]).unsqueeze(-1)
    frac = (torch.arange(per, dtype=knots.dtype, device=knots.device) + 0.5) / per
    return (left + width * frac).reshape(knots.shape[0], -1).t()
