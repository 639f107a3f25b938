"""torch.func transforms (vmap, jacrev, hessian) through every layer path equal autograd's results
(physics-informed losses written with torch.func)."""

from __future__ import annotations

import pytest
import torch
from triton_env import interpreter_problem

import kantk
from kantk.bases.bspline import Case, Path, choose

PATHS = [
    "auto",
    "native_dense",
    "native_sparse",
    "torch_dense",
    "torch_sparse",
    "torch_knots",
    "torch_compiled",
    "triton",
]


def _model(basis: str, kwargs: dict, path: str | None) -> kantk.KAN:
    # float64 from the start, so that the knots are exact: under torch.func the de Boor path runs,
    # and the autograd reference takes the uniform closed form (equal up to float64 round-off)
    torch.set_default_dtype(torch.float64)  # the conftest restores float32
    model = kantk.KAN([3, 4, 2], basis=basis, basis_kwargs=kwargs, seed=0)
    if path is not None:
        for layer in model.layers:
            layer.basis.path = path
    return model


def _check(model: kantk.KAN, x: torch.Tensor) -> None:
    def f(v: torch.Tensor) -> torch.Tensor:
        return model(v.unsqueeze(0)).squeeze(0)  # (3,) -> (2,)

    jac = torch.func.vmap(torch.func.jacrev(f))(x)  # (batch, 2, 3)
    # rows are independent: d out[:, j].sum() / d x is row b's Jacobian row j, one backward per
    # output (the Triton interpreter runs the forced triton paths here, seconds per pass)
    xr = x.clone().requires_grad_()
    y = model(xr)
    ref = torch.stack(
        [torch.autograd.grad(y[:, j].sum(), xr, retain_graph=True)[0] for j in range(y.shape[1])], dim=1
    )
    torch.testing.assert_close(jac, ref, rtol=1e-9, atol=1e-12)
    hess = torch.func.hessian(lambda v: f(v).sum())(x[1])
    ref_h = torch.autograd.functional.hessian(lambda v: f(v).sum(), x[1])
    torch.testing.assert_close(hess, ref_h, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "kwargs", [{}, {"grid_size": 80}, {"extrapolate": "clamp"}, {"extrapolate": "extend"}]
)
def test_jacrev_and_hessian_equal_autograd_on_every_bspline_path(path, kwargs):
    if path == "triton" and (problem := interpreter_problem()):
        pytest.skip(problem)
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2.6 - 1.3
    _check(_model("bspline", kwargs, path), x)


def test_jacrev_on_moved_knots_and_other_bases():
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    moved = _model("bspline", {}, None)
    moved.update_grid(torch.randn(100, 3, dtype=torch.float64) ** 3)
    _check(moved, x)
    for basis in ("chebyshev", "rbf"):
        _check(_model(basis, {}, None), x)


def test_the_chooser_takes_the_plain_path_under_torch_func():
    for force in ("auto", "native_sparse", "triton"):
        case = Case("cpu", torch.float64, uniform=True, order=3, native=True, force=force, functorch=True)
        assert choose(case) is Path.TORCH_KNOTS
    assert (
        choose(Case("cuda", torch.float32, uniform=True, order=3, triton=True, functorch=True))
        is Path.TORCH_KNOTS
    )


def test_training_with_a_torch_func_loss_changes_nothing_else():
    """A PINN-style residual (d2u/dx2 by torch.func) trains and leaves the ordinary path intact."""
    torch.manual_seed(0)
    model = kantk.KAN([1, 4, 1], seed=0).double()
    x = torch.linspace(-0.9, 0.9, 32, dtype=torch.float64).unsqueeze(-1)
    before = model(x).detach()
    u = lambda v: model(v.reshape(1, 1)).reshape(())  # noqa: E731
    second = torch.func.vmap(torch.func.hessian(u))(x.squeeze(-1))  # (32,)
    loss = (second + torch.sin(x.squeeze(-1))).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(model(x).detach(), before)


def test_jacrev_with_the_triton_sparse_path_forced():
    """``triton_sparse`` is CUDA-only (a plain CPU forward cannot run it), but under torch.func the
    chooser takes the de Boor path: the result equals autograd's on the same model, path auto."""
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    forced = _model("bspline", {}, "triton_sparse")
    auto = _model("bspline", {}, None)

    def f(model: kantk.KAN, v: torch.Tensor) -> torch.Tensor:
        return model(v.unsqueeze(0)).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(lambda v: f(forced, v)))(x)
    ref = torch.stack([torch.autograd.functional.jacobian(lambda v: f(auto, v), xi) for xi in x])
    torch.testing.assert_close(jac, ref, rtol=1e-9, atol=1e-12)


def test_jacrev_of_a_float32_batch():
    """Without vmap, on a float32 model: d out[b] / d x[b'] for the whole batch (zero off the diagonal)."""
    model = kantk.KAN([3, 4, 2], seed=0)
    x = torch.rand(5, 3, generator=torch.Generator().manual_seed(4)) * 2 - 1
    torch.testing.assert_close(torch.func.jacrev(model)(x), torch.autograd.functional.jacobian(model, x))
