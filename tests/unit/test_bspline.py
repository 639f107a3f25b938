from __future__ import annotations

import pytest
import torch

from kantk.bases.bspline import BSplineBasis, cox_de_boor, uniform_knots


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_uniform_fast_path_matches_cox_de_boor(order, dtype, tol):
    torch.set_default_dtype(dtype)
    basis = BSplineBasis(3, grid_size=5, order=order)
    assert basis.is_uniform()
    x = torch.rand(2000, 3) * 6 - 3  # inside, on the extension and outside the grid
    torch.testing.assert_close(basis(x), cox_de_boor(x, basis.grid, order), rtol=0, atol=4 * tol)


def test_partition_of_unity_inside_grid():
    basis = BSplineBasis(2, grid_size=7, order=3, grid_range=(-2.0, 3.0))
    x = torch.rand(500, 2) * 5 - 2
    torch.testing.assert_close(basis(x).sum(-1), torch.ones(500, 2))


def test_zero_and_finite_outside_extended_grid():
    basis = BSplineBasis(1, grid_size=5, order=3)
    x = torch.tensor([[-1e38], [-2.3], [2.3], [1e38]])
    feats = basis(x)
    assert torch.isfinite(feats).all()
    assert torch.equal(feats, torch.zeros_like(feats))


def test_non_uniform_grid_matches_cox_de_boor_with_first_and_second_derivatives():
    torch.set_default_dtype(torch.float64)
    basis = BSplineBasis(2, grid_size=4, order=3)
    with torch.no_grad():
        basis.grid.copy_(torch.sort(torch.rand(2, basis.grid.shape[1]) * 4 - 2, dim=-1).values)
    assert not basis.is_uniform()
    x = torch.rand(100, 2) * 2 - 1
    torch.testing.assert_close(basis(x), cox_de_boor(x, basis.grid, 3))
    w = torch.randn(3, 2, basis.num_functions, requires_grad=True)
    xr = x[:5].clone().requires_grad_()
    assert torch.autograd.gradcheck(basis.linear, (xr, w))
    assert torch.autograd.gradgradcheck(basis.linear, (xr, w))


