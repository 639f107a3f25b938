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


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_built_and_loaded_in_inference_mode(basis, tmp_path):
    """The B-spline grid cache keyed on the grid's version counter, which inference tensors lack:
    a model built or loaded under inference_mode (serving) could never run."""
    x = torch.rand(16, 2) * 2 - 1
    reference = kantk.KAN([2, 3, 1], basis=basis, seed=0)
    kantk.save(reference, tmp_path / "m.kantk")
    with torch.inference_mode():
        built = kantk.KAN([2, 3, 1], basis=basis, seed=0)
        loaded = kantk.load(tmp_path / "m.kantk")
        for model in (built, loaded):
            torch.testing.assert_close(model(x), reference(x).detach(), atol=1e-6, rtol=0)
            torch.testing.assert_close(model(x), reference(x).detach(), atol=1e-6, rtol=0)  # twice: no cache


@pytest.mark.parametrize("moved", [False, True], ids=["uniform", "moved-knots"])
def test_an_ensemble_vmapped_over_stacked_buffers(moved):
    """torch.func model ensembling (stack_module_state, vmap over parameters and buffers): the grid
    itself is batched, so its values cannot choose a path (it read grid.data_ptr())."""
    from torch.func import functional_call, stack_module_state

    x = torch.rand(32, 2) * 2 - 1
    models = [kantk.KAN([2, 3, 1], seed=s) for s in range(3)]
    if moved:
        for model in models:
            model.update_grid(torch.rand(64, 2) * 3 - 1)
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    template = models[0]

    def run(p: dict, b: dict, v: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (p, b), (v,))

    ys = torch.func.vmap(run, in_dims=(0, 0, None))(params, buffers, x)
    want = torch.stack([m(x) for m in models]).detach()
    torch.testing.assert_close(ys, want, atol=1e-5, rtol=1e-5)  # float32, different op orders


def test_forward_mode_ad_on_a_uniform_grid():
    """Dual tensors (torch.autograd.forward_ad) reached the fused paths' custom autograd functions,
    which have no jvp; they now take the plain path, as torch.func transforms do."""
    import torch.autograd.forward_ad as fwad

    torch.set_default_dtype(torch.float64)  # the conftest restores float32
    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(8, 2) * 2 - 1
    tangent = torch.rand(8, 2)
    with fwad.dual_level():
        jvp = fwad.unpack_dual(model(fwad.make_dual(x, tangent))).tangent
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).sum(), xg)  # rows are independent: d y_b / d x_b
    torch.testing.assert_close(jvp.squeeze(1), (grad * tangent).sum(1), atol=1e-10, rtol=1e-10)


def test_torch_export_of_a_bspline_model():
    x = torch.rand(16, 2) * 2 - 1
    model = kantk.KAN([2, 3, 1], seed=0)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x), atol=1e-6, rtol=0)
