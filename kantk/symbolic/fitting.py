"""Affine fitting of sampled edge functions: ``y ~ c * f(a * x + b) + d``, vectorised.

One call fits every (function, edge) pair at once, in float64:

1. Each edge's inputs are normalised to ``u = (x - m) / s`` in [-1, 1], so the search ranges mean
   the same on every layer: ``a_range`` and ``b_range`` are for ``f(a' * u + b')`` (pykan's
   defaults, (-10, 10), on data already in [-1, 1]). Results are mapped back to ``x``.
2. Coarse grid over (a', b') (``grid_size`` x ``grid_size``), for all edges and candidates in one
   batched tensor per function, on at most ``max_samples`` samples (equally spaced in the sorted
   inputs: an edge function is 1-D, so its shape survives). For every candidate the optimal
   ``c, d`` are closed-form least squares, so the grid only scores ``r^2 = cov(f, y)^2 /
   (var f * var y)``. Candidates sending a sample outside the function's real domain are rejected.
3. ``zoom_rounds`` finer grids around each best point (``zoom_size`` x ``zoom_size`` over one
   coarse spacing either side). Candidates within ``R2_TIE`` of the best are equivalent (``b``
   of ``exp`` is absorbed by ``c``, the scale of ``a`` of a power by ``c``); the one nearest
   ``(a', b') = (1, 0)`` is kept, so the fixed edge trains well conditioned afterwards.
4. ``polish_steps`` of Levenberg-Marquardt on (a', b', c, d), batched over pairs, with exact
   derivatives from autograd: this recovers the parameters to near machine precision on clean
   data, where a grid alone stops at its spacing.
5. ``c, d`` and ``r^2 = 1 - SSE / SST`` are recomputed on *all* samples with the exact function
   (the one the model will run): a pair whose exact values are not finite gets ``r^2 = -inf``.

The search uses each function's singular-safe form (see :mod:`kantk.symbolic.libraries`).

**Domains.** A candidate must be real and finite on every sample *and* on the edge's input range
widened by ``domain_margin`` (default :data:`DOMAIN_MARGIN`, 10% of the range) on each side, so
that inputs a little outside the fitted data (test points, the inputs a refit produces upstream)
stay in the domain: for a function with a declared :class:`~kantk.symbolic.records.Domain`,
``a * x + b`` must stay inside it on the whole widened range (``sqrt`` of a non-negative number,
``1/x`` without crossing its pole, ``arcsin`` within [-1, 1]); for any function its values at the
ends of the widened range must be finite. The margin never crosses 0: an edge whose inputs are
all >= 0 (<= 0) is taken to stay so (inputs in [0, 1] are a density, an amplitude), its range
widened to ``(0, hi + margin]`` with 0 itself excluded, so ``sqrt(x)`` and ``log(x)`` remain
admissible there and ``sqrt(x - 0.001)`` does not. A candidate that violates this is rejected
(the search moves to admissible ``(a, b)``, e.g. ``sqrt(x + 0.1)`` instead of ``sqrt(x - 0.001)``,
and scores it by its true fit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kantk._validation import check_number
from kantk.symbolic.records import SymbolicFunction

#: Added inside pykan's r^2 loss ``log2(R2_FLOOR + 1 - r2)``.
R2_FLOOR = 1e-5
#: Candidates whose r^2 is this close to the best are equivalent (a parameter symmetry).
R2_TIE = 1e-10
#: Fraction of an edge's input range added on each side where a candidate must stay in its domain.
DOMAIN_MARGIN = 0.1


@dataclass(frozen=True)
class AffineFit:
    """Best affine parameters of every (function, edge) pair.

    Attributes:
        params: (n_functions, n_edges, 4) float64, ``(a, b, c, d)`` in the edge's own input
            coordinates: the edge is ``c * f(a * x + b) + d``.
        r2: (n_functions, n_edges) float64 coefficient of determination on all samples, with the
            exact function; ``-inf`` when no admissible candidate exists (every (a, b) leaves
            the real domain, or the fitted function is not finite on the samples). For a
            constant target, 1 where the fit is exact and 0 elsewhere.
    """

    params: torch.Tensor
    r2: torch.Tensor


def fit_affine(
    x: torch.Tensor,
    y: torch.Tensor,
    functions: Sequence[SymbolicFunction],
    a_range: tuple[float, float] = (-10.0, 10.0),
    b_range: tuple[float, float] = (-10.0, 10.0),
    *,
    grid_size: int = 41,
    zoom_rounds: int = 2,
    zoom_size: int = 9,
    polish_steps: int = 8,
    search_samples: int = 128,
    polish_samples: int = 1024,
    chunk_elements: int = 1 << 18,
    domain_margin: float = DOMAIN_MARGIN,
) -> AffineFit:
    """Fit ``y ~ c * f(a * x + b) + d`` for every function in ``functions`` and every edge.

    Args:
        x: (n_edges, n_samples) or (n_samples,) edge inputs.
        y: Same shape: the edge outputs to reproduce.
        functions: Candidate records (their ``safe`` form is searched, ``torch_fn`` checked).
        a_range, b_range: Search ranges of the slope and offset in normalised coordinates
            (inputs mapped to [-1, 1] per edge).
        grid_size: Points per axis of the coarse grid (>= 3).
        zoom_rounds: Finer grids after the coarse one.
        zoom_size: Points per axis of each finer grid (>= 3).
        polish_steps: Levenberg-Marquardt iterations (0: grid only).
        search_samples: Samples per edge for the grids (equally spaced in sorted input order).
        polish_samples: Samples per edge for Levenberg-Marquardt (all samples are used for the
            final ``c, d`` and ``r^2``).
        chunk_elements: Bound on (edges x candidates x samples) per batched tensor (memory).
        domain_margin: Fraction of each edge's input range, added on both sides (never across
            0), on which ``a * x + b`` must stay in the function's domain (0: the samples only).

    Returns:
        An :class:`AffineFit` (squeezed to (n_functions, 4) and (n_functions,) for 1-D input).

    Raises:
        ValueError: Shapes differ, fewer than 3 samples, non-finite samples, bad ranges.
    """
    squeeze = x.dim() == 1
    x64, y64 = _check_inputs(x, y)
    for name, rng in (("a_range", a_range), ("b_range", b_range)):
        # finite and of a size a grid can step through: (-inf, inf) gave NaN parameters and r^2
        # -inf for every function
        if len(rng) != 2 or not -1e6 <= float(rng[0]) < float(rng[1]) <= 1e6:
            raise ValueError(f"{name} must be (low, high) with -1e6 <= low < high <= 1e6, got {rng!r}")
    if grid_size < 3 or zoom_size < 3:
        raise ValueError("grid_size and zoom_size must be >= 3")
    if not functions:
        raise ValueError("fit_affine needs at least one candidate function")
    check_number("domain_margin", domain_margin, 0, finite=True)

    lo, hi = x64.min(dim=1).values, x64.max(dim=1).values
    mid = (lo + hi) / 2  # (E,)
    half = ((hi - lo) / 2).clamp_min(1e-12 * mid.abs().clamp_min(1.0))
    u_all = (x64 - mid[:, None]) / half[:, None]  # (E, n) in [-1, 1]
    span = _Span.around(lo, hi, float(domain_margin))
    span_u = span.mapped(mid, half)
    us, ys = _subsample(u_all, y64, search_samples)  # (E, ns)
    yc = ys - ys.mean(dim=1, keepdim=True)
    syy = (yc * yc).sum(dim=1)  # (E,)
    yc1 = torch.stack([torch.ones_like(yc), yc], dim=-1)  # (E, ns, 2)
    up, yp = _subsample(u_all, y64, polish_samples)

    params, r2 = [], []
    affine = [_is_affine(fn, x64) for fn in functions]
    for fn, is_affine in zip(functions, affine):
        if is_affine:
            # f ignores (a, b) (the constant 0) or they are redundant with (c, d) (the identity):
            # take a = 1, b = 0 in the edge's own coordinates, i.e. a' = s, b' = m.
            ab = torch.stack([half, mid], dim=-1)
        else:
            ab = _grid_search(
                fn, us, yc1, syy, span_u, a_range, b_range, grid_size, zoom_rounds, zoom_size, chunk_elements
            )
            if polish_steps > 0:
                ab = _polish(fn, up, yp, span_u, ab, a_range, b_range, polish_steps)
        p, q = _final(fn, u_all, y64, None if is_affine else span_u, ab)
        params.append(p)
        r2.append(q)
    params_t = torch.stack(params)  # (F, E, 4) in normalised coordinates
    a_n, b_n = params_t[..., 0], params_t[..., 1]
    params_t = torch.stack(
        [a_n / half, b_n - a_n * mid / half, params_t[..., 2], params_t[..., 3]], dim=-1
    )  # a' u + b' = (a'/s) x + (b' - a' m / s)
    r2_t = torch.stack(r2)
    for i, fn in enumerate(functions):
        if not affine[i]:
            _keep_in_domain(fn, x64, span, a_n[i, :, None] * u_all + b_n[i, :, None], params_t[i], r2_t[i])
    # an edge that saw one input value is a constant: a = 0, and b the argument it was fitted at
    # (the 1e-12 scale above made a = -1e12, and f's argument left its domain next to the sample)
    single = hi == lo
    if bool(single.any()):
        argument = params_t[..., 0] * mid + params_t[..., 1]  # (F, E)
        params_t[..., 0] = torch.where(single, torch.zeros_like(argument), params_t[..., 0])
        params_t[..., 1] = torch.where(single, argument, params_t[..., 1])
    if squeeze:
        return AffineFit(params_t[:, 0], r2_t[:, 0])
    return AffineFit(params_t, r2_t)


def symbolic_scores(
    r2: torch.Tensor,
    complexity: torch.Tensor,
    weight_simple: float = 0.8,
    floor: float | torch.Tensor = R2_FLOOR,
) -> torch.Tensor:
    """pykan's ranking score (lower is better), ``+inf`` for a rejected candidate.

    ``score = weight_simple * complexity + (1 - weight_simple) * log2(floor + 1 - r2)``: every
    unit of complexity must be paid for by ``weight_simple / (1 - weight_simple)`` bits (4 bits, a
    residual 16 times smaller, at the default 0.8) of unexplained variance, counted above
    ``floor`` (pykan's 1e-5): differences in ``1 - r2`` well below the floor do not count.

    Args:
        r2: (..., F) coefficients of determination (``-inf`` for a rejected candidate).
        complexity: (F,) complexities.
        weight_simple: In [0, 1]; 0 ranks by fit quality alone.
        floor: > 0, a number or a tensor broadcasting against ``r2`` (one per edge: ``(E, 1)``).
    """
    if not 0.0 <= weight_simple <= 1.0:
        raise ValueError(f"weight_simple must be in [0, 1], got {weight_simple!r}")
    floor_t = torch.as_tensor(floor, dtype=r2.dtype, device=r2.device)
    if not bool((floor_t > 0).all()):
        raise ValueError(f"floor must be > 0, got {floor!r}")
    bits = torch.log2(floor_t + (1 - r2.clamp(max=1.0)))
    score = weight_simple * complexity.to(r2) + (1 - weight_simple) * bits
    return torch.where(torch.isfinite(r2), score, torch.full_like(score, math.inf))


# --- internals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """Per edge, the input interval on which a candidate must stay in its domain, (E,) each.

    ``lo``/``hi`` are its ends; ``lo_open``/``hi_open`` say an end is excluded (the margin was cut
    at 0 there: the inputs are taken to stay strictly on their side of 0).
    """

    lo: torch.Tensor
    hi: torch.Tensor
    lo_open: torch.Tensor
    hi_open: torch.Tensor

    @staticmethod
    def around(lo: torch.Tensor, hi: torch.Tensor, margin: float) -> _Span:
        """``[lo - margin * w, hi + margin * w]`` (w = hi - lo), cut at 0 when it would cross it."""
        w = hi - lo
        lo_e, hi_e = lo - margin * w, hi + margin * w
        cut_lo = (lo >= 0) & (lo_e < 0)
        cut_hi = (hi <= 0) & (hi_e > 0)
        zero = torch.zeros_like(lo)
        # an end cut at 0 is open unless 0 is itself a sample (then the samples check it)
        return _Span(
            torch.where(cut_lo, zero, lo_e),
            torch.where(cut_hi, zero, hi_e),
            cut_lo & (lo > 0),
            cut_hi & (hi < 0),
        )

    def mapped(self, mid: torch.Tensor, half: torch.Tensor) -> _Span:
        """The same interval in normalised coordinates ``(x - mid) / half``."""
        return _Span((self.lo - mid) / half, (self.hi - mid) / half, self.lo_open, self.hi_open)


def _admissible(
    fn: SymbolicFunction, span: _Span, a: torch.Tensor, b: torch.Tensor, exact: bool
) -> torch.Tensor:
    """Whether ``fn(a * t + b)`` is in the domain for ``t`` on ``span``; a, b (E,) or (E, C).

    With a declared domain the argument interval must lie in it; in any case ``fn`` (the exact
    function when ``exact``, else the safe form of the search) must be finite at its closed ends.
    """
    extra = a.dim() - span.lo.dim()
    lo, hi, lo_open, hi_open = (
        v.reshape(v.shape + (1,) * extra) for v in (span.lo, span.hi, span.lo_open, span.hi_open)
    )
    z1, z2 = a * lo + b, a * hi + b
    flip = a < 0
    zlo, zhi = torch.where(flip, z2, z1), torch.where(flip, z1, z2)
    open_lo = torch.where(flip, hi_open, lo_open).expand_as(zlo)
    open_hi = torch.where(flip, lo_open, hi_open).expand_as(zlo)
    f = fn.torch_fn if exact else fn.safe
    ok = (torch.isfinite(f(zlo)) | open_lo) & (torch.isfinite(f(zhi)) | open_hi)
    if fn.domain is not None:
        ok = ok & fn.domain.admits(zlo, zhi, open_lo, open_hi)
    return ok


def _check_inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("fit_affine expects torch tensors x and y")
    if x.shape != y.shape or x.dim() not in (1, 2):
        raise ValueError(
            f"x and y must both be (n_samples,) or (n_edges, n_samples), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    x64 = x.detach().to(torch.float64)
    y64 = y.detach().to(torch.float64)
    if x64.dim() == 1:
        x64, y64 = x64[None], y64[None]
    if x64.shape[1] < 3:
        raise ValueError(f"fit_affine needs at least 3 samples per edge, got {x64.shape[1]}")
    if not (torch.isfinite(x64).all() and torch.isfinite(y64).all()):
        raise ValueError("fit_affine needs finite samples; x or y holds NaN or Inf")
    return x64, y64


def _subsample(u: torch.Tensor, y: torch.Tensor, max_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_samples`` samples per edge, equally spaced in the order of ``u``."""
    n = u.shape[1]
    if n <= max_samples:
        return u, y
    order = torch.argsort(u, dim=1)
    pick = torch.linspace(0, n - 1, max_samples, dtype=torch.float64, device=u.device).round().long()
    idx = order[:, pick]  # (E, ns)
    return u.gather(1, idx), y.gather(1, idx)


def _is_affine(fn: SymbolicFunction, like: torch.Tensor) -> bool:
    """Whether ``fn`` is affine in its argument (the constant ``0``, the identity ``x``).

    Then ``c * f(a x + b) + d`` is affine in ``x`` for every (a, b), so there is nothing to search.
    """
    # far points too: hardsigmoid, clamp(-3, 3) and relu(z + 2) are linear on [-1.5, 2.1], and
    # their (a, b) went unsearched (hardsigmoid(8x - 1) fitted with r^2 0.90)
    probe = torch.tensor(
        [-1e3, -41.3, -8.7, -4.3, -2.9, -1.5, -0.3, 0.2, 0.7, 2.1, 3.3, 4.9, 9.1, 37.7, 1e3],
        dtype=torch.float64,
        device=like.device,
    )
    values = fn.safe(probe)
    if not torch.isfinite(values).all():
        return False
    slope = (values[-1] - values[0]) / (probe[-1] - probe[0])
    line = values[0] + slope * (probe - probe[0])
    return bool(
        torch.allclose(values, line, rtol=1e-12, atol=1e-12 * float(values.abs().max().clamp_min(1.0)))
    )


def _r2_grid(values: torch.Tensor, yc1: torch.Tensor, syy: torch.Tensor) -> torch.Tensor:
    """r^2 of the best ``c * v + d`` for every candidate.

    Args:
        values: (E, C, ns) candidate function values (NaN where out of domain).
        yc1: (E, ns, 2): a column of ones and the centred targets. syy: (E,) their sum of squares.

    Returns:
        (E, C); ``-inf`` for candidates with a non-finite value.
    """
    ns = values.shape[-1]
    sums = torch.bmm(values, yc1)  # (E, C, 2): sum v and sum v * (y - mean y), the covariance sum
    s1, sy = sums[..., 0], sums[..., 1]
    valid = torch.isfinite(s1)  # NaN and Inf propagate through the sum: one cheap test per candidate
    if not bool(valid.all()):
        values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        sums = torch.bmm(values, yc1)
        s1, sy = sums[..., 0], sums[..., 1]
    s2 = torch.linalg.vecdot(values, values)
    var = s2 - s1 * s1 / ns
    ok = var > 1e-12 * s2.clamp_min(1e-300)
    r2 = torch.where(
        ok, sy * sy / (var.clamp_min(1e-300) * syy.clamp_min(1e-300)[:, None]), torch.zeros_like(var)
    )
    return torch.where(valid, r2, torch.full_like(r2, -math.inf))


def _grid_search(
    fn: SymbolicFunction,
    us: torch.Tensor,
    yc1: torch.Tensor,
    syy: torch.Tensor,
    span: _Span,
    a_range: tuple[float, float],
    b_range: tuple[float, float],
    grid_size: int,
    zoom_rounds: int,
    zoom_size: int,
    chunk_elements: int,
) -> torch.Tensor:
    """Coarse-to-fine grid search; returns (E, 2) best (a', b') per edge."""
    E = us.shape[0]
    dev = us.device
    a = torch.linspace(float(a_range[0]), float(a_range[1]), grid_size, dtype=torch.float64, device=dev)
    b = torch.linspace(float(b_range[0]), float(b_range[1]), grid_size, dtype=torch.float64, device=dev)
    ga, gb = torch.meshgrid(a, b, indexing="ij")
    cand = torch.stack([ga.reshape(-1), gb.reshape(-1)], dim=-1).expand(E, -1, -1)  # (E, C, 2)
    best = _best_candidates(fn, us, yc1, syy, span, cand, chunk_elements)
    step = torch.tensor([a[1] - a[0], b[1] - b[0]], dtype=torch.float64, device=dev)
    offsets = torch.linspace(-1.0, 1.0, zoom_size, dtype=torch.float64, device=dev)
    oa, ob = torch.meshgrid(offsets, offsets, indexing="ij")
    unit = torch.stack([oa.reshape(-1), ob.reshape(-1)], dim=-1)  # (Z*Z, 2) in [-1, 1]^2
    low = torch.tensor([a_range[0], b_range[0]], dtype=torch.float64, device=dev)
    high = torch.tensor([a_range[1], b_range[1]], dtype=torch.float64, device=dev)
    for _ in range(zoom_rounds):
        cand = (best[:, None, :] + unit[None] * step).clamp(low, high)  # (E, Z*Z, 2)
        best = _best_candidates(fn, us, yc1, syy, span, cand, chunk_elements)
        step = step * 2 / (zoom_size - 1)
    return best


def _best_candidates(
    fn: SymbolicFunction,
    us: torch.Tensor,
    yc1: torch.Tensor,
    syy: torch.Tensor,
    span: _Span,
    cand: torch.Tensor,
    chunk_elements: int,
) -> torch.Tensor:
    """The (a', b') of ``cand`` (E, C, 2) with the highest r^2 per edge, (E, 2)."""
    E, C, _ = cand.shape
    ns = us.shape[1]
    per_chunk = max(1, chunk_elements // max(1, C * ns))
    inside = _admissible(fn, span, cand[..., 0], cand[..., 1], exact=False)  # (E, C), once: small
    out = []
    for start in range(0, E, per_chunk):
        sl = slice(start, start + per_chunk)
        c = cand[sl]
        z = torch.addcmul(c[..., 1:2], c[..., 0:1], us[sl, None, :])  # (e, C, 1) * (e, 1, ns) -> (e, C, ns)
        r2 = _r2_grid(fn.safe(z), yc1[sl], syy[sl])  # (e, C)
        r2 = torch.where(inside[sl], r2, torch.full_like(r2, -math.inf))
        # Equivalent candidates (exp: any b, absorbed by c; powers: the scale of a) tie up to
        # rounding; take the one nearest (a', b') = (1, 0), which keeps later training well
        # conditioned (no c = 1e-4 against b = 9). All -inf: the first, deterministic.
        best = r2.max(dim=1, keepdim=True).values
        closeness = (c[..., 0].abs() - 1) ** 2 + c[..., 1] ** 2  # (e, C)
        tie = (r2 >= best - R2_TIE) & torch.isfinite(r2)
        idx = torch.where(tie, -closeness, torch.full_like(closeness, -math.inf)).argmax(dim=1)
        out.append(c.gather(1, idx[:, None, None].expand(-1, 1, 2)).squeeze(1))
    return torch.cat(out)


def _closed_form(v: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``c, d`` of ``y ~ c * v + d`` per row; v, y (E, n) -> c, d (E,)."""
    vm = v.mean(dim=1, keepdim=True)
    ym = y.mean(dim=1, keepdim=True)
    vc = v - vm
    var = (vc * vc).sum(dim=1)
    cov = (vc * (y - ym)).sum(dim=1)
    ok = var > 1e-24 * (v * v).sum(dim=1).clamp_min(1e-300)
    c = torch.where(ok, cov / var.clamp_min(1e-300), torch.zeros_like(var))
    d = ym.squeeze(1) - c * vm.squeeze(1)
    return c, d


def _values_and_slopes(fn: SymbolicFunction, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        v = fn.safe(zz)
        if not v.requires_grad:
            return v.detach(), torch.zeros_like(z)
        (dv,) = torch.autograd.grad(v.sum(), zz, allow_unused=True)
    return v.detach(), torch.zeros_like(z) if dv is None else dv


def _sse(
    fn: SymbolicFunction, u: torch.Tensor, y: torch.Tensor, span: _Span, theta: torch.Tensor
) -> torch.Tensor:
    v = fn.safe(theta[:, 0:1] * u + theta[:, 1:2])
    r = theta[:, 2:3] * v + theta[:, 3:4] - y
    sse = (r * r).sum(dim=1)
    ok = torch.isfinite(sse) & _admissible(fn, span, theta[:, 0], theta[:, 1], exact=False)
    return torch.where(ok, sse, torch.full_like(sse, math.inf))


def _polish(
    fn: SymbolicFunction,
    u: torch.Tensor,
    y: torch.Tensor,
    span: _Span,
    ab: torch.Tensor,
    a_range: tuple[float, float],
    b_range: tuple[float, float],
    steps: int,
) -> torch.Tensor:
    """Levenberg-Marquardt on (a', b', c, d), every edge at once; returns (E, 2) refined (a', b')."""
    E = u.shape[0]
    dev = u.device
    v = fn.safe(ab[:, 0:1] * u + ab[:, 1:2])
    if not torch.isfinite(v).all():  # some edge has no admissible candidate: fit only the others
        v = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    c, d = _closed_form(v, y)
    theta = torch.cat([ab, c[:, None], d[:, None]], dim=1)  # (E, 4)
    sse = _sse(fn, u, y, span, theta)
    lam = torch.full((E,), 1e-3, dtype=torch.float64, device=dev)
    low = torch.tensor([a_range[0], b_range[0], -math.inf, -math.inf], dtype=torch.float64, device=dev)
    high = torch.tensor([a_range[1], b_range[1], math.inf, math.inf], dtype=torch.float64, device=dev)
    eye = torch.eye(4, dtype=torch.float64, device=dev)
    for _ in range(steps):
        v, dv = _values_and_slopes(fn, theta[:, 0:1] * u + theta[:, 1:2])
        cdv = theta[:, 2:3] * dv
        jac = torch.stack([cdv * u, cdv, v, torch.ones_like(v)], dim=-1)  # (E, ns, 4)
        r = theta[:, 2:3] * v + theta[:, 3:4] - y  # (E, ns)
        # tiny per-edge products: element-wise, not BLAS (whose threads stall on a busy machine)
        jtj = (jac.unsqueeze(-1) * jac.unsqueeze(-2)).sum(dim=1)  # (E, 4, 4)
        g = (jac * r.unsqueeze(-1)).sum(dim=1)  # (E, 4)
        damp = lam[:, None, None] * (jtj.diagonal(dim1=1, dim2=2).unsqueeze(-1) * eye) + 1e-12 * eye
        step, info = torch.linalg.solve_ex(jtj + damp, -g)
        good_step = (info == 0) & torch.isfinite(step).all(dim=1)
        step = torch.where(good_step[:, None], step, torch.zeros_like(step))
        trial = torch.maximum(torch.minimum(theta + step, high), low)
        trial_sse = _sse(fn, u, y, span, trial)
        better = good_step & (trial_sse < sse)
        theta = torch.where(better[:, None], trial, theta)
        sse = torch.where(better, trial_sse, sse)
        lam = torch.where(better, (lam * 0.3).clamp_min(1e-12), (lam * 10).clamp_max(1e12))
    return theta[:, :2]


def _keep_in_domain(
    fn: SymbolicFunction,
    x: torch.Tensor,
    span: _Span,
    z_checked: torch.Tensor,
    params: torch.Tensor,
    r2: torch.Tensor,
) -> None:
    """Keep ``a x + b`` in ``fn``'s domain (samples and ``span``) after the change of coordinates.

    The fit was checked in normalised coordinates (``z_checked``, (E, n)); mapping ``(a, b)``
    back to ``x`` can move an argument that sat on a domain boundary (``sqrt`` at 0, ``arctanh``
    near 1) across it by round-off. Such an edge gets ``b`` nudged by the round-off gap, towards
    whichever side makes it admissible again; if neither does, the candidate is rejected
    (``r2 = -inf``). ``params`` (E, 4) and ``r2`` (E,) are updated in place.
    """

    def ok(b: torch.Tensor) -> torch.Tensor:
        finite = torch.isfinite(fn(params[:, 0:1] * x + b[:, None])).all(dim=1)
        return finite & _admissible(fn, span, params[:, 0], b, exact=True)

    broken = torch.isfinite(r2) & ~ok(params[:, 1])
    if not bool(broken.any()):
        return
    z = params[:, 0:1] * x + params[:, 1:2]
    gap = (z_checked - z).abs().amax(dim=1)  # round-off sized
    scale = params[:, 1].abs() + params[:, 0].abs() * torch.maximum(span.lo.abs(), span.hi.abs())
    gap = torch.maximum(gap, 4 * torch.finfo(torch.float64).eps * scale)
    for shift in (gap, -gap, 4 * gap, -4 * gap, 16 * gap, -16 * gap):
        b = params[:, 1] + shift
        fixed = broken & ok(b)
        params[:, 1] = torch.where(fixed, b, params[:, 1])
        broken = broken & ~fixed
    r2.masked_fill_(broken, -math.inf)


def _final(
    fn: SymbolicFunction, u: torch.Tensor, y: torch.Tensor, span: _Span | None, ab: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a', b', c, d) (E, 4) and r^2 (E,) on all samples with the exact function.

    ``span`` (normalised coordinates): where the argument must stay in the domain too (``None``:
    an affine function, nothing to check).
    """
    v = fn(ab[:, 0:1] * u + ab[:, 1:2])  # (E, n)
    valid = torch.isfinite(v).all(dim=1)
    if span is not None:
        valid = valid & _admissible(fn, span, ab[:, 0], ab[:, 1], exact=True)
    v = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    c, d = _closed_form(v, y)
    res = c[:, None] * v + d[:, None] - y
    sse = (res * res).sum(dim=1)
    yc = y - y.mean(dim=1, keepdim=True)
    sst = (yc * yc).sum(dim=1)
    scale = y.abs().amax(dim=1).clamp_min(1e-150)
    constant = sst <= (1e-12 * scale) ** 2 * y.shape[1]
    r2 = torch.where(
        constant, (sse <= (1e-9 * scale) ** 2 * y.shape[1]).to(sse), 1 - sse / sst.clamp_min(1e-300)
    )
    r2 = torch.where(valid, r2, torch.full_like(r2, -math.inf))
    return torch.stack([ab[:, 0], ab[:, 1], c, d], dim=-1), r2
