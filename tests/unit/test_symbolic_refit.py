"""refit_symbolic: Levenberg-Marquardt on the symbolic edges' affine parameters, inside their domains."""

from __future__ import annotations

import math

import pytest
import torch

import kantk
from kantk.bases.base import fit_coefficients
from kantk.symbolic.refit import improve_symbolic, refit_symbolic


def _uniform(n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=g, dtype=torch.float64) * (hi - lo) + lo


def _one_edge(x: torch.Tensor, target) -> kantk.KAN:
    """A float64 [1, 1] KAN whose edge is a spline fitted to ``target(x)``."""
    model = kantk.KAN([1, 1], basis_kwargs={"grid_size": 20}, base_activation="zero", seed=0).to(
        torch.float64
    )
    model.update_grid(x)
    layer = model.layers[0]
    with torch.no_grad():
        layer.scale_sp.fill_(1.0)
        layer.coef.copy_(fit_coefficients(layer.basis(x), target(x)[:, None, :]))
    return model


def _product_model(perturbation: float) -> kantk.KAN:
    """[2, 2, 1], all symbolic: ((x1 + x2)^2 - (x1 - x2)^2) / 4 = x1*x2, constants perturbed."""
    model = kantk.KAN([2, 2, 1], seed=0).to(torch.float64)
    g = torch.Generator().manual_seed(1)
    edges = [
        (0, 0, 0, "x", (1.0, 0.0, 1.0, 0.0)),
        (0, 1, 0, "x", (1.0, 0.0, 1.0, 0.0)),
        (0, 0, 1, "x", (1.0, 0.0, 1.0, 0.0)),
        (0, 1, 1, "x", (1.0, 0.0, -1.0, 0.0)),
        (1, 0, 0, "x^2", (1.0, 0.0, 0.25, 0.0)),
        (1, 1, 0, "x^2", (1.0, 0.0, -0.25, 0.0)),
    ]
    for layer, i, j, name, params in edges:
        kantk.fix_symbolic(model, layer, i, j, name, library="minimal")
        noisy = torch.tensor(params, dtype=torch.float64) + perturbation * torch.randn(
            4, generator=g, dtype=torch.float64
        )
        with torch.no_grad():
            model.layers[layer].symbolic_affine[j, i] = noisy
    return model


def test_refit_reaches_the_exact_constants():
    model = _product_model(0.05)
    x = _uniform(300, -1.0, 1.0).repeat(1, 2)
    x[:, 1] = _uniform(300, -1.0, 1.0, seed=1)[:, 0]
    y = x[:, :1] * x[:, 1:]
    result = refit_symbolic(model, x, y)
    assert result.rmse_before > 1e-2 and result.rmse_after < 1e-12  # from 5% off to round-off
    assert result.parameters == 24
    with torch.no_grad():
        assert float((model(x) - y).abs().max()) < 1e-11
    assert str(kantk.symbolic_formula(model)[0]) == "x1*x2"


def test_refit_whose_optimum_is_on_the_domain_boundary_stays_finite():
    """sqrt(x) on x in [0.002, 1]: the best b is 0, on sqrt's boundary at x = 0 (the inputs are
    >= 0). kantk.fit's LBFGS steps past it there (NaN); the refit reaches the optimum inside."""
    x = _uniform(400, 0.002, 1.0)
    model = _one_edge(x, torch.sqrt)
    assert [r.name for r in kantk.auto_symbolic(model, x, library=["x^2", "sqrt", "log"])] == ["sqrt"]
    result = refit_symbolic(model, x, torch.sqrt(x))
    assert result.rmse_after < 1e-12 < result.rmse_before
    a, b = model.layers[0].symbolic_affine[0, 0, :2].tolist()
    assert b >= 0 and a > 0  # sqrt(a x + b) is real for every x >= 0
    assert torch.isfinite(model(torch.linspace(0.0, 1.1, 111, dtype=torch.float64)[:, None])).all()


