"""What the bases do outside their grid, and BSplineBasis(extrapolate=...)."""

from __future__ import annotations

import numpy as np
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
    clamped = kantk.KANLayer(
        2, 1, base_activation="zero", basis_kwargs={"grid_size": 5, "extrapolate": "clamp"}
    )
    with torch.no_grad():
        clamped.coef.copy_(dead.coef)
    edge = torch.tensor([[1.0, -1.0]])
    torch.testing.assert_close(clamped(x), clamped(edge))
    assert clamped(x).abs().item() > 0


def _random_layer(extrapolate: str, grid: str) -> kantk.KANLayer:
    """A [2 -> 3] layer, G = 6, random coefficients; ``grid="updated"``: knots moved to [-1, 2)."""
    layer = kantk.KANLayer(2, 3, basis_kwargs={"grid_size": 6, "extrapolate": extrapolate})
    with torch.no_grad():
        layer.coef.normal_(generator=torch.Generator().manual_seed(0))
    if grid == "updated":
        layer.update_grid(torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 3 - 1)
        assert not layer.basis.is_uniform()
    return layer


@pytest.mark.parametrize("grid", ["uniform", "updated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_holds_the_boundary_values(grid, dtype):
    torch.set_default_dtype(dtype)
    layer = _random_layer("clamp", grid)
    lo, hi = layer.basis.grid[:, 3], layer.basis.grid[:, 9]

    def spline(inp):
        return layer.basis.linear(inp, layer.spline_weight())  # (batch, out)

    with torch.no_grad():  # the layer adds its base branch of the unclamped input
        far = (hi + 2.0).unsqueeze(0)
        torch.testing.assert_close(layer(far), spline(far) + F.silu(far) @ layer.base_weight().t())
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for far, edge in (
        (hi + 3.0, hi),
        (lo - 3.0, lo),
        (torch.full_like(hi, 1e30), hi),
        (torch.full_like(lo, -1e30), lo),
    ):
        with torch.no_grad():
            torch.testing.assert_close(spline(far.unsqueeze(0)), spline(edge.unsqueeze(0)), **tol)
    # continuous at the ends of the grid range
    eps = 1e-3 if dtype == torch.float32 else 1e-7
    with torch.no_grad():
        inside, outside = spline((hi - eps).unsqueeze(0)), spline((hi + eps).unsqueeze(0))
    assert (inside - outside).abs().max() < (1e-2 if dtype == torch.float32 else 1e-5)


CPU_PATHS = ["torch_knots", "native_dense", "native_sparse", "torch_dense", "torch_sparse", "torch_compiled"]


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_holds_the_top_boundary_value_on_every_path(order, dtype):
    """At and beyond the top of the grid range every path gives the last interval's value. (The
    uniform paths once located the clamped top end, one ulp inside, by x * inv_h + shift, which
    rounds onto the last knot: the half-open interval past it, where an order-0 spline is 0.)"""
    torch.set_default_dtype(dtype)
    model = kantk.KAN(
        [1, 2],
        basis_kwargs={"grid_size": 3, "order": order, "extrapolate": "clamp"},
        base_activation="zero",
        seed=0,
    )
    basis = model.layers[0].basis
    hi = float(basis.grid[0, 3 + order])
    h = (hi - float(basis.grid[0, order])) / 3
    x = torch.tensor([[hi - 0.25 * h], [hi], [hi + 0.5], [1e30]])
    for path in CPU_PATHS:
        basis.path = path
        with torch.no_grad():
            y = model(x)
        # order 0 is constant on the last interval: all four rows equal exactly; higher orders
        # continue to the end value, 0.25 h in from it they differ
        tail = y[1:] if order else y
        torch.testing.assert_close(tail, tail[:1].expand_as(tail), rtol=0, atol=0, msg=path)
        if order == 0:
            assert (y.abs() > 0).all(), path


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
    torch.autograd.gradgradcheck(lambda inp: model(inp), (inner,))  # through _ClampInside too


def test_range_ends_are_the_grid_range():
    basis = BSplineBasis(2, grid_size=4, order=2)
    lo, hi = basis.range_ends(torch.float64)
    assert lo.dtype == hi.dtype == torch.float64
    assert lo.tolist() == [-1.0, -1.0] and hi.tolist() == [1.0, 1.0]  # the default grid_range
    basis.update_grid(torch.tensor([[0.5, -3.0], [2.0, 1.0], [1.0, 0.0]]), torch.zeros(1, 2, 6))
    lo, hi = basis.range_ends(torch.float32)
    torch.testing.assert_close(lo, basis.grid[:, 2].float())
    torch.testing.assert_close(hi, basis.grid[:, 6].float())
    assert lo.tolist() == [0.5, -3.0] and hi.tolist() == [2.0, 1.0]  # the data's range


@pytest.mark.parametrize("path", CPU_PATHS)
def test_clamp_gives_the_inside_derivative_at_both_ends(path):
    # the top end was clamped to the value one ulp inside, with gradient 0 at exactly the end (the
    # bottom end gave the one-sided derivative): a Neumann condition there saw a flat spline
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN(
        [1, 1], base_activation="zero", basis_kwargs={"grid_size": 5, "extrapolate": "clamp"}, seed=0
    )
    model.layers[0].basis.path = path
    for end in (-1.0, 1.0):
        x = torch.tensor([[end], [end * (1 - 1e-9)], [end * 1.5]], requires_grad=True)
        (grad,) = torch.autograd.grad(model(x).sum(), x)
        assert grad[0, 0] != 0 and float(grad[0, 0]) == pytest.approx(float(grad[1, 0]), rel=1e-6), end
        assert grad[2, 0] == 0  # beyond the end: held
    # forward mode too (x carries no requires_grad there): the plain clamp gave 0 at the upper end
    for end in (-1.0, 1.0):
        x = torch.tensor([[end]])
        forward = torch.func.jacfwd(lambda v: model(v).sum())(x)
        backward = torch.func.jacrev(lambda v: model(v).sum())(x)
        assert forward[0, 0] != 0 and float(forward[0, 0]) == pytest.approx(float(backward[0, 0]), rel=1e-9)


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


def _extend_layer(grid: str, path: str) -> kantk.KANLayer:
    layer = _random_layer("extend", grid)
    layer.basis.sparse = path == "sparse"
    return layer


def _piece(layer: kantk.KANLayer, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each edge's cubic piece on [a, b] (per input), fitted through 4 points inside, at x.

    Returns (in, out): the spline of input p towards output q.
    """
    pts = a + (b - a) * torch.linspace(0.1, 0.9, 4, dtype=torch.float64).unsqueeze(-1)  # (4, in)
    out = []
    for p in range(2):
        w = layer.spline_weight().detach().clone()
        w[:, 1 - p] = 0  # only input p's edges
        with torch.no_grad():
            vals = layer.basis.linear(pts, w)  # (4, out)
        out.append(
            [np.polyval(np.polyfit(pts[:, p].numpy(), vals[:, q].numpy(), 3), x[p].item()) for q in range(3)]
        )
    return torch.tensor(out)


@pytest.mark.parametrize("grid", ["uniform", "updated"])
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_extend_continues_the_outer_pieces(grid, path):
    torch.set_default_dtype(torch.float64)
    layer = _extend_layer(grid, path)
    zero = kantk.KANLayer(2, 3, basis_kwargs={"grid_size": 6})
    zero.load_state_dict(layer.state_dict())
    g, k, G = layer.basis.grid, 3, 6
    lo, hi = g[:, k], g[:, G + k]
    inside = lo + (hi - lo) * torch.rand(50, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # inside the grid range: exactly the fading splines' values
        torch.testing.assert_close(layer(inside), zero(inside), rtol=1e-12, atol=1e-12)
    h_hi, h_lo = g[:, G + k] - g[:, G + k - 1], g[:, k + 1] - g[:, k]
    for x, a, b in ((hi + 1.5 * h_hi, g[:, G + k - 1], hi), (lo - 2.5 * h_lo, lo, g[:, k + 1])):
        expected = _piece(layer, a, b, x)  # (in, out)
        for p in range(2):
            w = layer.spline_weight().clone()
            w[:, 1 - p] = 0
            with torch.no_grad():
                got = layer.basis.linear(x.unsqueeze(0), w)[0]
            torch.testing.assert_close(got, expected[p], rtol=1e-8, atol=1e-8)
    # beyond the outermost knots the value holds, with zero input gradient, for any input
    far = torch.tensor([[1e30, -1e30], [50.0, -50.0]], requires_grad=True)
    edge = torch.stack([g[0, -1], g[1, 0]]).expand(2, 2)  # input 0's last knot, input 1's first
    y = layer.basis.linear(far, layer.spline_weight())
    torch.testing.assert_close(y, layer.basis.linear(edge, layer.spline_weight()).expand_as(y).detach())
    (grad,) = torch.autograd.grad(y.sum(), far)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("grid", ["uniform", "updated"])
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_extend_gradients_and_double_backward(grid, path):
    torch.set_default_dtype(torch.float64)
    layer = _extend_layer(grid, path)
    basis = layer.basis
    g = basis.grid
    # inside, on the extension intervals either side, and beyond the outermost knots
    x = torch.stack(
        [g[:, 4] + 0.01, g[:, -2] + 0.013, g[:, 1] + 0.02, g[:, -1] + 1.0, g[:, 0] - 2.0, g[:, 7] - 0.01]
    )
    x = x.detach().requires_grad_()
    from kantk.bases import EdgeWeights

    w = layer.spline_weight().detach().requires_grad_()
    scale = torch.randn(3, 2, requires_grad=True)
    wb = torch.randn(3, 2, requires_grad=True)

    def fused(inp, coef, sc, base_weight):
        return basis.fused_edges(inp, EdgeWeights(coef, sc, base_weight, "silu"))

    assert torch.autograd.gradcheck(fused, (x, w, scale, wb))
    assert torch.autograd.gradgradcheck(fused, (x, w, scale, wb))


def test_extend_is_saved_loaded_refined_and_updated(tmp_path):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 2, 1], basis_kwargs={"grid_size": 4, "extrapolate": "extend"}, seed=0)
    x = torch.tensor([[1.3, -1.7], [0.1, 0.2], [-3.0, 30.0]])
    kantk.save(model, tmp_path / "extended.kantk")
    loaded = kantk.load(tmp_path / "extended.kantk")
    assert loaded.layers[0].basis.extrapolate == "extend"
    assert torch.equal(loaded(x), model(x))
    finer = kantk.refine(model, 8)  # nested: knot insertion keeps the pieces, so outside too
    assert all(layer.basis.extrapolate == "extend" for layer in finer.layers)
    torch.testing.assert_close(finer(x[:2]), model(x[:2]), rtol=1e-10, atol=1e-10)
    model.update_grid(torch.rand(50, 2) * 2 - 1)
    assert torch.isfinite(model(x)).all()


def test_bad_extrapolate_says_what_is_accepted():
    with pytest.raises(
        ValueError, match="extrapolate must be one of 'zero', 'clamp', 'extend', got 'linear'"
    ):
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
