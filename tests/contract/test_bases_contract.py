"""One contract every registered basis (built-in or plugin) must meet."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.bases import Basis
from kantk.bases.base import SupportsGridUpdate, SupportsInputRange

BASES = kantk.list_bases()


@pytest.mark.parametrize("name", BASES)
def test_basis_shape_and_finite_far_outside(name):
    layer = kantk.KANLayer(3, 4, basis=name)
    basis = layer.basis
    assert isinstance(basis, Basis)
    x = torch.tensor([[0.0, 0.5, -0.5], [1e4, -1e4, 3.0], [1e30, -1e30, 0.0], [-7.0, 55.0, 1.0]])
    feats = basis(x)
    assert feats.shape == (4, 3, basis.num_functions)
    assert torch.isfinite(feats).all()
    y = layer(x)
    assert y.shape == (4, 4) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", BASES)
def test_every_parameter_gets_a_gradient_and_input_gradients_are_finite(name):
    model = kantk.KAN([3, 4, 2], basis=name, seed=0)
    x = torch.cat([torch.rand(32, 3) * 2 - 1, torch.tensor([[20.0, -15.0, 100.0]])]).requires_grad_()
    model(x).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("moved", [False, True], ids=["as_built", "update_grid"])
def test_an_empty_batch_gives_an_empty_output_like_nn_linear(name, moved):
    """A batch of 0 rows (a data loader's empty last batch, a filter that keeps nothing) gives an
    output of 0 rows and zero gradients, as nn.Linear does; extra leading dimensions too. (Every
    basis but the uniform B-spline once failed reshaping (0, in, n) to (0, -1).)"""
    model = kantk.KAN([2, 3, 1], basis=name, seed=0)
    if moved:
        if not isinstance(model.layers[0].basis, SupportsGridUpdate):
            pytest.skip(f"basis {name!r} has no grid to update")
        model.update_grid(torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    x = torch.rand(0, 2, requires_grad=True)
    y = model(x)
    assert y.shape == (0, 1)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == (0, 2)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert model(torch.rand(3, 0, 2)).shape == (3, 0, 1)
    assert model.layers[0].activations(torch.rand(0, 2)).shape == (0, 3, 2)


@pytest.mark.parametrize("name", BASES)
def test_a_stated_input_range_has_one_finite_interval_per_input_that_follows_the_grid(name):
    basis = kantk.KANLayer(3, 2, basis=name).basis
    if not isinstance(basis, SupportsInputRange):
        pytest.skip(f"basis {name!r} does not say its input range")
    for dtype in (torch.float32, torch.float64):
        lo, hi = basis.range_ends(dtype)
        assert lo.shape == hi.shape == (3,) and lo.dtype == hi.dtype == dtype
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo < hi).all()
    if isinstance(basis, SupportsGridUpdate):
        x = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) * 40 + 50  # in [50, 90]
        basis.update_grid(x, torch.zeros(2, 3, basis.num_functions))
        lo, hi = basis.range_ends(torch.float64)
        assert (lo > 40).all() and (hi > 80).all()  # moved with the grid to the data's range


@pytest.mark.parametrize("name", BASES)
def test_float64(name):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], basis=name, seed=0)
    x = torch.rand(16, 2, dtype=torch.float64, requires_grad=True)
    y = model(x)
    assert y.dtype == torch.float64
    assert all(b.dtype == torch.float64 for b in model.buffers() if b.is_floating_point())
    torch.autograd.gradcheck(lambda inp: model(inp), (x[:4].detach().requires_grad_(),))


@pytest.mark.parametrize("name", BASES)
def test_linear_matches_dense_forward(name):
    layer = kantk.KANLayer(5, 3, basis=name)
    x = torch.rand(64, 5) * 2.4 - 1.2
    w = torch.randn(3, 5, layer.num_functions)
    dense = layer.basis(x).reshape(64, -1) @ w.reshape(3, -1).t()
    torch.testing.assert_close(layer.basis.linear(x, w), dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BASES)
def test_activations_sum_to_forward(name):
    layer = kantk.KANLayer(4, 3, basis=name)
    x = torch.rand(10, 4) * 2 - 1
    acts = layer.activations(x)
    assert acts.shape == (10, 3, 4)
    torch.testing.assert_close(acts.sum(-1), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_load_round_trip_is_exact(name, dtype, tmp_path):
    torch.set_default_dtype(dtype)
    model = kantk.KAN([3, 2, 2], basis=name, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "m.kantk"
    kantk.save(model, path)
    torch.set_default_dtype(torch.float32)
    loaded = kantk.load(path)
    x = torch.rand(20, 3, dtype=dtype) * 3 - 1.5
    assert torch.equal(model(x), loaded(x))
    assert loaded.config() == model.config()
