"""The interface every basis family implements."""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kantk._validation import check_int, is_int
from kantk.plugins import PluginOutputError

#: The layer's residual base functions b(x) by name (``KANLayer(base_activation=...)``).
BASE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "silu": F.silu,
    "identity": lambda x: x,
    "zero": None,
}


class Basis(nn.Module, abc.ABC):
    """A family of ``num_functions`` 1-D functions evaluated on each of ``in_features`` inputs.

    Subclasses keep grid state (knots, centres, normalisation) in buffers so it moves with
    ``.to(device)`` and is saved in the state dict, and they must be constructible as
    ``cls(in_features, **config())`` so a saved model can be rebuilt from its JSON config.

    Args:
        in_features: Number of inputs; each may have its own grid.
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)

    @property
    @abc.abstractmethod
    def num_functions(self) -> int:
        """Number of basis functions per input (the ``n`` of ``forward``'s output)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate every basis function on every input.

        Args:
            x: (batch, in_features).

        Returns:
            (batch, in_features, num_functions); finite for every finite input.
        """

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments (everything but ``in_features``)."""

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Contract the basis with per-edge coefficients: ``sum_{p,i} w[q,p,i] B_i(x_p)``.

        The default evaluates :meth:`forward` once and does one matmul; a basis with a faster or
        leaner form overrides it (or implements :class:`SupportsFusedEdges` to take the layer's
        whole edge computation).

        Args:
            x: (batch, in_features).
            weight: (out_features, in_features, num_functions).

        Returns:
            (batch, out_features).
        """
        feats = checked_features(self, x, self(x))  # (batch, in, n)
        # (batch, in*n) @ (in*n, out) -> (batch, out)
        return feats.flatten(1) @ weight.flatten(1).t()

    def extra_repr(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"in_features={self.in_features}, {cfg}"


class BasisOutputError(PluginOutputError):
    """A basis returned something other than a tensor of its input's dtype and device (a plugin's
    slip, named by the basis; the command line reports it as such, not as an internal error)."""


def checked_features(basis: Basis, x: torch.Tensor, feats: Any) -> torch.Tensor:
    """``feats``, what ``basis(x)`` returned, if it is a (batch, in_features, num_functions) tensor
    of ``x``'s dtype and device; else a one-line error naming the basis (a plugin's slip, such as a
    forward that computes in float64 whatever the input, would otherwise fail deep in a matmul).

    Raises:
        BasisOutputError: A ``TypeError``: ``feats`` is not a tensor, or has another dtype or
            device than ``x``.
        ValueError: ``feats`` has another shape.
    """
    name = type(basis).__name__
    if not isinstance(feats, torch.Tensor):
        raise BasisOutputError(f"{name}.forward must return a torch.Tensor, got {type(feats).__name__}")
    want = (x.shape[0], basis.in_features, basis.num_functions)
    if tuple(feats.shape) != want:
        raise ValueError(
            f"{name}.forward returned shape {tuple(feats.shape)} for input {tuple(x.shape)}; a basis "
            f"returns (batch, in_features, num_functions) = {want}"
        )
    autocast = torch.is_autocast_enabled(x.device.type) if x.device.type in ("cpu", "cuda") else False
    if (feats.dtype != x.dtype and not autocast) or feats.device != x.device:
        raise BasisOutputError(
            f"{name}.forward returned {feats.dtype} on {feats.device} for a {x.dtype} input on {x.device}; "
            "a basis returns the input's dtype and device (compute in x.dtype, build tensors with "
            "device=x.device)"
        )
    return feats


@dataclass(frozen=True)
class EdgeWeights:
    """The weights of a layer's edges, as :class:`~kantk.KANLayer` hands them to its basis.

    The layer computes ``y_q = sum_p w_s[q,p] sum_i coef[q,p,i] B_i(x_p) + w_b[q,p] b(x_p)``;
    ``scale`` and ``base_weight`` already include the layer's mask (pruned and symbolic edges 0).

    Attributes:
        coef: (out, in, n) basis coefficients c.
        scale: (out, in) per-edge factor of the basis part, ``w_s * mask``.
        base_weight: (out, in) ``w_b * mask``, or None when the layer has no base branch.
        base_activation: Name of b in :data:`BASE_ACTIVATIONS` (``"silu"``, ``"identity"``, ``"zero"``).
    """

    coef: torch.Tensor
    scale: torch.Tensor
    base_weight: torch.Tensor | None = None
    base_activation: str = "zero"

    @property
    def has_base(self) -> bool:
        """Whether the layer has a base branch (a weight and an activation other than ``zero``)."""
        return self.base_weight is not None and BASE_ACTIVATIONS[self.base_activation] is not None

    def spline_weight(self) -> torch.Tensor:
        """``coef * scale[..., None]``, (out, in, n)."""
        return self.coef * self.scale.unsqueeze(-1)

    def base(self, x: torch.Tensor) -> torch.Tensor | None:
        """``b(x)`` (batch, in), or None without a base branch."""
        act = BASE_ACTIVATIONS[self.base_activation]
        return act(x) if act is not None and self.has_base else None

    def basis_major(self) -> torch.Tensor:
        """The weights in the layout of fused kernels: see :func:`basis_major_weights`."""
        return basis_major_weights(self.coef, self.scale, self.base_weight if self.has_base else None)

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        """The tensors the record is made from (for device and dtype checks)."""
        return (self.coef, self.scale, self.base_weight)


class MaskedEdgeWeights(EdgeWeights):
    """The :class:`EdgeWeights` record a :class:`~kantk.KANLayer` hands its basis
    (``MaskedEdgeWeights.of(coef, w_s, w_b, mask, activation)``): ``scale`` and ``base_weight``
    are the products ``w_s * mask`` and ``w_b * mask``, made when first read. Kernels that apply
    the mask themselves read :attr:`factors` instead, so a training step on them makes neither
    product nor its backward (two element-wise ops, two autograd nodes).

    Built with ``EdgeWeights``' own arguments (what ``dataclasses.replace`` does) it is a plain
    record of those tensors, ``factors`` None.

    Attributes:
        factors: ``(w_s, w_b, mask)``, each (out, in), ``w_b`` None without a base branch; or None.
    """

    factors: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None

    def __init__(
        self,
        coef: torch.Tensor,
        scale: torch.Tensor | None = None,
        base_weight: torch.Tensor | None = None,
        base_activation: str = "zero",
        *,
        factors: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None,
    ) -> None:
        if (factors is None) == (scale is None):
            raise TypeError("MaskedEdgeWeights takes either scale (and base_weight) or factors")
        set_ = object.__setattr__
        set_(self, "coef", coef)
        set_(self, "base_activation", base_activation)
        set_(self, "factors", factors)
        set_(self, "_given", (scale, base_weight))
        set_(self, "_products", {})

    @classmethod
    def of(
        cls,
        coef: torch.Tensor,
        scale_sp: torch.Tensor,
        scale_base: torch.Tensor | None,
        mask: torch.Tensor,
        base_activation: str = "zero",
    ) -> MaskedEdgeWeights:
        return cls(coef, base_activation=base_activation, factors=(scale_sp, scale_base, mask))

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _product(self, i: int) -> torch.Tensor | None:
        if self.factors is None:
            return self._given[i]  # type: ignore[attr-defined]
        # kept per grad mode: a product first read under no_grad must not serve a later backward
        key = (i, torch.is_grad_enabled())
        made = self._products  # type: ignore[attr-defined]
        if key not in made:
            factor = self.factors[i]
            made[key] = None if factor is None else factor * self.factors[2]
        return made[key]

    @property
    def scale(self) -> torch.Tensor:
        return self._product(0)  # type: ignore[return-value]

    @property
    def base_weight(self) -> torch.Tensor | None:
        return self._product(1)

    @property
    def has_base(self) -> bool:
        weight = self._given[1] if self.factors is None else self.factors[1]  # type: ignore[attr-defined]
        return weight is not None and BASE_ACTIVATIONS[self.base_activation] is not None

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.coef, *(self._given if self.factors is None else self.factors))  # type: ignore[attr-defined]


def basis_major_weights(
    coef: torch.Tensor, scale: torch.Tensor, base_weight: torch.Tensor | None
) -> torch.Tensor:
    """``[coef * scale | base_weight]`` laid out (in, n [+1], out), the base weight last when given.

    Differentiable; a permuted view of one new tensor (not contiguous).
    """
    parts = [coef * scale.unsqueeze(-1)]  # (out, in, n)
    if base_weight is not None:
        parts.append(base_weight.unsqueeze(-1))
    return torch.cat(parts, dim=-1).permute(1, 2, 0)


@runtime_checkable
class SupportsFusedEdges(Protocol):
    """A basis that computes a layer's whole edge sum itself (optional; for fused kernels).

    ``fused_edges(x, weights)`` returns ``sum_p w_s c . B(x_p) + w_b b(x_p)`` (batch, out) for ``x``
    (batch, in) and an :class:`EdgeWeights` record, with the same values and gradients as
    :func:`edge_sum` would give through :meth:`Basis.linear`. The built-in bases implement it to
    run the basis evaluation, the matmul and the base branch in one kernel; a basis without it
    gets :func:`edge_sum`.
    """

    def fused_edges(self, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor: ...


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jacrev, hessian, ...) is running, or
    forward-mode AD (``torch.autograd.forward_ad.dual_level``, dual tensors): fused kernels
    (custom autograd functions over raw buffers, with no ``jvp``) cannot run under one."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if active is not None and active():
        return True
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


def edge_sum(basis: Basis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """A layer's edge sum by :meth:`Basis.linear` and one more matmul for the base branch.

    Args:
        x: (batch, in). weights: the layer's :class:`EdgeWeights`.

    Returns:
        (batch, out).
    """
    y = basis.linear(x, weights.spline_weight())
    base = weights.base(x)
    if base is not None and weights.base_weight is not None:  # base(x) is None without a weight
        y = torch.addmm(y, base, weights.base_weight.t())  # (batch, in) @ (in, out)
    return y


def layer_edges(basis: Basis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """What :class:`~kantk.KANLayer` calls: the basis' fused form when it has one, else :func:`edge_sum`."""
    # what isinstance(basis, SupportsFusedEdges) tests, without a runtime protocol check (~10 us a
    # call, paid by every layer of every step; small GPU layers are bound by such host time)
    fused = getattr(basis, "fused_edges", None)
    if fused is not None:
        return _checked_edges(basis, x, weights, fused(x, weights))
    return edge_sum(basis, x, weights)


