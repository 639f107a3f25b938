"""The one place that chooses how a B-spline layer's edges are computed, and runs that path.

:func:`describe` reads what matters off the basis and the input into a :class:`Case`;
:func:`choose` maps a case to a :class:`Path` (a pure function the tests call directly);
:func:`run` executes a path. Nothing else in kantk branches on the device, dtype or backend of a
B-spline layer.

| path | when | module |
|---|---|---|
| ``triton`` | CUDA, float32 (autocast too), cubic, G+k <= 100, Triton installed | :mod:`kantk.bases.gpu` |
| ``triton_sparse`` | only when forced (experimental; TRITON_MAX_FUNCTIONS) | :mod:`kantk.bases.gpu.sparse` |
| ``native_sparse`` / ``native_dense`` | CPU, uniform grid, the native kernels built | :mod:`.native` |
| ``torch_knots`` | non-uniform grid (after ``update_grid``), or ``torch.func`` | :mod:`.knots` (de Boor) |
| ``torch_compiled`` | under ``torch.compile``, cubic, no native kernels | :mod:`.torch_dense` |
| ``torch_sparse`` / ``torch_dense`` | otherwise (uniform grid) | :mod:`.torch_sparse`, :mod:`.torch_dense` |

The sparse paths touch only the order+1 non-zero bases per input (time flat in G); the dense ones
do one GEMM over all G+k functions. ``basis.sparse`` (``"auto"``, True, False) and ``basis.path``
(``"auto"`` or a path name) override the choice on one basis; a forced path that cannot evaluate
it (a uniform-grid one on moved knots, a cubic-only one on another order, a native one where the
kernels cannot run) hands over to one that can. Every path gives the same values and gradients
to round-off, in every ``extrapolate`` mode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kantk.bases import gpu
from kantk.bases.base import EdgeWeights, functorch_active
from kantk.bases.bspline import native_build
from kantk.bases.bspline.knots import local_bspline_features
from kantk.bases.bspline.native import (
    NATIVE_SPARSE_MAX_OUT,
    NATIVE_SPARSE_MIN_FUNCTIONS,
    _native_linear,
    _native_sparse_linear,
)
from kantk.bases.bspline.torch_dense import _cardinal_cubic_linear, _UniformBSplineLinear
from kantk.bases.bspline.torch_sparse import SPARSE_MIN_FUNCTIONS, _sparse_linear

if TYPE_CHECKING:  # pragma: no cover
    from kantk.bases.bspline.basis import BSplineBasis


class Path(str, enum.Enum):
    """How a B-spline layer's edge sum is computed."""

    TRITON = "triton"
    TRITON_SPARSE = "triton_sparse"
    NATIVE_DENSE = "native_dense"
    NATIVE_SPARSE = "native_sparse"
    TORCH_KNOTS = "torch_knots"
    TORCH_COMPILED = "torch_compiled"
    TORCH_DENSE = "torch_dense"
    TORCH_SPARSE = "torch_sparse"


#: The ``triton`` path does one GEMM over all G+k functions (time linear in G); above this many
#: functions the sparse PyTorch path takes over on CUDA (H200, w256 B8192: triton 5.5 ms vs 17.3 ms
#: at G=50, 19.8 ms vs 19.2 ms at G=200; docs/performance.md). The ``triton_sparse`` kernels (flat
#: in G) run only when forced (``basis.path = "triton_sparse"``): their first version passed its
#: tests in Triton's interpreter but gave wrong forward values on the H200; rewritten in 2-D tiles,
#: not yet run on a GPU.
TRITON_MAX_FUNCTIONS = 100

#: Paths that need a uniform grid.
UNIFORM_ONLY = (
    Path.NATIVE_DENSE,
    Path.NATIVE_SPARSE,
    Path.TORCH_COMPILED,
    Path.TORCH_DENSE,
    Path.TORCH_SPARSE,
)

#: Paths whose kernels evaluate cubic B-splines only (forced on another order, "auto" decides).
CUBIC_ONLY = (Path.TRITON, Path.TRITON_SPARSE, Path.TORCH_COMPILED)

