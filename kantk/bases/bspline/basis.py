"""B-spline basis of order k on G intervals, with per-input knot vectors.

Two evaluation paths give the same values:

* uniform knots (the default grid): the closed local form. For an input in interval ``j`` only
  the ``k + 1`` bases ``j - k .. j`` are non-zero, and on that interval they are fixed
  polynomials of the fractional position ``t``; they are evaluated by Horner's rule and
  scattered into the dense (batch, in, n) tensor. :meth:`BSplineBasis.fused_edges` fuses this with
  the coefficient matmul and the layer's base branch; :mod:`kantk.bases.bspline.dispatch` chooses
  how (native CPU kernels, Triton on CUDA, PyTorch dense or sparse), and every path is twice
  differentiable.
* non-uniform knots (after a grid update from data): de Boor's local recursion on the k+1
  non-zero bases (same values as the Cox-de Boor recursion, :func:`cox_de_boor`).

Outside the extended grid every basis is zero: values are finite and the layer's base branch
carries the function on. With ``extrapolate="clamp"`` inputs are first clamped to the grid range,
so each spline holds its boundary value outside it; with ``extrapolate="extend"`` each spline
continues its outermost polynomial pieces over the k outer knot intervals (see docs/grids.md).

:meth:`BSplineBasis.refine` moves to a finer grid by exact knot insertion with the Oslo algorithm
(:func:`insert_knots`): by default the spline is kept for every input.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import torch

from kantk._validation import check_int
from kantk.bases.base import (
    Basis,
    EdgeWeights,
    check_grid_range,
    check_refine_coef,
    check_refine_size,
    edge_values,
    fit_coefficients,
    functorch_active,
    refit_with_buffers,
)
from kantk.bases.bspline import dispatch
from kantk.bases.bspline.knots import (
    _interval_samples,
    data_knots,
    insert_knots,
    local_bspline_features,
    resampled_knots,
    split_counts,
    split_intervals,
)
from kantk.bases.bspline.local import _dense_features, _LocalTables
from kantk.bases.bspline.workspace import Workspace


def _normal_tensors():
    """A context in which cached constants are made as normal tensors even inside
    ``torch.inference_mode`` (an inference tensor kept in a cache would break every later pass
    that records gradients)."""
    if not torch.compiler.is_compiling() and torch.is_inference_mode_enabled():
        return torch.inference_mode(False)
    return contextlib.nullcontext()


#: The highest order accepted. An evaluation costs about order**2 per input and the change of basis
#: order**3 once, with no bound from the model's size: a 10 KB model file of order 800 took 7 s per
#: forward pass. KANs use orders up to a handful (pykan's default is 3).
MAX_ORDER = 30


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


#: Accepted values of ``BSplineBasis(extrapolate=...)``.
EXTRAPOLATIONS = ("zero", "clamp", "extend")


def cache_key(t: torch.Tensor) -> tuple[int, int, int] | None:
    """``(version, data pointer, token)`` of ``t``, which changes when ``t`` is written to or
    replaced; or ``None`` where ``t`` has no version counter or storage (an inference tensor, a
    tensor batched by a ``torch.func`` transform, a fake tensor of ``torch.export``) or while
    ``torch.compile`` traces: nothing is cached then. The token is a number given to each tensor
    object the first time: a new grid tensor at a freed grid's address, at version 0 too, matched
    the old key, and the fast path used the old grid's spacing."""
    if t.is_inference() or torch.compiler.is_compiling():
        return None
    try:
        version, pointer = t._version, t.data_ptr()
    except RuntimeError:
        return None
    token = getattr(t, "_kantk_cache_token", None)
    if token is None:
        token = next(_CACHE_TOKENS)
        t._kantk_cache_token = token  # type: ignore[attr-defined]
    return (version, pointer, token)


_CACHE_TOKENS = itertools.count()


def values_hidden(t: torch.Tensor) -> bool:
    """Whether ``t``'s values cannot be read into Python: batched by a ``torch.func`` transform
    (``vmap`` over stacked buffers) or a fake tensor (``torch.export``)."""
    try:
        if torch._C._functorch.is_functorch_wrapped_tensor(t):
            return True
        from torch._subclasses.fake_tensor import is_fake

        return bool(is_fake(t))
    except (AttributeError, ImportError):  # another torch: treat the values as readable
        return False