def _checked_edges(basis: Basis, x: torch.Tensor, weights: EdgeWeights, y: Any) -> torch.Tensor:
    """``y``, what ``basis.fused_edges`` returned, if it is (batch, out) in ``x``'s dtype (or an
    autocast one) and device; else a one-line error naming the basis. An (out, batch) result was
    reshaped silently into wrong outputs, and a float64 one blamed on the next layer's input."""
    want = (x.shape[0], weights.coef.shape[0])
    if not isinstance(y, torch.Tensor) or y.shape != want:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(
            f"{type(basis).__name__}.fused_edges returned {got} for input {tuple(x.shape)}; it returns "
            f"(batch, out) = {want}"
        )
    if y.device != x.device or (
        y.dtype != x.dtype
        and not (x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type))
    ):
        raise BasisOutputError(
            f"{type(basis).__name__}.fused_edges returned {y.dtype} on {y.device} for a {x.dtype} input on "
            f"{x.device}; it returns the input's dtype and device"
        )
    return y


@runtime_checkable
class SupportsGridUpdate(Protocol):
    """A basis that can move its grid to follow a sample of its inputs.

    ``update_grid(x, coef, grid_eps=0.02)`` moves the grid (buffers) to the data ``x``
    (batch, in) and returns new coefficients (out, in, n) that keep ``sum_i coef[q,p,i] B_i(x_p)``
    on the data; it must not change anything when it raises.
    """

    def update_grid(self, x: torch.Tensor, coef: torch.Tensor, grid_eps: float = 0.02) -> torch.Tensor: ...