#: The native CPU kernels' paths (forced where they cannot run, "auto" decides).
NATIVE = (Path.NATIVE_DENSE, Path.NATIVE_SPARSE)


@dataclass(frozen=True)
class Case:
    """What the choice of path depends on.

    Attributes:
        device: The input's device type (``"cpu"``, ``"cuda"``, ...).
        dtype: The input's dtype.
        uniform: Whether every input's knots are equally spaced.
        order: Spline order k.
        extrapolate: ``"zero"``, ``"clamp"`` or ``"extend"``.
        num_functions: G + k.
        out_features: Outputs of the layer.
        compiling: Under ``torch.compile`` tracing.
        native: The native CPU kernels are built and can read these tensors.
        triton: Triton can take the input (CUDA, float32, installed, not switched off).
        sparse: The basis' ``sparse`` setting (``"auto"``, True or False).
        force: The basis' ``path`` setting (``"auto"`` or a :class:`Path` value).
        functorch: A ``torch.func`` transform is running (then ``torch_knots``, whatever else).
        triton_fits: The Triton kernels can take these tensors (float32/float64, weight-sized
            buffers within 32-bit offsets: ``kantk.bases.gpu.kernels_fit``); a forced ``triton``
            path that cannot is handed over like a forced native path that cannot run.
    """

    device: str
    dtype: torch.dtype
    uniform: bool
    order: int
    extrapolate: str = "zero"
    num_functions: int = 8
    out_features: int = 1
    compiling: bool = False
    native: bool = False
    triton: bool = False
    sparse: bool | str = "auto"
    force: str = "auto"
    functorch: bool = False
    triton_fits: bool = True


def choose(case: Case) -> Path:
    """The path for a case (see the module docstring)."""
    if case.functorch:
        # torch.func transforms cannot see into the fused kernels (custom autograd functions over
        # raw buffers): de Boor's recursion in plain PyTorch ops, any knots, forced paths too
        return Path.TORCH_KNOTS
    if case.force != "auto":
        path = Path(case.force)
        if path in UNIFORM_ONLY and not case.uniform:
            return Path.TORCH_KNOTS  # a forced uniform-grid path cannot evaluate moved knots
        cubic_ok = path not in CUBIC_ONLY or case.order == 3  # they evaluated cubics whatever the order
        native_ok = path not in NATIVE or case.native  # not built, switched off, or unfit tensors
        triton_ok = path not in (Path.TRITON, Path.TRITON_SPARSE) or case.triton_fits  # half, huge
        if cubic_ok and native_ok and triton_ok:
            return path
        # else the path "auto" takes
    if case.triton and case.order == 3 and not case.compiling and case.num_functions <= TRITON_MAX_FUNCTIONS:
        return Path.TRITON
    if not case.uniform:
        return Path.TORCH_KNOTS
    if case.native:
        if case.sparse != "auto":
            sparse = bool(case.sparse)
        else:
            sparse = (
                case.num_functions >= NATIVE_SPARSE_MIN_FUNCTIONS
                or case.out_features <= NATIVE_SPARSE_MAX_OUT
            )
        return Path.NATIVE_SPARSE if sparse else Path.NATIVE_DENSE
    if case.sparse is True or (case.sparse == "auto" and case.num_functions >= SPARSE_MIN_FUNCTIONS):
        return Path.TORCH_SPARSE
    if case.compiling and case.order == 3 and case.sparse == "auto":
        return Path.TORCH_COMPILED  # plain element-wise ops that inductor fuses into one kernel
    return Path.TORCH_DENSE


