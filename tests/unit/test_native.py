"""The native CPU kernels of the uniform B-spline layer against the PyTorch path they replace."""

from __future__ import annotations

import warnings

import pytest
import torch

import kantk
from kantk.bases import EdgeWeights
from kantk.bases.bspline import Path, choose_path, native, torch_dense
from kantk.bases.bspline import native_build as _native

pytestmark = pytest.mark.skipif(_native.library() is None, reason=f"native kernels {_native.status()}")


def _step(layer: kantk.KANLayer, x: torch.Tensor):
    """Output, input gradient and parameter gradients of one weighted-sum backward."""
    layer.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    y = layer(x)
    weights = torch.linspace(-1, 2, y.shape[-1], dtype=y.dtype)
    (y * weights).nan_to_num().sum().backward()
    return y.detach(), x.grad, {name: p.grad for name, p in layer.named_parameters()}


def _both_paths(monkeypatch, layer, x):
    native = _step(layer, x)
    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    reference = _step(layer, x)
    monkeypatch.delenv(_native.ENV_SWITCH)
    return native, reference


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"order": 0},
        {"order": 1},
        {"order": 2, "grid_size": 7},
        {"order": 5, "grid_size": 4},
        {"grid_size": 40},
        {"extrapolate": "extend"},
        {"extrapolate": "clamp"},
        {"grid_range": (-3.0, 0.5)},
    ],
)
@pytest.mark.parametrize("base", ["silu", "zero"])
@pytest.mark.parametrize("sparse", [False, True])  # the native dense and sparse paths
def test_native_path_matches_the_pytorch_path(monkeypatch, dtype, tol, kwargs, base, sparse):
    torch.set_default_dtype(dtype)  # knots exact in dtype (the conftest restores float32)
    layer = kantk.KANLayer(70, 5, basis_kwargs=kwargs, base_activation=base)  # 70: two blocks of 64
    layer.basis.sparse = sparse  # the PyTorch reference takes its own path either way
    assert layer.basis.is_uniform()
    x = torch.randn(37, 70, dtype=dtype) * 1.5  # inside, beyond the grid and beyond the outer knots
    x[0, 0], x[1, 1], x[2, 2] = float("nan"), float("inf"), -float("inf")
    (y, gx, grads), (y_ref, gx_ref, grads_ref) = _both_paths(monkeypatch, layer, x)
    scale = y_ref[torch.isfinite(y_ref)].abs().max().clamp_min(1.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=tol * scale, equal_nan=True)
    assert torch.isnan(y[0]).all()  # a NaN input poisons its row, as in the PyTorch path
    finite = ~torch.isnan(x[:, :1]).expand_as(gx)  # order 0's derivative at a NaN: NaN here, 0 there
    torch.testing.assert_close(gx[finite], gx_ref[finite], rtol=0, atol=tol * 10 * scale, equal_nan=True)
    # parameter gradients from finite inputs (a NaN input's zero upstream gradient meets NaN
    # basis values in the weight GEMM: which weights turn NaN is not part of the contract)
    x_finite = x.nan_to_num(nan=0.3, posinf=5.0, neginf=-5.0)
    (_, _, grads), (_, _, grads_ref) = _both_paths(monkeypatch, layer, x_finite)
    for name, g in grads.items():
        if g is None:
            assert grads_ref[name] is None
            continue
        torch.testing.assert_close(g, grads_ref[name], rtol=tol * 10, atol=tol * 10 * scale)