@runtime_checkable
class SupportsRefine(Protocol):
    """A basis that can produce a finer copy of itself (more intervals, centres or a higher degree).

    ``refine(size, coef)`` returns ``(finer, new_coef)``: a new basis whose resolution is ``size``
    (``grid_size`` for B-splines, ``degree`` for Chebyshev polynomials, ``num_centers`` for RBFs; a
    plugin documents its own), with the same dtype, device and options, and coefficients
    (out, in, finer.num_functions) with which it reproduces ``sum_i coef[q,p,i] B_i(x_p)``: exactly
    where the finer space contains the old one, otherwise by least squares over the grid range.
    ``coef`` is (out, in, num_functions). ``size`` equal to the current resolution gives an equal
    copy; a smaller or non-int one raises ``ValueError`` (use :func:`check_refine_size`). The basis
    itself is left unchanged. Bases may accept extra keyword options (B-splines: ``uniform``).
    """

    def refine(self, size: int, coef: torch.Tensor) -> tuple[Basis, torch.Tensor]: ...


@runtime_checkable
class SupportsInputRange(Protocol):
    """A basis that says which inputs it resolves: its grid's ends, its centres' span.

    ``range_ends(dtype)`` returns ``(lo, hi)``, two (in,) tensors of ``dtype`` with ``lo < hi``,
    finite, that follow the grid (after ``update_grid``, the data's range). ``symbolic_formula``
    without samples checks its rounded formula there; a basis without it is checked on [-1, 1].
    """

    def range_ends(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]: ...


