"""What the bases do outside their grid, and BSplineBasis(extrapolate=...)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kantk
from kantk.bases import BSplineBasis

FAR = [1e30, -1e30, 1e4, -1e4, 7.0, -7.0]


def _far_inputs(n_in: int, dtype: torch.dtype) -> torch.Tensor:
    rows = [[v] * n_in for v in FAR if abs(v) < torch.finfo(dtype).max]
    return torch.tensor(rows, dtype=dtype)


@pytest.mark.parametrize("name", kantk.list_bases())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_outside_values_and_gradients_are_finite(name, dtype):
    torch.set_default_dtype(dtype)
    model = kantk.KAN([2, 3, 1], basis=name, seed=0)
    x = _far_inputs(2, dtype).requires_grad_()
    y = model(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bspline_zero_outside_the_extended_grid_and_the_base_branch_carries_on():
    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(2, 3, basis_kwargs={"grid_size": 5, "order": 3})  # extended grid [-2.2, 2.2]
    x = torch.tensor([[2.3, -2.3], [10.0, -50.0], [1e30, -1e30]], requires_grad=True)
    assert torch.equal(layer.basis(x.detach()), torch.zeros(3, 2, 8))
    y = layer(x)
    base = F.silu(x) @ layer.base_weight().t()  # the spline part is 0: only w_b * silu(x) is left
    torch.testing.assert_close(y, base)
    y[:2].sum().backward()
    assert (x.grad[:2].abs() > 0).all()  # no dead zone: the input still gets a gradient


def test_without_a_base_branch_outside_is_a_dead_zone_unless_clamped():
    torch.set_default_dtype(torch.float64)
    x = torch.tensor([[5.0, -5.0]])
    dead = kantk.KANLayer(2, 1, base_activation="zero", basis_kwargs={"grid_size": 5})
    assert torch.equal(dead(x), torch.zeros(1, 1))
    clamped = kantk.KANLayer(2, 1, base_activation="zero", basis_kwargs={"grid_size": 5, "extrapolate": "clamp"})
    with torch.no_grad():
        clamped.coef.copy_(dead.coef)
    edge = torch.tensor([[1.0, -1.0]])
    torch.testing.assert_close(clamped(x), clamped(edge))
    assert clamped(x).abs().item() > 0


@pytest.mark.parametrize("grid", ["uniform", "updated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_holds_the_boundary_values(grid, dtype):
    torch.set_default_dtype(dtype)
    layer = kantk.KANLayer(2, 3, basis_kwargs={"grid_size": 6, "extrapolate": "clamp"})
    with torch.no_grad():
        layer.coef.normal_(generator=torch.Generator().manual_seed(0))
    if grid == "updated":
        layer.update_grid(torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 3 - 1)  # [-1, 2)
        assert not layer.basis.is_uniform()
    lo, hi = layer.basis.grid[:, 3], layer.basis.grid[:, 9]
    spline = lambda inp: layer.basis.linear(inp, layer.spline_weight())  # (batch, out)
    with torch.no_grad():  # the layer adds its base branch of the unclamped input
        far = (hi + 2.0).unsqueeze(0)
        torch.testing.assert_close(layer(far), spline(far) + F.silu(far) @ layer.base_weight().t())
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for far, edge in ((hi + 3.0, hi), (lo - 3.0, lo), (torch.full_like(hi, 1e30), hi), (torch.full_like(lo, -1e30), lo)):
        with torch.no_grad():
            torch.testing.assert_close(spline(far.unsqueeze(0)), spline(edge.unsqueeze(0)), **tol)
    # continuous at the ends of the grid range
    eps = 1e-3 if dtype == torch.float32 else 1e-7
    with torch.no_grad():
        inside, outside = spline((hi - eps).unsqueeze(0)), spline((hi + eps).unsqueeze(0))
    assert (inside - outside).abs().max() < (1e-2 if dtype == torch.float32 else 1e-5)


@pytest.mark.parametrize("grid", ["uniform", "updated"])
def test_clamp_gradients(grid):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], basis_kwargs={"grid_size": 5, "extrapolate": "clamp"}, seed=0)
    if grid == "updated":
        model.update_grid(torch.rand(100, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    x = torch.tensor([[3.0, -40.0], [1e30, -1e30], [0.2, -0.3]], requires_grad=True)
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()
    coef_grad = torch.autograd.grad(model(x[:2].detach()).sum(), model.layers[0].coef)[0]
    assert coef_grad.abs().sum() > 0  # inputs beyond the grid still train the boundary coefficients
    inner = (torch.rand(4, 2, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    torch.autograd.gradcheck(lambda inp: model(inp), (inner,))


def test_clamp_is_saved_loaded_refined_and_updated(tmp_path):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 2, 1], basis_kwargs={"grid_size": 4, "extrapolate": "clamp"}, seed=0)
    assert model.layers[0].basis.config()["extrapolate"] == "clamp"
    x = torch.tensor([[5.0, -9.0], [0.1, 0.2], [-3.0, 30.0]])
    kantk.save(model, tmp_path / "clamped.kantk")
    loaded = kantk.load(tmp_path / "clamped.kantk")
    assert loaded.layers[0].basis.extrapolate == "clamp"
    assert torch.equal(loaded(x), model(x))
    finer = kantk.refine(model, 8)
    assert all(layer.basis.extrapolate == "clamp" for layer in finer.layers)
    model.update_grid(torch.rand(50, 2) * 2 - 1)
    assert torch.isfinite(model(x)).all()


def test_bad_extrapolate_says_what_is_accepted():
    with pytest.raises(ValueError, match="extrapolate must be one of 'zero', 'clamp', got 'linear'"):
        BSplineBasis(2, extrapolate="linear")
    with pytest.raises(ValueError, match="extrapolate"):
        kantk.KAN([2, 1], basis_kwargs={"extrapolate": None})


def test_chebyshev_saturates_and_rbf_fades():
    torch.set_default_dtype(torch.float64)
    cheb = kantk.KANLayer(1, 1, basis="chebyshev", basis_kwargs={"degree": 4}).basis
    far = cheb(torch.tensor([[1e30], [-1e30]]))
    torch.testing.assert_close(far[0, 0], torch.ones(5, dtype=torch.float64))  # T_n(1) = 1
    torch.testing.assert_close(far[1, 0], torch.tensor([1.0, -1, 1, -1, 1], dtype=torch.float64))
    rbf = kantk.KANLayer(1, 1, basis="rbf").basis
    assert torch.equal(rbf(torch.tensor([[50.0]])), torch.zeros(1, 1, 8, dtype=torch.float64))
