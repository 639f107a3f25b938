"""Symbolic fits stay in their functions' real domains on the edge's input range plus a margin."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from kantk.symbolic import SymbolicFunction, get_library
from kantk.symbolic.fitting import DOMAIN_MARGIN, fit_affine
from kantk.symbolic.records import Domain

LIB = get_library("default")


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _uniform(n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


def _widened(x: torch.Tensor, margin: float = DOMAIN_MARGIN) -> torch.Tensor:
    """Points across the edge's input range widened by the margin, not across 0 (as the fit does)."""
    lo, hi = float(x.min()), float(x.max())
    w = hi - lo
    lo_e, hi_e = lo - margin * w, hi + margin * w
    if lo >= 0:
        lo_e = max(lo_e, 1e-12)
    if hi <= 0:
        hi_e = min(hi_e, -1e-12)
    return torch.linspace(lo_e, hi_e, 2001, dtype=torch.float64)


@pytest.mark.parametrize(
    ("domain", "lo", "hi", "lo_open", "expected"),
    [
        (Domain(0.0, low_closed=True), 0.0, 2.0, False, True),  # sqrt on [0, 2]
        (Domain(0.0, low_closed=True), -0.1, 2.0, False, False),
        (Domain(0.0), 0.0, 2.0, True, True),  # log on (0, 2]
        (Domain(0.0), 0.0, 2.0, False, False),  # log on [0, 2]
        (Domain(pole=0.0), -1.0, 1.0, False, False),  # 1/x across its pole
        (Domain(pole=0.0), 0.5, 1.0, False, True),
        (Domain(pole=0.0), 0.0, 1.0, True, True),
        (Domain(pole=math.pi / 2, pole_period=math.pi), -1.0, 1.0, False, True),  # tan
        (Domain(pole=math.pi / 2, pole_period=math.pi), 1.0, 2.0, False, False),
        (Domain(pole=math.pi / 2, pole_period=math.pi), 2.0, 4.0, False, True),
        (Domain(-1.0, 1.0, True, True), -1.0, 1.0, False, True),  # arcsin
        (Domain(-1.0, 1.0, True, True), -1.01, 0.0, False, False),
        (Domain(-1.0, 1.0), -0.5, 1.0, False, False),  # arctanh at 1
    ],
)
def test_domain_admits_intervals(domain, lo, hi, lo_open, expected):
    assert bool(domain.admits(_t(lo), _t(hi), lo_open, False)) is expected


def test_domain_validation():
    with pytest.raises(ValueError, match="low < high"):
        Domain(1.0, 0.0)
    with pytest.raises(ValueError, match="pole_period"):
        Domain(pole_period=1.0)
    with pytest.raises(TypeError, match="domain"):
        SymbolicFunction("f", torch.sin, torch.sin, 1, domain=(0, 1))  # type: ignore[arg-type]


def test_builtins_declare_their_domains():
    assert LIB["sqrt"].domain == Domain(0.0, low_closed=True)
    assert LIB["log"].domain == Domain(0.0)
    assert LIB["1/x^3"].domain == Domain(pole=0.0)
    assert LIB["arcsin"].domain == LIB["arccos"].domain == Domain(-1.0, 1.0, True, True)
    assert LIB["sin"].domain is None and LIB["x^2"].domain is None


def test_a_root_just_left_of_the_samples_is_rejected():
    """II.35.18's failure: sqrt(18.7 n0 - 0.008) fits the training samples (all above 4e-4) but
    is NaN for the smaller n0 a test set holds. The fit must stay real down to 0 (the inputs are
    all >= 0, taken to stay so) and 10% of the range above the largest."""
    x = _uniform(500, 0.0015, 1.0)
    y = torch.sqrt(x - 0.001)
    raw = fit_affine(x, y, [LIB["sqrt"]], domain_margin=0)
    a, b = raw.params[0, 0], raw.params[0, 1]
    assert float(raw.r2[0]) > 1 - 1e-5  # the samples alone allow the (nearly) exact, bad, fit
    assert torch.isnan(LIB["sqrt"].torch_fn(a * _t(0.0) + b)).all()  # NaN at 0, as in II.35.18
    fit = fit_affine(x, y, [LIB["sqrt"], LIB["x^0.5"], LIB["log"], LIB["1/sqrt(x)"]])
    for f, (a, b, _c, _d), r2 in zip(
        [LIB["sqrt"], LIB["x^0.5"], LIB["log"], LIB["1/sqrt(x)"]], fit.params, fit.r2
    ):
        assert math.isfinite(float(r2)), f.name  # an admissible (a, b) exists: reparametrised
        assert torch.isfinite(f.torch_fn(a * _widened(x) + b)).all(), f.name
    assert float(fit.r2[0]) > 0.99  # still a good fit, just not through the root