def test_fused_linear_gradients_and_double_backward():
    torch.set_default_dtype(torch.float64)
    basis = BSplineBasis(3, grid_size=5, order=3)
    x = (torch.rand(6, 3) * 2.6 - 1.3).requires_grad_()
    w = torch.randn(2, 3, basis.num_functions, requires_grad=True)
    assert torch.autograd.gradcheck(basis.linear, (x, w))
    assert torch.autograd.gradgradcheck(basis.linear, (x, w))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"grid_size": 0}, "grid_size"),
        ({"order": -1}, "order"),
        ({"grid_range": (1.0, -1.0)}, "grid_range"),
        ({"grid_range": "wide"}, "grid_range"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BSplineBasis(2, **kwargs)


def test_config_round_trip():
    basis = BSplineBasis(2, grid_size=7, order=2, grid_range=(-3, 4))
    again = BSplineBasis(2, **basis.config())
    assert torch.equal(basis.grid, again.grid)


@pytest.mark.parametrize("sparse", [False, True])  # the fused dense path, the gather path
@pytest.mark.parametrize("spread", [1.8, 2.6])  # all inputs interior / some on the extension
def test_fused_linear_with_base_column_gradients_and_double_backward(spread, sparse, kernels):
    torch.set_default_dtype(torch.float64)
    basis = BSplineBasis(3, grid_size=4, order=3)
    basis.sparse = sparse
    from kantk.bases import EdgeWeights

    x = (torch.rand(5, 3) * spread - spread / 2).requires_grad_()
    w = torch.randn(2, 3, basis.num_functions, requires_grad=True)
    scale = torch.randn(2, 3, requires_grad=True)
    wb = torch.randn(2, 3, requires_grad=True)

    def fused(inp, coef, sc, base_weight):
        return basis.fused_edges(inp, EdgeWeights(coef, sc, base_weight, "silu"))

    expected = basis(x).reshape(5, -1) @ (w * scale.unsqueeze(-1)).reshape(2, -1).t()
    expected = expected + torch.nn.functional.silu(x) @ wb.t()
    torch.testing.assert_close(fused(x, w, scale, wb), expected)
    assert torch.autograd.gradcheck(fused, (x, w, scale, wb))
    assert torch.autograd.gradgradcheck(fused, (x, w, scale, wb))
    assert torch.autograd.gradcheck(basis.linear, (x, w))  # no base column
    assert torch.autograd.gradgradcheck(basis.linear, (x, w))


def test_second_derivative_through_a_kan_layer(kernels):
    """d2y/dx2 (physics-informed losses) through the fused path equals the dense path's."""
    import kantk

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(2, 1)
    x = (torch.rand(20, 2) * 1.8 - 0.9).requires_grad_()

    def second(fn):
        y = fn(x).sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (gg,) = torch.autograd.grad(g[:, 0].sum(), x)
        return gg

    def dense(inp):
        feats = layer.basis(inp).reshape(inp.shape[0], -1)
        return (
            feats @ layer.spline_weight().reshape(1, -1).t()
            + torch.nn.functional.silu(inp) @ layer.base_weight().t()
        )

    torch.testing.assert_close(second(layer), second(dense))


def test_scratch_buffers_do_not_leak_between_layers_or_calls(kernels):
    """Two layers of different shapes, called in turn, give the same results as fresh buffers."""
    import kantk
    from kantk.bases.bspline import clear_scratch

    model = kantk.KAN([3, 4, 2], seed=0)
    x = torch.rand(33, 3) * 2 - 1
    x.requires_grad_()
    y1 = model(x)
    g1 = torch.autograd.grad(y1.square().sum(), [x, *model.parameters()])
    clear_scratch()
    model(torch.rand(7, 3))  # other shapes in between dirty the scratch buffers; only y1 vs y3 matters
    y3 = model(x)
    g3 = torch.autograd.grad(y3.square().sum(), [x, *model.parameters()])
    assert torch.equal(y1, y3)
    for a, b in zip(g1, g3):
        assert torch.equal(a, b)


@pytest.mark.parametrize("spread", [1.8, 5.0])
def test_chunked_rows_give_the_same_values_and_gradients(monkeypatch, spread, kernels):
    """Big batches run in chunks of rows (bounded scratch memory); results must not change."""
    import kantk
    import kantk.bases.bspline.torch_dense as kernel_module

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 4})
    x = (torch.rand(50, 3) * spread - spread / 2).requires_grad_()

    def run():
        y = layer(x)
        grads = torch.autograd.grad((y * torch.arange(1.0, 3.0)).sum(), [x, *layer.parameters()])
        return y, grads

    y1, g1 = run()
    monkeypatch.setattr(kernel_module, "CHUNK_ELEMENTS", 3 * 5 * 8)  # 5 rows per chunk, 10 chunks
    y2, g2 = run()
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x[:12].detach().requires_grad_(),))


@pytest.mark.parametrize("grid_size", [50, 200, 1000])
def test_fine_float32_grids_take_the_fast_path(grid_size):
    basis = BSplineBasis(2, grid_size=grid_size, order=3)
    assert basis.grid.dtype == torch.float32
    assert basis.is_uniform()
    x = torch.rand(500, 2) * 2 - 1
    ref = cox_de_boor(x.double(), uniform_knots(2, grid_size, 3, (-1, 1)), 3)
    torch.testing.assert_close(basis(x).double(), ref, rtol=0, atol=2e-5 * grid_size / 50)


@pytest.fixture(params=["native", "pytorch"])
def kernels(request, monkeypatch):
    """Run a test on the native kernels and on the PyTorch path (``KANTK_NATIVE=0``)."""
    from kantk.bases.bspline import native_build as _native

    if request.param == "native":
        if _native.library() is None:
            pytest.skip("no C++ compiler: native kernels unavailable")
    else:
        monkeypatch.setenv(_native.ENV_SWITCH, "0")
    return request.param


