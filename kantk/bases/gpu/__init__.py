"""The built-in bases' edge sums on CUDA, by Triton kernels (``pip install kantk[gpu]``).

Map: this module is the glue the bases call (it imports Triton only when a kernel runs, so
``import kantk`` stays fast and works without it); :mod:`.launch` has the entry points and the
choice of form (``KANTK_TRITON_FORM``); the kernels per form are in :mod:`.gemm` (default: the
basis matrix written in one pass, cuBLAS GEMMs), :mod:`.fused` (basis values generated inside the
GEMM tiles) and :mod:`.sparse` (only the non-zero B-splines, experimental); :mod:`.common` holds
the basis kinds, the device helpers that evaluate a basis in a tile, and the double-backward
fallback. :func:`available` says whether a tensor can take this path: Triton importable and the tensor
on a CUDA device (or any device while Triton runs its interpreter, ``TRITON_INTERPRET=1``, which
the tests use on the CPU).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import TYPE_CHECKING

import torch

from kantk.bases.base import EdgeWeights, MaskedEdgeWeights, functorch_active

if TYPE_CHECKING:  # pragma: no cover
    from kantk.bases.bspline.basis import BSplineBasis
    from kantk.bases.chebyshev import ChebyshevBasis
    from kantk.bases.rbf import RBFBasis

#: ``KANTK_TRITON=0`` switches the Triton path off (the PyTorch path runs on CUDA instead).
ENV_SWITCH = "KANTK_TRITON"


@functools.cache
def installed() -> bool:
    """Whether Triton can be imported (``pip install kantk[gpu]``)."""
    return importlib.util.find_spec("triton") is not None


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def available(x: torch.Tensor, coef: torch.Tensor | None = None) -> bool:
    """Whether ``x`` can take the Triton path: a float32 CUDA tensor, Triton installed and switched on,
    no ``torch.func`` transform running, and (given the layer's ``coef``) :func:`kernels_fit`."""
    if not (enabled() and x.dtype == torch.float32 and x.device.type == "cuda"):
        return False
    if coef is not None and not kernels_fit(x, coef):
        return False
    return not functorch_active() and installed()


#: The kernels address weight-sized buffers with 32-bit offsets: the largest, the sparse weight
#: gradient's partial sums, holds about ``4 * (n + 4) * out * in`` numbers (``coef`` (out, in, n)).
MAX_KERNEL_ELEMENTS = 2**31 - 1


def kernels_fit(x: torch.Tensor, coef: torch.Tensor) -> bool:
    """Whether the kernels can take ``x`` and a layer's ``coef`` (out, in, n): float32 or float64
    (Triton's ``floor``/``exp`` take no half precision), and every weight-sized buffer within
    :data:`MAX_KERNEL_ELEMENTS` (larger layers take the PyTorch path: their offsets would wrap)."""
    if x.dtype not in (torch.float32, torch.float64) or coef.dim() != 3:
        return False
    out, inp, n = coef.shape
    return 4 * (n + 4) * out * inp <= MAX_KERNEL_ELEMENTS


def low_precision(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype (bf16/fp16) in force for ``x``'s device, or None; always None for a
    float64 ``x``, which autocast never lowers (nor do the other paths)."""
    if x.dtype != torch.float32:
        return None
    device = x.device.type
    if device in ("cuda", "cpu") and torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        if dtype in (torch.bfloat16, torch.float16):
            return dtype
    return None


def _base_kind(weights: EdgeWeights) -> int:
    from kantk.bases.gpu import common as ft

    return ft.BASE_KINDS[weights.base_activation] if weights.has_base else ft.BASE_NONE


def _reference(features, n: int, base: int):
    """``reference(xs, xb, wt)``: the fused product by differentiable PyTorch ops (double backward)."""
    from kantk.bases.gpu.common import BASE_ACTIVATIONS_TORCH

    def reference(xs: torch.Tensor, xb: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        feats = features(xs)  # (batch, in, n)
        w = wt.to(xs.dtype)
        rows, n_in = feats.shape[0], feats.shape[1]  # explicit sizes: a batch of 0 cannot infer -1
        y = feats.reshape(rows, n_in * n) @ w[:, :n].reshape(n_in * n, w.shape[-1])
        if base:
            y = y + BASE_ACTIVATIONS_TORCH[base](xb) @ w[:, n]
        return y

    return reference


def bspline(basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights, sparse: bool = False) -> torch.Tensor:
    """Cubic B-splines on uniform or general knots (``extrapolate`` any of the three); ``sparse``:
    the kernels that touch only the four non-zero functions per input (large grids)."""
    from kantk.bases.bspline.knots import local_bspline_features
    from kantk.bases.bspline.local import _dense_features
    from kantk.bases.gpu import common as ft
    from kantk.bases.gpu import launch

    extend = basis.extrapolate == "extend"
    xs = basis._extrapolation_input(x)  # clamped for "clamp"/"extend" (differentiable)
    n, base = basis.num_functions, _base_kind(weights)
    if basis.is_uniform():
        p0, p1 = basis._first_knot_and_inverse_spacing(x.dtype)

        def dense(z: torch.Tensor) -> torch.Tensor:  # the double backward's features (rarely run)
            return _dense_features(z, *basis._uniform_params(z.dtype))

        spec = ft.KernelSpec(ft.BSPLINE_UNIFORM, n, base, extend, _reference(dense, n, base))
    else:
        p0, p1 = basis.grid, None
        spec = ft.KernelSpec(
            ft.BSPLINE_KNOTS,
            n,
            base,
            extend,
            _reference(lambda z: local_bspline_features(z, basis.grid, 3, extend=extend), n, base),
        )
    if sparse:
        return launch.fused_edges(xs, x, weights.basis_major(), spec, p0, p1, sparse=True)
    return _run(xs, x, weights, spec, p0, p1)


def _run(xs, xb, weights: EdgeWeights, spec, p0, p1) -> torch.Tensor:
    from kantk.bases.gpu import launch

    low = low_precision(xs)
    if isinstance(weights, MaskedEdgeWeights) and weights.factors is not None:
        scale, base_weight, mask = weights.factors  # the kernels apply the mask
        bw = base_weight if weights.has_base else None
        return launch.layer_edges(xs, xb, weights.coef, scale, bw, spec, p0, p1, low, mask)
    bw = weights.base_weight if weights.has_base else None
    return launch.layer_edges(xs, xb, weights.coef, weights.scale, bw, spec, p0, p1, low)


def chebyshev(basis: ChebyshevBasis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """Chebyshev polynomials of ``tanh((x - center) / halfwidth)``, the squash inside the kernels
    (no PyTorch ops around them: small layers are bound by the host's time per op)."""
    from kantk.bases.chebyshev import chebyshev_polynomials
    from kantk.bases.gpu import common as ft

    n, base = basis.num_functions, _base_kind(weights)

    def features(xx: torch.Tensor) -> torch.Tensor:
        return chebyshev_polynomials(basis.squash(xx), basis.degree)

    spec = ft.KernelSpec(ft.CHEBYSHEV, n, base, False, _reference(features, n, base))
    return _run(x, x, weights, spec, basis.center, basis.halfwidth)


def rbf(basis: RBFBasis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """Gaussian bumps on per-input centres."""
    from kantk.bases.gpu import common as ft

    n, base = basis.num_functions, _base_kind(weights)
    spec = ft.KernelSpec(ft.RBF, n, base, False, _reference(basis, n, base))  # the basis is its features
    return _run(x, x, weights, spec, basis.centers, basis.width)
