"""The B-spline path chooser: one case per path, the choice seen from a real layer, and every path
forced on every extrapolation mode and grid giving the same values and gradients."""

from __future__ import annotations

import pytest
import torch
from triton_env import interpreter_problem

import kantk
from kantk.bases import gpu
from kantk.bases.bspline import EXTRAPOLATIONS, Case, Path, choose, choose_path, dispatch, native_build

F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize(
    "case, path",
    [
        (Case("cuda", F32, uniform=True, order=3, triton=True), Path.TRITON),
        (Case("cuda", F32, uniform=False, order=3, triton=True), Path.TRITON),  # moved knots too
        (Case("cuda", F32, uniform=True, order=2, triton=True), Path.TORCH_DENSE),  # cubic only
        (Case("cuda", F64, uniform=True, order=3, triton=False), Path.TORCH_DENSE),
        (Case("cuda", F32, uniform=True, order=3, triton=True, compiling=True), Path.TORCH_COMPILED),
        (Case("cuda", F32, uniform=True, order=3, num_functions=203), Path.TORCH_SPARSE),
        (Case("cuda", F32, uniform=True, order=3, num_functions=203, triton=True), Path.TORCH_SPARSE),
        (Case("cuda", F32, uniform=True, order=3, triton=True, force="triton_sparse"), Path.TRITON_SPARSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, out_features=64), Path.NATIVE_SPARSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, out_features=1024), Path.NATIVE_DENSE),
        (
            Case("cpu", F32, uniform=True, order=3, native=True, out_features=1024, num_functions=203),
            Path.NATIVE_SPARSE,
        ),
        (Case("cpu", F64, uniform=True, order=3, native=True, sparse=False), Path.NATIVE_DENSE),
        (Case("cpu", F32, uniform=False, order=3, native=False), Path.TORCH_KNOTS),
        (Case("cpu", F32, uniform=True, order=3, compiling=True), Path.TORCH_COMPILED),
        (Case("cpu", F32, uniform=True, order=3, compiling=True, extrapolate="extend"), Path.TORCH_COMPILED),
        (Case("cpu", F32, uniform=True, order=2, compiling=True), Path.TORCH_DENSE),  # cubic only
        (Case("cpu", F32, uniform=True, order=3, sparse=True), Path.TORCH_SPARSE),
        (Case("cpu", F32, uniform=True, order=3), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, force="torch_dense"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=False, order=3, force="torch_sparse"), Path.TORCH_KNOTS),
        (Case("cpu", F32, uniform=True, order=3, force="triton"), Path.TRITON),
        # a forced cubic-only path on another order: whatever "auto" takes
        (Case("cpu", F32, uniform=True, order=2, force="torch_compiled"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=2, native=True, force="triton"), Path.NATIVE_SPARSE),
        (Case("cuda", F32, uniform=False, order=1, triton=True, force="triton_sparse"), Path.TORCH_KNOTS),
        (Case("cpu", F32, uniform=False, order=2, force="torch_compiled"), Path.TORCH_KNOTS),
        # forced native kernels where they cannot run (not built, KANTK_NATIVE=0, unfit tensors)
        (Case("cpu", F32, uniform=True, order=3, native=False, force="native_dense"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=3, native=False, force="native_sparse"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, force="native_dense"), Path.NATIVE_DENSE),
    ],
)
def test_each_case_gets_its_path(case, path):
    assert choose(case) is path


def test_a_real_layer_reports_its_path(monkeypatch):
    from kantk.bases.bspline import native_build

    layer = kantk.KANLayer(3, 4)
    x = torch.rand(5, 3)
    expected = Path.NATIVE_SPARSE if native_build.library() is not None else Path.TORCH_DENSE
    assert choose_path(layer.basis, x, layer.edge_weights()) is expected
    monkeypatch.setenv(native_build.ENV_SWITCH, "0")
    assert choose_path(layer.basis, x, layer.edge_weights()) is Path.TORCH_DENSE
    layer.update_grid(torch.randn(50, 3) ** 3)
    assert choose_path(layer.basis, x, layer.edge_weights()) is Path.TORCH_KNOTS


def test_unknown_forced_path_is_a_clear_error():
    layer = kantk.KANLayer(3, 4)
    layer.basis.path = "gpu"
    with pytest.raises(ValueError, match="gpu"):
        layer(torch.rand(2, 3))