def stated_input_range(basis: object, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(lo, hi), (n,) float64 CPU tensors each: the input range ``basis`` states through
    :class:`SupportsInputRange`, or None for a basis that does not state one.

    Raises ``ValueError`` (one line) when its ``range_ends`` raises or returns anything but two
    finite (n,) tensors with lo < hi (a plugin's method may do anything).
    """
    if not isinstance(basis, SupportsInputRange):
        return None
    lo = hi = torch.zeros(0)
    try:
        with torch.no_grad():
            lo, hi = (v.detach().to("cpu", torch.float64) for v in basis.range_ends(torch.float64))
    except Exception:  # noqa: BLE001 - a plugin's method may raise anything: refused below, in one line
        pass
    if not (
        isinstance(lo, torch.Tensor)
        and isinstance(hi, torch.Tensor)
        and lo.shape == hi.shape == (n,)
        and bool((torch.isfinite(lo) & torch.isfinite(hi) & (lo < hi)).all())
    ):
        raise ValueError(
            f"{type(basis).__name__}.range_ends(dtype) must return two ({n},) tensors lo < hi, finite "
            "(kantk.bases.SupportsInputRange)"
        )
    return lo, hi


def edge_values(feats: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Per-edge spline values ``sum_i coef[q,p,i] feats[b,p,i]``.

    Args:
        feats: (batch, in, n). coef: (out, in, n).

    Returns:
        (batch, out, in).
    """
    return torch.einsum("bpi,qpi->bqp", feats, coef)


def fit_coefficients(feats: torch.Tensor, target: torch.Tensor, ridge: float = 1e-10) -> torch.Tensor:
    """Least-squares coefficients with ``sum_i c[q,p,i] feats[b,p,i] ~= target[b,q,p]``.

    Solved per input in float64 by a ridge-regularised normal equation, so duplicated or constant
    samples and fewer samples than coefficients still give a finite, minimum-norm-like answer
    (no "lstsq failed" at run time).

    Args:
        feats: (batch, in, n) basis values on the samples.
        target: (batch, out, in) edge values to reproduce.
        ridge: Relative ridge weight (times the mean diagonal of the normal matrix).

    Returns:
        (out, in, n) in ``target``'s dtype.
    """
    a = feats.to(torch.float64).permute(1, 0, 2)  # (in, batch, n)
    y = target.to(torch.float64).permute(2, 0, 1)  # (in, batch, out)
    gram = a.transpose(1, 2) @ a  # (in, n, n)
    rhs = a.transpose(1, 2) @ y  # (in, n, out)
    n = gram.shape[-1]
    scale = gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-300)  # (in,)
    eye = torch.eye(n, dtype=torch.float64, device=gram.device)
    lam = (ridge * scale).view(-1, 1, 1)
    for _ in range(6):  # grow the ridge until the factorisation succeeds
        chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
        if int(info.abs().max()) == 0:
            break
        lam = lam * 1e3
    else:  # pathological input: fall back to the pseudo-inverse
        coef = torch.linalg.pinv(gram) @ rhs
        return coef.permute(2, 0, 1).to(target.dtype)
    coef = torch.cholesky_solve(rhs, chol)  # (in, n, out)
    return coef.permute(2, 0, 1).to(target.dtype)  # (out, in, n)


def column_quantiles(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``torch.quantile(x, levels, dim=0)`` (linear interpolation), (len(levels), in), for any
    number of samples: ``torch.quantile`` refuses more than 2**24 elements, and ``update_grid`` on a
    million samples of 16 inputs failed with "quantile() input tensor is too large".

    Args:
        x: (batch, in), batch >= 1. levels: (L,) in [0, 1], ``x``'s dtype.
    """
    ordered = torch.sort(x, dim=0).values  # (batch, in)
    pos = levels * (x.shape[0] - 1)  # (L,)
    low = pos.floor().long().clamp(0, x.shape[0] - 1)
    high = (low + 1).clamp(max=x.shape[0] - 1)
    frac = (pos - low.to(pos.dtype)).unsqueeze(-1)  # (L, 1)
    return torch.lerp(ordered[low], ordered[high], frac)


def distinct_quantiles(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """:func:`column_quantiles` with each value counted at most one interval's share of the samples
    so counted, (len(levels), in): where the grids of ``update_grid`` adapt to the samples. A
    value repeated by most samples (data that is 90 % zeros) put most knots or centres on it and
    left the rest of the range to a few: an RBF edge was refitted 4.1 % off on such data, 0.085 %
    with the cap (``tests/unit/test_grid_update.py``). Columns where no value passes one
    interval's share of all samples (continuous data, data rounded to a few decimals) get exactly
    the quantiles of all samples.

    Args:
        x: (batch, in), batch >= 1. levels: (L,) in [0, 1], ``x``'s dtype.
    """
    ordered = torch.sort(x, dim=0).values
    intervals = max(levels.shape[0] - 1, 1)
    cap = max(1, math.ceil(x.shape[0] / intervals))
    if x.shape[0] <= cap or not bool((ordered[cap:] == ordered[:-cap]).any()):  # no run longer than cap
        return column_quantiles(ordered, levels)
    columns = []
    for i in range(x.shape[1]):
        values, counts = torch.unique_consecutive(ordered[:, i], return_counts=True)
        column = ordered[:, i]
        if int(counts.max()) > cap:
            limit = cap  # one interval's share of the capped samples: shrink to the fixed point
            while (smaller := max(1, math.ceil(int(counts.clamp(max=limit).sum()) / intervals))) < limit:
                limit = smaller
            column = values.repeat_interleave(counts.clamp(max=limit))
        columns.append(column_quantiles(column.unsqueeze(1), levels))
    return torch.cat(columns, dim=1)


def data_range(x: torch.Tensor, min_width: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-input (low, high) of the samples, widened so ``high - low >= min_width * max(1, |mid|)``.

    Args:
        x: (batch, in).

    Returns:
        low, high: (in,) each.
    """
    lo = x.min(dim=0).values
    hi = x.max(dim=0).values
    if not bool(torch.isfinite(hi - lo).all()):  # +-1e308: the fits failed in an SVD of inf
        raise ValueError(
            f"update_grid: samples from {float(lo.min()):.3g} to {float(hi.max()):.3g} span no finite "
            "range; scale the inputs"
        )
    mid = (lo + hi) / 2
    half = ((hi - lo) / 2).clamp_min(min_width / 2 * mid.abs().clamp_min(1.0))
    return mid - half, mid + half


def check_refine_size(size: Any, current: int, what: str, who: str) -> int:
    """Validate the target resolution of ``refine``: an int >= the current one.

    Args:
        size: The requested resolution.
        current: The basis' current resolution.
        what: Its name, as users pass it (``"grid_size"``, ``"degree"``, ...).
        who: The basis' registry name, for the message.

    Returns:
        ``size``.

    Raises:
        ValueError: Not an int, or smaller than ``current`` (the message says what is accepted).
    """
    if not is_int(size):
        raise ValueError(f"{who} refine needs an int {what} >= {current} (the current one), got {size!r}")
    if size < current:
        raise ValueError(
            f"{who} refine makes grids finer: {what} must be >= {current} (the current one), got {size}; "
            "to coarsen, build a smaller model and fit it to this one"
        )
    return size


def check_refine_coef(basis: Basis, coef: torch.Tensor) -> None:
    """Validate the coefficients given to ``refine``: (out, in_features, num_functions).

    Raises:
        ValueError: Another shape (the message gives the expected one).
    """
    if coef.dim() != 3 or tuple(coef.shape[1:]) != (basis.in_features, basis.num_functions):
        raise ValueError(
            f"refine expects coef of shape (out, {basis.in_features}, {basis.num_functions}), "
            f"got {tuple(coef.shape)}"
        )


def refit_with_buffers(
    basis: Basis, x: torch.Tensor, target: torch.Tensor, **buffers: torch.Tensor
) -> torch.Tensor:
    """Set the basis' grid buffers, then refit coefficients to ``target``; undo on failure.

    The common last step of ``update_grid``: the named buffers are overwritten in place (so
    optimizers and DDP keep holding the same tensors), and if the fit raises they get their old
    values back, leaving the basis as it was.

    Args:
        basis: The basis whose buffers move.
        x: (batch, in) samples.
        target: (batch, out, in) edge values to keep, from :func:`edge_values` before the move.
        **buffers: New values per buffer name.

    Returns:
        (out, in, n) coefficients on the moved basis.
    """
    old = {name: getattr(basis, name).clone() for name in buffers}
    for name, value in buffers.items():
        getattr(basis, name).copy_(value)
    try:
        return fit_coefficients(basis(x), target)
    except Exception:
        for name, value in old.items():
            getattr(basis, name).copy_(value)
        raise


def check_grid_range(grid_range: Any, who: str) -> tuple[float, float]:
    """Validate a ``grid_range``: two finite numbers, low < high.

    Raises:
        ValueError: Anything else (the message says what is accepted).
    """
    try:
        lo, hi = (float(v) for v in grid_range)
    except (TypeError, ValueError):
        raise ValueError(f"{who} grid_range must be two numbers (low, high), got {grid_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{who} grid_range must be finite with low < high, got {grid_range!r}")
    return (lo, hi)