@pytest.mark.parametrize("sparse, path", [(False, Path.NATIVE_DENSE), (True, Path.NATIVE_SPARSE)])
def test_native_path_is_taken_and_gradchecks_twice(sparse, path):
    torch.manual_seed(1)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 4}).double()
    layer.basis.sparse = sparse
    x = (torch.rand(6, 3, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    params = (layer.coef, layer.scale_sp, layer.scale_base)
    assert choose_path(layer.basis, x, layer.edge_weights()) is path

    def f(inp, coef, scale_sp, scale_base):
        return layer.basis.fused_edges(inp, EdgeWeights(coef, scale_sp, scale_base, "silu"))

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_pytorch_path_still_gradchecks_when_native_is_off(monkeypatch):
    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    assert not _native.usable(torch.zeros(1, dtype=torch.float64), 3)
    assert "switched off" in _native.status()
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 4}).double()
    x = (torch.rand(6, 3, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


@pytest.mark.parametrize("sparse", [False, True])
def test_chunked_rows_and_two_forwards_before_backward(monkeypatch, sparse):
    layer = kantk.KANLayer(9, 4).double()
    layer.basis.sparse = sparse
    x1, x2 = torch.randn(50, 9, dtype=torch.float64), torch.randn(50, 9, dtype=torch.float64)
    whole = [_step(layer, x) for x in (x1, x2)]
    # two forwards, then one backward through both: the first call's kept matrix is stale
    g1 = {n: g for n, g in whole[0][2].items()}
    g2 = {n: g for n, g in whole[1][2].items()}
    layer.zero_grad(set_to_none=True)
    weights = torch.linspace(-1, 2, 4, dtype=torch.float64)
    ((layer(x1) * weights).sum() + 2 * (layer(x2) * weights).sum()).backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, g1[name] + 2 * g2[name])
    # several row chunks (a tiny chunk size) give the same values and gradients
    # 7 rows per chunk: dense (in * width elements per row) or sparse (out * threads per row)
    per_row = 4 * torch.get_num_threads() if sparse else 9 * 9
    monkeypatch.setattr(torch_dense, "CHUNK_ELEMENTS", per_row * 7)
    monkeypatch.setattr(native, "NATIVE_SPARSE_MIN_CHUNK_ROWS", 7)
    chunks = []
    real_forward = native.sparse_forward
    monkeypatch.setattr(native, "sparse_forward", lambda x, *a: chunks.append(len(x)) or real_forward(x, *a))
    for x, (y, gx, grads) in zip((x1, x2), whole):
        y_c, gx_c, grads_c = _step(layer, x)
        torch.testing.assert_close(y_c, y)
        torch.testing.assert_close(gx_c, gx)
        for name in grads:
            torch.testing.assert_close(grads_c[name], grads[name])
    if sparse:
        assert max(chunks) == 7 and sum(chunks) == 100  # two batches of 50 in chunks of 7 rows


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv(_native.ENV_CACHE, str(tmp_path))
    monkeypatch.setattr(_native, "_state", {"lib": None, "tried": False, "reason": "not tried yet"})
    monkeypatch.setattr(_native, "_compiler", lambda: "/bin/false")
    with pytest.warns(RuntimeWarning, match="native B-spline kernels are unavailable"):
        assert _native.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once, not at every call
        layer = kantk.KANLayer(4, 3)
        y = layer(torch.randn(5, 4))
    assert y.shape == (5, 3) and torch.isfinite(y).all()
    assert "unavailable" in _native.status()
    assert not list(tmp_path.glob("*.so*"))  # no half-written library left behind


@pytest.fixture()
def copying_compiler(tmp_path):
    """A stand-in C++ compiler that copies the session's real build (made once per test cache by
    the real compiler, conftest.py) to its ``-o`` target: the cache tests below are about naming,
    recording, verifying and loading, and a real build costs 10-30 s on 2 shared cores."""
    built = _native._build(_native._compiler())  # the session's cache: verified, built at most once
    script = tmp_path / "copying-cxx"
    script.write_text(
        f'#!/bin/sh\nwhile [ $# -gt 0 ] && [ "$1" != "-o" ]; do shift; done\ncp "{built}" "$2"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_the_build_goes_to_the_cache_folder(monkeypatch, tmp_path, copying_compiler):
    monkeypatch.setenv(_native.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_state", {"lib": None, "tried": False, "reason": "not tried yet"})
    monkeypatch.setattr(_native, "_compiler", lambda: copying_compiler)
    assert _native.library() is not None
    assert len(list((tmp_path / "cache").glob("bspline_*.so"))) == 1
    assert _native.status().startswith("in use")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("order, grid_size", [(1, 5), (2, 7), (3, 5), (3, 40), (5, 4)])
def test_native_values_equal_cox_de_boor(monkeypatch, dtype, tol, sparse, order, grid_size):
    """With one-hot weights each output is one basis function: the native paths' values against
    the reference recursion (float32 ~1e-6, float64 ~1e-12)."""
    from kantk.bases.bspline import BSplineBasis, cox_de_boor

    torch.set_default_dtype(dtype)
    basis = BSplineBasis(3, grid_size=grid_size, order=order)
    basis.sparse = sparse
    n = basis.num_functions
    x = torch.rand(300, 3) * 3.0 - 1.5  # inside the grid, on its extension and beyond
    weight = torch.zeros(3 * n, 3, n)  # output (p, i) picks basis i of input p
    for p in range(3):
        weight[p * n + torch.arange(n), p, torch.arange(n)] = 1.0
    ones = torch.ones(weight.shape[:2])
    assert choose_path(basis, x, EdgeWeights(weight, ones)) is (
        Path.NATIVE_SPARSE if sparse else Path.NATIVE_DENSE
    )
    got = basis.linear(x, weight).reshape(300, 3, n)
    # the same allowance as the PyTorch path's test (test_bspline.py), widened for fine grids,
    # where rounding x * (1/h) moves float32 positions by ~G ulps
    atol = 4 * tol * max(1.0, grid_size / 5)
    torch.testing.assert_close(got, cox_de_boor(x, basis.grid, order), rtol=0, atol=atol)


def test_mismatched_dtypes_take_the_pytorch_path_and_its_error():
    """The kernels read raw pointers: a weight of another dtype must not reach them."""
    from kantk.bases.bspline import BSplineBasis

    basis = BSplineBasis(3)
    x = torch.rand(4, 3)
    assert not _native.usable(x, 3, (torch.rand(2, 3, 8, dtype=torch.float64),), basis.grid)
    with pytest.raises(RuntimeError, match="dtype|type"):
        basis.linear(x, torch.rand(2, 3, basis.num_functions, dtype=torch.float64))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize("kwargs", [{}, {"grid_size": 60}, {"extrapolate": "extend"}])
def test_sparse_path_with_rows_grouped_by_interval(monkeypatch, dtype, tol, kwargs):
    """Cubic layers with 64 or 128 outputs take the sparse backward that groups the batch rows
    by interval (bucketed_rank1 in the C++ source): the PyTorch path's gradients."""
    torch.set_default_dtype(dtype)
    for out in (64, 128):
        layer = kantk.KANLayer(9, out, basis_kwargs=kwargs)
        layer.basis.sparse = True
        x = torch.randn(150, 9) * 1.5
        x[:40, 0] = 0.1  # many rows in one interval
        x[1, 1], x[2, 2] = float("inf"), -float("inf")
        (y, gx, grads), (y_ref, gx_ref, grads_ref) = _both_paths(monkeypatch, layer, x)
        scale = y_ref[torch.isfinite(y_ref)].abs().max().clamp_min(1.0)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=tol * scale, equal_nan=True)
        torch.testing.assert_close(gx, gx_ref, rtol=0, atol=tol * 10 * scale, equal_nan=True)
        for name, g in grads.items():
            ok = torch.isfinite(grads_ref[name])
            torch.testing.assert_close(g[ok], grads_ref[name][ok], rtol=tol * 10, atol=tol * 10 * scale)


def test_a_truncated_cached_library_is_rebuilt_not_loaded(monkeypatch, tmp_path, copying_compiler):
    """A cut-off .so in the cache would crash the process (SIGBUS) when loaded: it is verified
    against the size and hash recorded at build time, and rebuilt."""
    monkeypatch.setenv(_native.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_compiler", lambda: copying_compiler)
    lib = _native._build(_native._compiler())  # built by an earlier run, not loaded here
    assert _native.verified(lib)
    lib.write_bytes(lib.read_bytes()[:4096])  # truncated, as by a full disk or a killed copy
    assert not _native.verified(lib)
    monkeypatch.setattr(_native, "_state", {"lib": None, "tried": False, "reason": "not tried yet"})
    assert _native.library() is not None  # rebuilt, loaded, working
    assert _native.verified(lib)
    y = kantk.KANLayer(3, 2)(torch.rand(4, 3))
    assert torch.isfinite(y).all()


def test_a_hanging_compiler_is_stopped_with_its_children(monkeypatch, tmp_path):
    import os
    import time

    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hang-cxx"
    # a "compiler" that starts a child and waits for it forever
    script.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    script.chmod(0o755)
    monkeypatch.setenv(_native.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv(_native.ENV_TIMEOUT, "1")
    monkeypatch.setattr(_native, "_state", {"lib": None, "tried": False, "reason": "not tried yet"})
    monkeypatch.setattr(_native, "_compiler", lambda: str(script))
    start = time.monotonic()
    with pytest.warns(RuntimeWarning, match="longer than 1 s"):
        assert _native.library() is None
    assert time.monotonic() - start < 30
    child = int(pid_file.read_text())
    for _ in range(50):  # the child was in the compiler's process group: killed too
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the compiler's child process is still running")
    assert not list((tmp_path / "cache").glob("*.so"))


def test_sparse_forward_with_a_partial_sum_over_2_24_values():
    """The sparse forward keeps one (rows, out) sum per thread; over 2^24 values that sum came
    from a temporary workspace freed at once, and the kernel wrote into freed memory (a segfault
    at out = 16385, batch 1024). Values match the de Boor path."""
    torch.manual_seed(0)
    layer = kantk.KANLayer(1, 16385, basis_kwargs={"grid_size": 8})
    x = torch.rand(1024, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        layer.basis.path = "native_sparse"
        y = layer(x)
        layer.basis.path = "torch_knots"
        reference = layer(x)
    # float32 sums of 4 terms each: a few ulp of values of size ~1
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