def test_refit_does_not_follow_the_data_out_of_the_domain():
    """The data are sqrt(x - 0.001): the exact fit needs sqrt's root at x = 0.001, inside the
    range the inputs (all >= 0) are taken to cover. The refit stops at the boundary instead."""
    x = _uniform(400, 0.002, 1.0)
    target = lambda t: torch.sqrt(t - 0.001)  # noqa: E731
    model = _one_edge(x, target)
    kantk.auto_symbolic(model, x, library=["sqrt"])
    result = refit_symbolic(model, x, target(x))
    assert math.isfinite(result.rmse_after) and result.rmse_after <= result.rmse_before
    assert torch.isfinite(model(torch.linspace(0.0, 1.1, 111, dtype=torch.float64)[:, None])).all()
    loose = _one_edge(x, target)
    kantk.auto_symbolic(loose, x, library=["sqrt"], domain_margin=0.0)
    assert (
        refit_symbolic(loose, x, target(x), domain_margin=0.0).rmse_after < 1e-6
    )  # the samples alone allow it


def test_numeric_edges_stay_as_they_are():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 1], seed=0)
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kantk.fix_symbolic(model, 0, 0, 0, "sin", x, library="minimal")
    coef = model.layers[0].coef.detach().clone()
    y = torch.sin(2 * x[:, :1]) + model.layers[0].activations(x)[:, 0, 1:].detach()
    result = refit_symbolic(model, x, y)
    assert result.parameters == 4 and result.rmse_after <= result.rmse_before
    torch.testing.assert_close(model.layers[0].coef, coef, rtol=0, atol=0)


def test_errors():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([1, 1], seed=0)
    x = torch.linspace(-1.0, 1.0, 50)[:, None]
    with pytest.raises(ValueError, match="no symbolic edge"):
        refit_symbolic(model, x, x)
    kantk.fix_symbolic(model, 0, 0, 0, "log", library="minimal")  # log(x) on [-1, 1]: NaN
    with pytest.raises(ValueError, match="not finite"):
        refit_symbolic(model, x, x)
    with pytest.raises(ValueError, match="shape"):
        refit_symbolic(model, x, torch.zeros(50, 2))


def _fitted_product_model(x: torch.Tensor) -> kantk.KAN:
    """[2, 2, 1] KAN whose numeric edges are fitted to x1*x2 = h0^2 - h1^2, h0 = (x1 + x2)/2,
    h1 = (x1 - x2)/2 (least squares on fine B-splines, no training)."""
    model = kantk.KAN([2, 2, 1], basis_kwargs={"grid_size": 20}, base_activation="zero", seed=0).to(
        torch.float64
    )
    first, second = model.layers
    targets0 = torch.stack([x / 2, torch.stack([x[:, 0], -x[:, 1]], dim=1) / 2], dim=1)  # (n, out, in)
    with torch.no_grad():
        first.scale_sp.fill_(1.0)
        first.coef.copy_(fit_coefficients(first.basis(x), targets0))
        h = first(x)
        second.scale_sp.fill_(1.0)
        second.coef.copy_(
            fit_coefficients(second.basis(h), torch.stack([h[:, 0] ** 2, -(h[:, 1] ** 2)], dim=1)[:, None, :])
        )
    return model


def test_improve_swaps_a_near_quadratic_sine_for_the_square():
    """A sine fitted near its maximum looks like a parabola; on the product of sums only x^2 lets
    the refit reach round-off. improve_symbolic tries the runner-up and keeps it."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=g, dtype=torch.float64) * 2 - 1
    y = x[:, :1] * x[:, 1:]
    model = _fitted_product_model(x)
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [r.name for r in report] == ["x", "x", "x", "x", "x^2", "x^2"]
    kantk.fix_symbolic(model, 1, 0, 0, "sin", x, library="minimal")  # the wrong, near-quadratic, choice
    assert refit_symbolic(model, x, y).rmse_after > 1e-6
    result = improve_symbolic(model, x, y, library="minimal", target_rmse=1e-10)
    assert result.swaps == [(1, 0, 0, "sin", "x^2")]
    assert result.rmse_after < 1e-12
    assert str(kantk.symbolic_formula(model)[0]) == "x1*x2"
    again = improve_symbolic(model, x, y, library="minimal", target_rmse=1e-10)
    assert again.swaps == [] and again.refits == 1  # exact already: nothing to try