def test_sqrt_and_log_of_a_positive_input_stay_exact():
    """Inputs in (0, 1]: the margin stops at 0, so sqrt(x) and log(x) themselves are admissible."""
    x = _uniform(500, 0.0, 1.0).clamp_min(1e-3)
    for name in ("sqrt", "log", "1/x"):
        y = 2 * LIB[name].torch_fn(x) + 1
        fit = fit_affine(x, y, [LIB[name]])
        assert float(fit.r2[0]) > 1 - 1e-9, name


def test_a_pole_between_the_samples_is_rejected():
    """1/x on samples on both sides of 0 (none near it): the exact fit has its pole inside the
    range, where the model would be infinite; it must not be accepted."""
    x = torch.cat([_uniform(200, -1.0, -0.1), _uniform(200, 0.1, 1.0, seed=1)])
    y = 1 / x
    fit = fit_affine(x, y, [LIB["1/x"], LIB["1/x^2"], LIB["tan"]])
    for f, (a, b, _c, _d), r2 in zip([LIB["1/x"], LIB["1/x^2"], LIB["tan"]], fit.params, fit.r2):
        if math.isfinite(float(r2)):
            z = a * _widened(x) + b
            assert f.domain is not None and bool(f.domain.admits(z.min(), z.max())), f.name
    assert float(fit.r2[0]) < 0.99  # no exact fit without crossing the pole


def test_log_and_arcsin_stay_inside_on_signed_inputs():
    x = _uniform(400, -1.0, 1.0)
    for name, y in (
        ("log", torch.log(x + 1.02)),
        ("arcsin", torch.arcsin(0.99 * x)),
        ("arctanh", torch.atanh(0.99 * x)),
    ):
        fit = fit_affine(x, y, [LIB[name]])
        a, b = fit.params[0, 0], fit.params[0, 1]
        assert math.isfinite(float(fit.r2[0])), name
        assert torch.isfinite(LIB[name].torch_fn(a * _widened(x) + b)).all(), name


def test_margin_zero_and_bad_margin():
    x = _uniform(300, -1.0, 1.0)
    y = torch.log(x + 1.02)
    assert float(fit_affine(x, y, [LIB["log"]], domain_margin=0).r2[0]) > 1 - 1e-9
    assert float(fit_affine(x, y, [LIB["log"]]).r2[0]) < 1 - 1e-6
    with pytest.raises(ValueError, match="domain_margin"):
        fit_affine(x, y, [LIB["log"]], domain_margin=-0.1)


def test_a_custom_function_without_domain_is_checked_at_the_ends_of_the_range():
    root = SymbolicFunction("root", torch.sqrt, lambda z: z**0.5, 2)  # no safe form, no domain
    x = _uniform(500, 0.0015, 1.0) - 0.5  # signed inputs: the margin extends below -0.5
    y = torch.sqrt(x + 0.4985)
    fit = fit_affine(x, y, [root])
    a, b = fit.params[0, 0], fit.params[0, 1]
    assert math.isfinite(float(fit.r2[0]))
    assert torch.isfinite(torch.sqrt(a * _widened(x) + b)).all()


def _root_model(x_train: torch.Tensor, root: float):
    """A float64 [1, 1] KAN whose edge is a spline fitted to sqrt(x - root) on ``x_train`` (n, 1)."""
    import kantk
    from kantk.bases.base import fit_coefficients

    model = kantk.KAN([1, 1], basis_kwargs={"grid_size": 20}, base_activation="zero", seed=0)
    model = model.to(torch.float64)
    model.update_grid(x_train)
    layer = model.layers[0]
    with torch.no_grad():
        layer.scale_sp.fill_(1.0)
        layer.coef.copy_(fit_coefficients(layer.basis(x_train), torch.sqrt(x_train - root)[:, None, :]))
    return model