@pytest.mark.parametrize("spread", [1.8, 5.0])
def test_sparse_path_matches_dense(spread, kernels):
    import kantk

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 7})
    x = (torch.rand(40, 3) * spread - spread / 2).requires_grad_()
    layer.basis.sparse = False
    y_dense = layer(x)
    g_dense = torch.autograd.grad(y_dense.square().sum(), [x, *layer.parameters()])
    layer.basis.sparse = True
    y_sparse = layer(x)
    g_sparse = torch.autograd.grad(y_sparse.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(y_sparse, y_dense)
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x[:6].detach().requires_grad_(),))


def _path(layer, x):
    from kantk.bases.bspline import choose_path

    return choose_path(layer.basis, x, layer.edge_weights())


def _sparse_path(kernels):
    from kantk.bases.bspline import Path

    return Path.NATIVE_SPARSE if kernels == "native" else Path.TORCH_SPARSE


def test_second_derivative_on_a_large_grid_takes_the_sparse_path(kernels):
    """A physics-informed loss on a G=200 layer: d2y/dx2 through the sparse path is the dense one's."""
    import kantk

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(2, 1, basis_kwargs={"grid_size": 200})
    x = (torch.rand(30, 2) * 1.8 - 0.9).requires_grad_()
    assert _path(layer, x) is _sparse_path(kernels)

    def laplacian_loss():
        y = layer(x)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        lap = sum(torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(2))
        loss = lap.square().mean()
        return loss, torch.autograd.grad(loss, [x, *layer.parameters()])

    loss_sparse, grads_sparse = laplacian_loss()
    layer.basis.sparse = False
    assert _path(layer, x) is not _sparse_path(kernels)
    loss_dense, grads_dense = laplacian_loss()
    torch.testing.assert_close(loss_sparse, loss_dense)
    for a, b in zip(grads_sparse, grads_dense):
        torch.testing.assert_close(a, b)


def test_large_grids_pick_the_sparse_path_automatically(kernels):
    import kantk
    from kantk.bases.bspline import native, torch_sparse

    sparse = _sparse_path(kernels)
    x = torch.rand(4, 2)

    def path(out, grid_size):
        return _path(kantk.KANLayer(2, out, basis_kwargs={"grid_size": grid_size}), x)

    # each kernel family switches at its own measured crossovers
    if kernels == "native":  # the sparse path up to 512 outputs, and for any width from 11 functions
        wide = native.NATIVE_SPARSE_MAX_OUT + 1
        assert path(wide, 5) is not sparse
        assert path(wide, native.NATIVE_SPARSE_MIN_FUNCTIONS - 3) is sparse
        assert path(native.NATIVE_SPARSE_MAX_OUT, 5) is sparse
    else:
        assert path(2, 5) is not sparse
        assert path(2, torch_sparse.SPARSE_MIN_FUNCTIONS - 3) is sparse
    assert path(2, 200) is sparse


def test_two_forwards_before_one_backward_give_correct_gradients(kernels):
    """The layer keeps its last dense matrix for its backward; an older call must rebuild it."""
    import kantk

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(3, 2)
    x1 = (torch.rand(20, 3) * 2 - 1).requires_grad_()
    x2 = (torch.rand(20, 3) * 2 - 1).requires_grad_()
    params = list(layer.parameters())
    (layer(x1).sum() + 2 * layer(x2).sum()).backward()
    together = [p.grad.clone() for p in params] + [x1.grad.clone(), x2.grad.clone()]
    for p in params:
        p.grad = None
    x1.grad = x2.grad = None
    layer(x1).sum().backward()
    (2 * layer(x2).sum()).backward()
    apart = [p.grad for p in params] + [x1.grad, x2.grad]
    for a, b in zip(together, apart):
        torch.testing.assert_close(a, b)