class BSplineBasis(Basis):
    """B-splines of order ``order`` on ``grid_size`` intervals, ``order`` extra knots each side.

    Args:
        in_features: Number of inputs, each with its own knot vector.
        grid_size: Number of intervals G inside ``grid_range`` (>= 1).
        order: Polynomial degree k (0 to :data:`MAX_ORDER`; 3 is cubic). Order 0 is piecewise constant: at an
            input that is exactly an interior knot, the uniform-grid paths may place it in the
            interval on either side (round-off of ``x / h``), the de Boor path (after
            ``update_grid``) on the right.
        grid_range: (low, high) of the initial uniform grid.
        extrapolate: What the splines do outside the grid range ``[grid[:, k], grid[:, G + k]]``:
            ``"zero"`` (pykan's; they fade out over the k outer knots and are 0 beyond, leaving the
            base branch), ``"clamp"`` (inputs are clamped to the grid range first, so every
            spline holds its boundary value: continuous, no dead zone for the values) or
            ``"extend"`` (each edge continues its outermost polynomial piece over the k outer
            knot intervals, as scipy's ``BSpline`` extrapolates, and holds the value reached at
            the outermost knot beyond that: inputs just outside the data keep the fitted curve).

    Buffers:
        grid: (in_features, G + 2k + 1) knots, non-decreasing per input.
    """

    grid: torch.Tensor  # the buffer, declared for type checkers (nn.Module.__getattr__ is untyped)

    def __init__(
        self,
        in_features: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
        extrapolate: str = "zero",
    ):
        super().__init__(in_features)
        check_int("bspline grid_size", grid_size, 1)
        check_int("bspline order", order, 0)
        if order > MAX_ORDER:
            raise ValueError(f"bspline order must be an int from 0 to {MAX_ORDER} (MAX_ORDER), got {order!r}")
        grid_range = check_grid_range(grid_range, "bspline")
        if extrapolate not in EXTRAPOLATIONS:
            raise ValueError(
                f"bspline extrapolate must be one of {', '.join(map(repr, EXTRAPOLATIONS))}, got "
                f"{extrapolate!r}"
            )
        self.extrapolate = extrapolate
        self.grid_size = grid_size
        self.order = order
        self.grid_range = grid_range
        self.register_buffer(
            "grid", uniform_knots(in_features, grid_size, order, grid_range).to(torch.get_default_dtype())
        )
        # constants of the fast path per (dtype, device); plain attributes, not state
        self.workspace = Workspace()  # reusable CPU buffers of the fused paths
        self._tables: dict[tuple[torch.dtype, torch.device, bool], _LocalTables] = {}
        self._params_cache: dict[torch.dtype, tuple[Any, Any]] = {}
        self._knot_cache: dict[torch.dtype, tuple[Any, Any]] = {}
        self._uniform_cache: tuple[int, int, int, bool] | None = None

    #: ``"auto"``: the sparse gather path for many functions per input (see
    #: :mod:`kantk.bases.bspline.dispatch`), ``True``/``False`` to force it on or off (set on an
    #: instance: ``layer.basis.sparse = False``).
    sparse: bool | str = "auto"
    #: ``"auto"``, or a :class:`~kantk.bases.bspline.dispatch.Path` value to force one evaluation
    #: path on this instance (e.g. ``"torch_dense"``; tests and benchmarks).
    path: str = "auto"

    @property
    def num_functions(self) -> int:
        return self.grid_size + self.order

    def config(self) -> dict[str, Any]:
        return {
            "grid_size": self.grid_size,
            "order": self.order,
            "grid_range": list(self.grid_range),
            "extrapolate": self.extrapolate,
        }

    def range_ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Each input's grid range ``[grid[:, k], grid[:, G + k]]`` as two (in,) tensors of ``dtype``
        (:class:`~kantk.bases.SupportsInputRange`)."""
        k = self.order
        return self.grid[:, k].to(dtype), self.grid[:, self.grid_size + k].to(dtype)

    def is_uniform(self) -> bool:
        """Whether every input's knots are equally spaced (then the fast local form is used)."""
        if self.grid.device.type == "meta":  # shape-only tracing: no values to inspect
            return True
        key = cache_key(self.grid)
        if key is not None and self._uniform_cache is not None and self._uniform_cache[:3] == key:
            return self._uniform_cache[3]
        if key is None and values_hidden(self.grid):  # batched by torch.func, traced by torch.export:
            return False  # its values cannot steer Python; the general path is right for any grid
        grid = self.grid.to(torch.float64)
        h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)  # (in, 1) mean spacing
        # equal spacing up to the rounding of the stored knots (float32 grids of fine G), in
        # float32 at least: a float32 layer converted with .double() keeps float32-rounded
        # knots, and its uniform grid should keep the fast path (the G=50 [2,5,1] step took
        # 6.6x longer on the general one); the fast path then evaluates the uniform grid
        # those knots round, within ~1e-7 of them
        # (float32 rounding only for knots that are float32 numbers: a float64 grid far from 0
        # with a fine spacing would otherwise pass with knots 20% of h out of place)
        eps = torch.finfo(self.grid.dtype).eps
        if bool((grid.to(torch.float32).to(torch.float64) == grid).all()):
            eps = max(eps, torch.finfo(torch.float32).eps)
        tol = 1e-6 * h + 4 * eps * grid.abs().amax(dim=-1, keepdim=True)
        uniform = bool(((grid.diff(dim=-1) - h).abs() <= tol).all() and (h > 0).all())
        if key is not None:  # an inference tensor has no version counter to cache by
            self._uniform_cache = (*key, uniform)
        return uniform

    def _uniform_params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, _LocalTables]:
        """(shift, inv_h, tables) of the fast path; cached until the grid changes."""
        key = (dtype, self.grid.device, cache_key(self.grid), self.extrapolate)
        cached = self._params_cache.get(dtype)
        if cached is None or cached[0] != key or key[2] is None or torch.compiler.is_compiling():
            with _normal_tensors():
                grid = self.grid.to(torch.float64)
                inv_h = (grid.shape[1] - 1) / (
                    grid[:, -1] - grid[:, 0]
                )  # from the span: exact for fine grids
                shift = 1.0 - grid[:, 0] * inv_h  # (in,)
                # "extend": rows clamped into the interior, so the outermost pieces continue;
                # "clamp": the inputs are inside the grid range already, but x * inv_h + shift can
                # round the top end onto the last knot, into the half-open interval past it (where
                # an order-0 spline is 0): clamping the row keeps it in the last interval
                extend = self.extrapolate != "zero"
                tkey = (dtype, self.grid.device, extend)
                if tkey not in self._tables:
                    self._tables[tkey] = _LocalTables(
                        self.order, self.num_functions, dtype, self.grid.device, extend
                    )
                cached = (key, (shift.to(dtype), inv_h.to(dtype), self._tables[tkey]))
            self._params_cache[dtype] = cached
        return cached[1]

    def _first_knot_and_inverse_spacing(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(first knot, 1 / spacing), (in,) each, of a uniform grid: the GPU kernels' constants;
        cached until the grid changes."""
        key = (dtype, self.grid.device, cache_key(self.grid))
        cached = self._knot_cache.get(dtype)
        if cached is None or cached[0] != key or key[2] is None:
            with _normal_tensors():
                grid = self.grid.to(torch.float64)
                inv_h = (grid.shape[1] - 1) / (grid[:, -1] - grid[:, 0])
                cached = (key, (grid[:, 0].to(dtype), inv_h.to(dtype)))
            self._knot_cache[dtype] = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._extrapolation_input(x)
        if not self.is_uniform():
            # de Boor's local recursion: same values as Cox-de Boor, O(k^2) per input instead of
            # O(k (G+k)); 1.2x faster at G=5, 12x at G=100 (differentiable, twice too)
            return local_bspline_features(x, self.grid, self.order, extend=self.extrapolate == "extend")
        shift, inv_h, tables = self._uniform_params(x.dtype)
        return _dense_features(x, shift, inv_h, tables)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, coef: torch.Tensor, grid_eps: float = 0.02) -> torch.Tensor:
        """Move every input's knots to the samples ``x`` (batch, in); returns refitted coef (out, in, n).

        The new coefficients reproduce the old spline on ``x`` by least squares (float64).
        """
        target = edge_values(self(x), coef)  # (batch, out, in)
        knots = data_knots(x, self.grid_size, self.order, grid_eps, dtype=self.grid.dtype).to(self.grid.dtype)
        if not bool(torch.isfinite(knots).all()):  # float32 samples near its largest value, 3e38
            big = float(x.abs().max())
            raise ValueError(
                f"update_grid: samples as large as {big:.3g} put the knots beyond the largest "
                f"{self.grid.dtype} number; scale the inputs, or use float64"
            )
        return refit_with_buffers(self, x, target, grid=knots)

    def fused_edges(self, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
        """The layer's edge sum (batch, out) of ``x`` (batch, in), by the path
        :func:`kantk.bases.bspline.dispatch.choose` picks (:class:`~kantk.bases.SupportsFusedEdges`)."""
        return dispatch.fused_edges(self, x, weights)

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``sum_{p,i} weight[q,p,i] B_i(x_p)`` (batch, out), by the fused paths (unit scale, no base)."""
        ones = weight.new_ones(weight.shape[:2])
        return self.fused_edges(x, EdgeWeights(weight, ones))

    def _extrapolation_input(self, x: torch.Tensor) -> torch.Tensor:
        """The inputs the evaluation paths see: clamped for ``"clamp"``, and for ``"extend"``
        clamped to the outermost knots (beyond them the value holds and the input gradient is 0)."""
        if self.extrapolate == "clamp":
            return self.clamp_to_grid(x)
        if self.extrapolate == "extend":
            return torch.clamp(x, self.grid[:, 0].to(x.dtype), self.grid[:, -1].to(x.dtype))
        return x

    def clamp_to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp inputs to the grid range ``[grid[:, k], grid[:, G + k]]`` (``extrapolate="clamp"``).

        The upper end moves one ulp inwards: the last interval is half-open, and for order 0 the
        end itself would fall outside every basis. The gradient there is still the one-sided one
        from inside, as at the lower end (clamping to the inner value gave 0 at exactly the upper
        end: a PINN's Neumann condition on it saw a flat spline).

        Args:
            x: (batch, in).

        Returns:
            (batch, in), differentiable (gradient 0 beyond the ends, 1 on them).
        """
        lo, hi = self.range_ends(x.dtype)  # (in,)
        top = torch.nextafter(hi, lo)
        if functorch_active() or lo.requires_grad or hi.requires_grad or _has_tangent(x):
            # torch.func and forward-mode AD have no rule for _ClampInside; nor do trainable knots
            clamped = torch.clamp(x, lo, hi)  # gradient 1 on [lo, hi], ends included
            return torch.where(clamped >= hi, clamped - (hi - top), clamped)
        if not x.requires_grad or not torch.is_grad_enabled():
            return torch.clamp(x, lo, top)  # no gradient to mind: one op
        return _ClampInside.apply(x, lo, top, hi)

    @torch.no_grad()
    def refine(
        self, size: int, coef: torch.Tensor, *, uniform: bool | None = None
    ) -> tuple[BSplineBasis, torch.Tensor]:
        """A copy on ``size`` intervals, with coefficients that keep every edge's spline.

        Two ways, chosen by ``uniform``:

        * ``uniform=False``: every old knot stays, outer ones included, and each interval of the
          grid range is split into equal parts (``size // grid_size`` each when ``size`` is a
          multiple, else as evenly as possible, see :func:`split_counts`). The coefficients
          follow by exact knot insertion (:func:`insert_knots`, the Oslo algorithm, float64), so
          the spline is kept to round-off everywhere, for any ``size``. Unless the old grid was
          uniform and ``size`` a multiple, the new knots are not uniform (the Cox-de Boor path).
        * ``uniform=True``: the new grid is uniform over the grid range, with its ``order`` outer
          knots each side at the new spacing, so the fast path stays. When the old grid is
          uniform and ``size`` a multiple of ``grid_size``, the spline is kept exactly on the grid
          range (knot insertion); otherwise the coefficients are a float64 least-squares fit on
          dense samples of the grid range. Outside the grid range the spline fades out within k
          new intervals instead of k old ones, so it changes there.

        The default, ``None``, keeps the spline to round-off everywhere, whatever the inputs (a
        model trained on inputs beyond the grid range uses the outer intervals): it takes the
        uniform grid when that is exact for every input (the old grid uniform, ``size`` a multiple
        of ``grid_size``, and the nested uniform spline equal to this one on every interval of both
        knot vectors and beyond them, in this basis' ``extrapolate`` mode: e.g. ``"clamp"``, or
        splines that vanish on the outer intervals), else ``uniform=False``. Grids with repeated
        knots (no knot insertion) are refitted by least squares on their whole span.

        Args:
            size: The new ``grid_size``; an int >= the current one.
            coef: (out, in, grid_size + order) coefficients on this basis.
            uniform: Make the new grid uniform (``True``), keep every old knot (``False``), or
                whichever keeps the spline everywhere, uniform when possible (``None``).

        Returns:
            The finer basis (same order, ``extrapolate``, dtype and device) and its coefficients
            (out, in, size + order) in ``coef``'s dtype.

        Raises:
            ValueError: ``size`` is not an int >= ``grid_size``, or ``coef`` has the wrong shape.
        """
        size = check_refine_size(size, self.grid_size, "grid_size", "bspline")
        check_refine_coef(self, coef)
        k, grid_size = self.order, self.grid_size
        was_uniform = self.is_uniform()
        if size == grid_size and (was_uniform or not uniform):  # an equal copy (the contract)
            return self._finer(size, self.grid.clone(), coef.detach().clone(), coef.dtype)
        old = self.grid.to(torch.float64)  # (in, G + 2k + 1)
        if was_uniform:
            # the fast path evaluates the grid equally spaced over the knots' span; a float32 grid
            # converted with .double() keeps float32-rounded knots, 1e-8 off it, and inserting
            # knots into those moved the function by 2e-9 and lost the uniform grid. Knots within
            # float64 round-off of it stay as they are (every earlier refine, and discover's
            # results, unchanged to the bit).
            steps = torch.arange(old.shape[1], dtype=torch.float64, device=old.device) / (old.shape[1] - 1)
            evaluated = old[:, :1] + (old[:, -1:] - old[:, :1]) * steps
            scale = float(old.abs().max().clamp_min(1.0))
            if float((evaluated - old).abs().max()) > 1e3 * torch.finfo(torch.float64).eps * scale:
                old = evaluated
        c64 = coef.to(torch.float64)
        increasing = bool((old.diff(dim=-1) > 0).all())  # knot insertion needs distinct knots
        nested = was_uniform and increasing and size % grid_size == 0
        if uniform is None:
            if nested:  # uniform (the fast path) only where that keeps the spline everywhere
                knots, new_coef = self._nested_uniform(old, c64, size)
                if self._same_everywhere(old, c64, knots, new_coef):
                    return self._finer(size, knots, new_coef, coef.dtype)
            uniform = False  # else exact: every old knot kept (or least squares on repeated knots)
        if not uniform and increasing:
            knots = split_intervals(old, k, split_counts(grid_size, size))
            new_coef = insert_knots(old, c64, knots, k)
        elif uniform and nested:
            knots, new_coef = self._nested_uniform(old, c64, size)
        else:
            if uniform:
                lo, hi = old[:, k], old[:, grid_size + k]  # (in,)
                steps = torch.arange(-k, size + k + 1, dtype=torch.float64, device=old.device) / size
                knots = lo.unsqueeze(-1) + (hi - lo).unsqueeze(-1) * steps  # (in, size + 2k + 1)
                first, old_last, last = k, grid_size + k, size + k  # fit on the grid range
            else:  # repeated knots: follow their spacing, keep the outer ones, fit everywhere
                knots = resampled_knots(old, k, size)
                first, old_last, last = 0, old.shape[1] - 1, knots.shape[1] - 1
            x = torch.cat([_interval_samples(old, first, old_last), _interval_samples(knots, first, last)])
            target = edge_values(local_bspline_features(x, old, k), c64)  # (samples, out, in)
            new_coef = fit_coefficients(local_bspline_features(x, knots, k), target)
        return self._finer(size, knots, new_coef, coef.dtype)

    def _nested_uniform(
        self, old: torch.Tensor, c64: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The uniform grid of ``size`` (a multiple of G) intervals on the grid range, and the
        coefficients by knot insertion: exact on the grid range (float64)."""
        k = self.order
        ratio = size // self.grid_size
        split = split_intervals(old, k, [ratio] * self.grid_size, outer=ratio)  # every interval split
        start = k * (ratio - 1)  # keep the k outer knots nearest to the grid range each side
        knots = split[:, start : start + size + 2 * k + 1]
        return knots, insert_knots(old, c64, knots, k)

    def _same_everywhere(
        self, old: torch.Tensor, c64: torch.Tensor, knots: torch.Tensor, new_coef: torch.Tensor
    ) -> bool:
        """Whether the spline on ``knots`` equals this one for every input (to round-off of this
        grid's dtype), with this basis' extrapolation: sampled inside every interval of both knot
        vectors and beyond them."""
        k = self.order
        union = torch.sort(torch.cat([old, knots], dim=-1), dim=-1).values  # (in, M)
        span = (union[:, -1] - union[:, 0]).unsqueeze(-1)  # (in, 1)
        outside = torch.cat([union[:, :1] - span * 0.5, union[:, -1:] + span * 0.5], dim=-1).t()
        x = torch.cat([_interval_samples(union, 0, union.shape[1] - 1), outside])  # (samples, in)
        mode = self.extrapolate
        before = edge_values(_spline_features(x, old, k, mode), c64)  # (samples, out, in)
        after = edge_values(_spline_features(x, knots.to(self.grid).to(torch.float64), k, mode), new_coef)
        scale = float(before.abs().max()) if before.numel() else 0.0
        tol = max(1e-9, 4 * torch.finfo(self.grid.dtype).eps) * scale
        return float((after - before).abs().max()) <= tol if before.numel() else True

    def _finer(
        self, size: int, knots: torch.Tensor, new_coef: torch.Tensor, dtype: torch.dtype
    ) -> tuple[BSplineBasis, torch.Tensor]:
        """The basis on ``knots`` (same order, ``extrapolate``, path choices), ``new_coef`` in ``dtype``."""
        finer = BSplineBasis(
            self.in_features,
            grid_size=size,
            order=self.order,
            grid_range=self.grid_range,
            extrapolate=self.extrapolate,
        )
        finer.grid = knots.to(self.grid)  # same dtype and device as this grid
        for name in ("sparse", "path"):  # an evaluation-path choice set on this instance
            if name in vars(self):
                setattr(finer, name, getattr(self, name))
        return finer, new_coef.to(dtype)


def _has_tangent(x: torch.Tensor) -> bool:
    """Whether ``x`` carries a forward-mode tangent (``torch.autograd.forward_ad``)."""
    from torch.autograd import forward_ad

    return forward_ad.unpack_dual(x).tangent is not None


class _ClampInside(torch.autograd.Function):
    """``clamp(x, lo, top)`` (``top`` one ulp inside ``hi``) with the gradient of
    ``clamp(x, lo, hi)``: 1 on ``[lo, hi]``, both ends included, 0 beyond (one op forward, as the
    plain clamp; the where-form took 2.7x its time). Twice differentiable: the second derivative
    is 0."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, lo: torch.Tensor, top: torch.Tensor, hi: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(x, lo, hi)
        return torch.clamp(x, lo, top)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        x, lo, hi = ctx.saved_tensors
        return grad * ((x >= lo) & (x <= hi)).to(grad.dtype), None, None, None


def _spline_features(x: torch.Tensor, knots: torch.Tensor, order: int, extrapolate: str) -> torch.Tensor:
    """B-spline values (float64 reference) with a basis' ``extrapolate`` mode, on any knots."""
    if extrapolate == "clamp":
        lo, hi = knots[:, order], knots[:, knots.shape[1] - order - 1]
        x = torch.clamp(x, lo, torch.nextafter(hi, lo))
    elif extrapolate == "extend":
        x = torch.clamp(x, knots[:, 0], knots[:, -1])
    return local_bspline_features(x, knots, order, extend=extrapolate == "extend")