def describe(
    basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights, compiling: bool | None = None
) -> Case:
    """The :class:`Case` of a call ``basis.fused_edges(x, weights)``."""
    compiling = torch.compiler.is_compiling() if compiling is None else compiling
    functorch = functorch_active()
    uniform = basis.is_uniform()
    triton_fits = gpu.kernels_fit(x, weights.coef)
    native = (
        uniform
        and not compiling
        and not functorch
        and native_build.usable(x, basis.order, weights.tensors(), basis.grid)
    )
    return Case(
        device=x.device.type,
        dtype=x.dtype,
        uniform=uniform,
        order=basis.order,
        extrapolate=basis.extrapolate,
        num_functions=basis.num_functions,
        out_features=weights.coef.shape[0],
        compiling=compiling,
        native=native,
        triton=triton_fits and gpu.available(x),
        triton_fits=triton_fits,
        sparse=basis.sparse,
        force=basis.path,
        functorch=functorch,
    )


def choose_path(basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights) -> Path:
    """The path ``basis.fused_edges(x, weights)`` takes now."""
    return choose(describe(basis, x, weights))


def run(path: Path, basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """The edge sum (batch, out) of ``x`` (batch, in) by ``path``."""
    if path is Path.TRITON:
        return gpu.bspline(basis, x, weights)
    if path is Path.TRITON_SPARSE:
        return gpu.bspline(basis, x, weights, sparse=True)
    base = weights.base(x)  # (batch, in) or None
    base_weight = None if base is None else weights.base_weight
    xe = basis._extrapolation_input(x)
    if path is Path.TORCH_KNOTS:
        feats = local_bspline_features(xe, basis.grid, basis.order, extend=basis.extrapolate == "extend")
        w = weights.spline_weight()
        y = feats.flatten(1) @ w.flatten(1).t()  # (batch, in*n) @ (in*n, out)
        return y if base is None or base_weight is None else torch.addmm(y, base, base_weight.t())
    shift, inv_h, tables = basis._uniform_params(x.dtype)
    if path is Path.NATIVE_DENSE:
        return _native_linear(
            xe, weights.coef, weights.scale, base, base_weight, shift, inv_h, tables, basis.workspace
        )
    if path is Path.NATIVE_SPARSE:
        return _native_sparse_linear(xe, weights.coef, weights.scale, base, base_weight, shift, inv_h, tables)
    weight = weights.spline_weight()  # (out, in, n)
    if path is Path.TORCH_SPARSE:
        return _sparse_linear(xe, weight, base, base_weight, shift, inv_h, tables)
    if base is not None and base_weight is not None:  # both or neither
        # the base branch rides along as one more column: a single GEMM for the whole layer
        weight = torch.cat([weight, base_weight.unsqueeze(-1)], dim=-1)  # (out, in, n+1)
    if path is Path.TORCH_COMPILED:
        return _cardinal_cubic_linear(xe, base, weight, shift, inv_h, extend=tables.extend)
    return _UniformBSplineLinear.apply(xe, base, weight, shift, inv_h, tables, basis.workspace)


def _native_outside_graph(basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor | None:
    """Under ``torch.compile`` on the CPU: the native path, run eagerly (dynamo cannot trace
    ctypes), or None where it cannot run. On the CPU this graph break beats the compiled form."""
    case = describe(basis, x, weights, compiling=False)
    path = choose(case)
    if path not in NATIVE:
        return None
    return run(path, basis, x, weights)


def fused_edges(basis: BSplineBasis, x: torch.Tensor, weights: EdgeWeights) -> torch.Tensor:
    """Choose the path and run it; the body of :meth:`BSplineBasis.fused_edges`."""
    if torch.compiler.is_compiling() and x.device.type == "cpu" and basis.path == "auto":
        # run eagerly, a graph break: dynamo would not trace ctypes. Wrapped at trace time only
        # (no cache: dynamo traces through one, with a warning): torch.compiler.disable imports
        # torch._dynamo (over a second), which a model that is never compiled should not pay for
        y = torch.compiler.disable(_native_outside_graph)(basis, x, weights)
        if y is not None:
            return y
    path = choose_path(basis, x, weights)
    if path not in (Path.TRITON, Path.TRITON_SPARSE) and gpu.low_precision(x) is not None:
        # the PyTorch and native paths compute in the layer's dtype under autocast too
        with torch.autocast(x.device.type, enabled=False):
            return run(path, basis, x, weights)
    return run(path, basis, x, weights)