def test_compile_friendly_cubic_form_matches_the_fused_function():
    import kantk
    from kantk.bases.bspline.torch_dense import _cardinal_cubic_linear

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(3, 2)
    x = torch.cat([torch.rand(30, 3) * 5 - 2.5, torch.tensor([[1e30, -1e30, 0.3]])])
    shift, inv_h, _ = layer.basis._uniform_params(torch.float64)
    base = torch.nn.functional.silu(x)
    weight = torch.cat([layer.spline_weight(), layer.base_weight().unsqueeze(-1)], dim=-1)
    torch.testing.assert_close(_cardinal_cubic_linear(x, base, weight, shift, inv_h), layer(x))
    xs = (torch.rand(5, 3) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda inp: _cardinal_cubic_linear(inp, None, layer.spline_weight(), shift, inv_h), (xs,)
    )


@pytest.mark.parametrize("sparse", [False, True])
def test_nan_inputs_give_nan_outputs_not_an_index_error(sparse, kernels):
    import kantk

    layer = kantk.KANLayer(2, 2, base_activation="zero")
    layer.basis.sparse = sparse
    y = layer(torch.tensor([[float("nan"), 0.3], [0.1, 0.2]]))
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1]).all()


def test_sparse_path_backward_twice_with_retain_graph(kernels):
    import kantk

    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 7})
    layer.basis.sparse = True
    x = (torch.rand(10, 3) * 1.8 - 0.9).requires_grad_()
    y = layer(x).square().sum()
    (once,) = torch.autograd.grad(y, x, retain_graph=True)
    (again,) = torch.autograd.grad(y, x)
    torch.testing.assert_close(again, once)
    with torch.no_grad():  # inference takes no graph and gives the same values
        torch.testing.assert_close(layer(x), layer(x.detach().requires_grad_()).detach())


def test_a_float32_layer_converted_to_float64_keeps_the_fast_path():
    """Knots rounded in float32 and then widened still count as uniform (else 6x slower)."""
    import kantk

    layer = kantk.KANLayer(2, 3, basis_kwargs={"grid_size": 50})
    x = torch.rand(64, 2) * 2 - 1
    y32 = layer(x)
    layer = layer.double()
    assert layer.basis.grid.dtype == torch.float64 and layer.basis.is_uniform()
    torch.testing.assert_close(layer(x.double()).float(), y32, rtol=0, atol=1e-6)


@pytest.mark.parametrize("extend", [False, True])
def test_nan_inputs_give_nan_on_a_non_uniform_grid(extend):
    from kantk.bases.bspline import local_bspline_features

    knots = torch.tensor([[-2.0, -1.5, -1.2, -1.0, -0.3, 0.4, 1.0, 1.3, 1.7, 2.0]])
    x = torch.tensor([[float("nan")], [0.1], [float("inf")], [-5.0]])
    feats = local_bspline_features(x, knots, 3, extend=extend)
    assert torch.isnan(feats[0]).all()
    assert torch.isfinite(feats[1]).all()
    if not extend:  # beyond the knots: zero, infinite inputs included
        assert (feats[2:] == 0).all()


@pytest.mark.parametrize("path", ["auto", "torch_dense", "torch_sparse"])
def test_a_first_pass_under_inference_mode_does_not_break_training(path):
    """trainer.predict on a fresh model, then training: the constants cached during the first
    pass must not be inference tensors."""
    import kantk

    model = kantk.KAN([3, 4, 2], seed=0)
    for layer in model.layers:
        layer.basis.path = path
    x = torch.rand(6, 3)
    with torch.inference_mode():
        first = model(x)
    y = model(x)
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    torch.testing.assert_close(y.detach(), first.clone())


def test_cache_keys_tell_tensor_objects_apart():
    """(version, address) alone matched a new grid tensor put at a freed grid's address (version 0
    both): the fast path kept the old grid's spacing, 0.04 off."""
    from kantk.bases.bspline.basis import cache_key

    a = torch.linspace(-1, 1, 12)
    b = a.detach()  # same address, same version counter
    assert a.data_ptr() == b.data_ptr() and cache_key(a) != cache_key(b)
    assert cache_key(a) == cache_key(a)
    key = cache_key(a)
    a.add_(1.0)
    assert cache_key(a) != key