def test_auto_symbolic_picks_a_candidate_valid_beyond_the_training_inputs():
    """The training inputs start at 0.002 and the edge is sqrt(x - 0.001); test inputs reach 0 (as
    II.35.18's n0 in [0, 1]). Fitted on the samples only, the sqrt is NaN below 0.001; with the
    margin the symbolic edge is real on [0, 1.1]."""
    import kantk

    x_train = _uniform(400, 0.002, 1.0)[:, None]
    x_wide = torch.linspace(0.0, 1.1, 111, dtype=torch.float64)[:, None]
    library = ["x^2", "sqrt", "log", "1/x"]
    raw = _root_model(x_train, 0.001)
    assert [r.name for r in kantk.auto_symbolic(raw, x_train, library=library, domain_margin=0)] == ["sqrt"]
    assert torch.isnan(raw(x_wide)).any()  # the failure this guards against
    model = _root_model(x_train, 0.001)
    report = kantk.auto_symbolic(model, x_train, library=library)
    assert [r.status for r in report] == ["fixed"] and report[0].r2 > 0.99
    assert torch.isfinite(model(x_wide)).all()
    for name in library:  # every candidate suggest_symbolic offers is real there too
        kantk.fix_symbolic(model, 0, 0, 0, name, x_train, library=library)
        assert torch.isfinite(model(x_wide)).all(), name


def test_refit_after_auto_symbolic_starts_and_ends_finite():
    """A refit (kantk.fit of the affine parameters) starts from a symbolic model that is finite on
    the data and on the widened range, and ends finite, even when its optimum sits on the
    domain's boundary (sqrt(x) itself), where an LBFGS step may overshoot out of the domain (the
    NaN guard then restores, with a warning; keeping LBFGS inside is the training's job)."""
    import kantk

    x_train = _uniform(400, 0.002, 1.0)[:, None]
    model = _root_model(x_train, 0.0)
    kantk.auto_symbolic(model, x_train, library=["x^2", "sqrt", "log"])
    x_test = _uniform(100, 0.002, 1.0, seed=1)[:, None]
    assert torch.isfinite(model(torch.linspace(0.0, 1.1, 111, dtype=torch.float64)[:, None])).all()
    data = {
        "train_input": x_train,
        "train_label": torch.sqrt(x_train),
        "test_input": x_test,
        "test_label": torch.sqrt(x_test),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN guard may speak (a step past the boundary)
        kantk.fit(model, data, steps=5, progress=False, seed=0)
    assert torch.isfinite(model(x_train)).all() and torch.isfinite(model(x_test)).all()
    with torch.no_grad():
        assert float(((model(x_test) - torch.sqrt(x_test)) ** 2).mean().sqrt()) < 1e-3


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 1.0), (0.002, 1.0), (-3.0, -0.5), (10.0, 40.0), (0.0, 2.0)])
def test_every_accepted_candidate_is_finite_on_the_widened_range(lo, hi):
    """Property over the whole default library: whatever the data, a candidate the fit accepts
    computes finite values on a dense grid of the edge's input range plus the margin (not across
    0), with the exact function the model runs. Five edges of different shapes per range."""
    functions = [fn for fn in LIB.functions if fn.complexity > 0]
    x = torch.stack([_uniform(300, lo, hi, seed=s) for s in range(5)])
    t = (x - lo) / (hi - lo)
    y = torch.stack(
        [t[0] ** 2, torch.sqrt(t[1] + 0.01), torch.sin(3 * t[2]), 1 / (t[3] + 0.2), torch.exp(-t[4])]
    )
    fit = fit_affine(x, y, functions)
    for k, fn in enumerate(functions):
        for e in range(5):
            if not math.isfinite(float(fit.r2[k, e])):
                continue
            a, b = fit.params[k, e, 0], fit.params[k, e, 1]
            dense = _widened(x[e])
            assert torch.isfinite(fn.torch_fn(a * dense + b)).all(), (fn.name, e)