def _values_and_gradients(model: kantk.KAN, x: torch.Tensor) -> list[torch.Tensor]:
    """Output, input gradient and parameter gradients of one weighted-sum backward."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = model(x)
    (y * torch.linspace(-1.0, 2.0, y.shape[-1], dtype=y.dtype)).sum().backward()
    return [y.detach(), x.grad, *(p.grad for p in model.parameters())]


@pytest.mark.parametrize("path", [p.value for p in Path])
@pytest.mark.parametrize("extrapolate", EXTRAPOLATIONS)
@pytest.mark.parametrize("moved", [False, True], ids=["uniform", "moved"])
@pytest.mark.parametrize("order", [3, 2])
def test_every_forced_path_agrees_with_de_boor(path, extrapolate, moved, order):
    """Forced on each path (a uniform-only path on moved knots, a cubic-only one on another order,
    a native one without the kernels, hands over to one that can evaluate them), the layer's values
    and gradients equal the de Boor path's to float64 round-off: inside the grid, on its outer knot
    intervals and beyond. (torch_compiled once ignored extrapolate="extend", cubic-only paths
    forced on order 2 evaluated cubic splines, and forced native paths without the kernels
    crashed.)"""
    if path.startswith("triton") and not gpu.installed():
        pytest.skip("Triton is not installed")
    if path.startswith("triton") and (problem := interpreter_problem()):
        pytest.skip(problem)
    torch.set_default_dtype(torch.float64)  # the conftest restores float32
    model = kantk.KAN([3, 2], basis_kwargs={"extrapolate": extrapolate, "order": order}, seed=0)
    if moved:
        model.update_grid(torch.randn(200, 3, generator=torch.Generator().manual_seed(3)) ** 3)
    # grid range [-1, 1] and outer knots at +-(1 + 0.4 * order) before update_grid
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(1)) * 6.0 - 3.0
    for layer in model.layers:
        layer.basis.path = "torch_knots"
    reference = _values_and_gradients(model, x)
    for layer in model.layers:
        layer.basis.path = path
    got = _values_and_gradients(model, x)
    for a, b in zip(got, reference):
        # float64 sums of a few dozen terms of size <= scale: the paths differ by 1e-16 to 3e-16
        # on x86-64; 1e-12 leaves a wide margin for other CPUs' rounding
        scale = float(b.abs().max().clamp_min(1.0))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("path", [p.value for p in Path])
def test_every_forced_path_takes_an_empty_batch(path):
    """A batch of 0 rows on each path gives 0 rows of output and an input gradient of 0 rows (the
    de Boor, sparse and compiled paths once failed reshaping (0, in, n) to (0, -1))."""
    if path.startswith("triton") and not gpu.installed():
        pytest.skip("Triton is not installed")
    if path.startswith("triton") and (problem := interpreter_problem()):
        pytest.skip(problem)
    model = kantk.KAN([3, 2], seed=0)
    for layer in model.layers:
        layer.basis.path = path
    x = torch.rand(0, 3, requires_grad=True)
    y = model(x)
    assert y.shape == (0, 2)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == (0, 3)
    # twice differentiable too (physics-informed losses): the uniform-grid paths failed reshaping
    # (0, in, width) to (0, -1) in their differentiable backward
    (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    grad.sum().backward()
    assert grad.shape == (0, 3)


def test_extend_under_torch_compile_traces_the_closed_form_with_eager_results(monkeypatch):
    """Without the native kernels a cubic layer under torch.compile traces the element-wise closed
    form (torch_compiled), extrapolate="extend" too (it took torch_dense there while the closed
    form ignored "extend"): values and gradients are the eager ones. The other modes: the same form
    forced eagerly above, and tests/integration/test_compile.py (each compile takes seconds)."""
    monkeypatch.setenv(native_build.ENV_SWITCH, "0")
    torch.set_default_dtype(torch.float64)
    torch._dynamo.reset()
    model = kantk.KAN([3, 4, 2], basis_kwargs={"extrapolate": "extend"}, seed=0)
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(2)) * 6.0 - 3.0
    eager = _values_and_gradients(model, x)
    seen = []
    real_run = dispatch.run

    def run(path, *args):
        seen.append(path)
        return real_run(path, *args)

    monkeypatch.setattr(dispatch, "run", run)
    compiled = torch.compile(model, backend="aot_eager")
    got = _values_and_gradients(compiled, x)
    assert seen and set(seen) == {Path.TORCH_COMPILED}
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * float(b.abs().max().clamp_min(1.0)))


def test_a_float64_grid_far_from_zero_with_a_moved_knot_is_not_uniform():
    """is_uniform allowed float32 rounding (4 eps32 |knot|) for every grid: a float64 grid at 1000
    with spacing 0.002 passed with a knot moved by 20% of h, and the uniform paths were 5% off."""
    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(1, 1, basis_kwargs={"grid_size": 5, "grid_range": (1000.0, 1000.01)})
    assert layer.basis.is_uniform()
    with torch.no_grad():
        layer.basis.grid[0, 5] += 0.2 * 0.002
    assert not layer.basis.is_uniform()
    # a float32 layer's knots converted with .double() keep the fast path
    torch.set_default_dtype(torch.float32)
    assert kantk.KANLayer(2, 1, basis_kwargs={"grid_size": 50}).double().basis.is_uniform()
