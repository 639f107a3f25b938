"""suggest_symbolic, fix_symbolic, unfix_symbolic and auto_symbolic."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.bases.base import fit_coefficients


def _model_with_edges(basis: str, functions, seed: int = 0, noise: float = 0.0, n: int = 400):
    """A float64 [2, 1] KAN whose two edges are fitted (least squares) to ``functions``.

    Returns the model and the inputs (n, 2) in [-1, 1].
    """
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    model = kantk.KAN([2, 1], basis=basis, basis_kwargs=_fine(basis), base_activation="zero", seed=seed)
    layer = model.layers[0]
    target = torch.stack([f(x[:, p]) for p, f in enumerate(functions)], dim=-1)[:, None, :]  # (n, 1, 2)
    target = target + noise * torch.randn(target.shape, generator=g)
    with torch.no_grad():
        layer.scale_sp.fill_(1.0)
        layer.coef.copy_(fit_coefficients(layer.basis(x), target))
    return model, x


def _fine(basis: str) -> dict:
    return {"bspline": {"grid_size": 20}, "chebyshev": {"degree": 12}, "rbf": {"num_centers": 24}}[basis]


def test_suggest_ranks_the_true_function_first():
    model, x = _model_with_edges("bspline", [lambda t: torch.sin(torch.pi * t), lambda t: t**2])
    top = kantk.suggest_symbolic(model, 0, 0, 0, x, library="minimal", topk=3)
    assert len(top) == 3 and top[0].name == "sin" and top[0].r2 > 0.9999
    assert top[0].score <= top[1].score
    assert kantk.suggest_symbolic(model, 0, 1, 0, x, library="minimal")[0].name == "x^2"


def test_zero_does_not_outrank_sin_on_a_noisy_sine_edge():
    model, x = _model_with_edges("bspline", [lambda t: torch.sin(torch.pi * t), lambda t: t], noise=0.25)
    ranked = kantk.suggest_symbolic(model, 0, 0, 0, x, library="default", topk=29)
    names = [c.name for c in ranked]
    assert names[0] == "sin"
    assert "0" not in names  # not negligible: the constant is no candidate at all
    assert 0.8 < ranked[0].r2 < 0.999  # pykan's rule would have picked "0" (score 0) here
    assert 0.8 * 2 + 0.2 * torch.log2(torch.tensor(1e-5 + 1 - ranked[0].r2)) > 0


def test_zero_is_chosen_for_a_negligible_edge():
    model, x = _model_with_edges("bspline", [lambda t: torch.sin(torch.pi * t), lambda t: 1e-4 * t + 0.3])
    ranked = kantk.suggest_symbolic(model, 0, 1, 0, x, library="default")
    assert ranked[0].name == "0"
    assert ranked[0].params[3] == pytest.approx(0.3, abs=1e-3)  # the edge's constant is kept in d
    report = kantk.auto_symbolic(model, x, library="default")
    assert [(r.i, r.name, r.status) for r in report] == [(0, "sin", "fixed"), (1, "0", "negligible")]


def test_fix_and_unfix():
    model, x = _model_with_edges("bspline", [lambda t: torch.exp(t), lambda t: t**2])
    before = model(x)
    result = kantk.fix_symbolic(model, 0, 0, 0, "exp", x)
    assert result.fixed and result.r2 > 0.9999 and result.params[0] == pytest.approx(1.0, abs=1e-3)
    layer = model.layers[0]
    assert layer.mask[0, 0] == 0 and layer.symbolic_mask[0, 0] == 1 and layer.symbolic_names[0][0] == "exp"
    torch.testing.assert_close(model(x), before, atol=1e-3, rtol=0)
    kantk.unfix_symbolic(model, 0, 0, 0)
    torch.testing.assert_close(model(x), before)
    plain = kantk.fix_symbolic(model, 0, 1, 0, "sin")  # no data: (1, 0, 1, 0)
    assert plain.r2 is None and plain.params == (1.0, 0.0, 1.0, 0.0)
    torch.testing.assert_close(layer.symbolic_affine[0, 1], torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_convention_i_is_the_input_node_j_the_output_node():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([3, 2], seed=0)
    kantk.fix_symbolic(model, 0, 2, 1, "sin")
    assert model.layers[0].symbolic_names[1][2] == "sin"


def test_errors_name_what_is_valid():
    model, x = _model_with_edges("bspline", [torch.sin, torch.cos])
    with pytest.raises(IndexError, match=r"layer must be an int in \[0, 0\]"):
        kantk.fix_symbolic(model, 1, 0, 0, "sin")
    with pytest.raises(IndexError, match=r"i \(input node\) must be in \[0, 1\]"):
        kantk.fix_symbolic(model, 0, 2, 0, "sin")
    with pytest.raises(kantk.UnknownComponentError, match="its functions: x, x\\^2"):
        kantk.fix_symbolic(model, 0, 0, 0, "sinh", library="minimal")
    with pytest.raises(kantk.UnknownComponentError, match="known symbolic library names: default, minimal"):
        kantk.fix_symbolic(model, 0, 0, 0, "sin", library="nope")
    with pytest.raises(ValueError, match="not symbolic"):
        kantk.unfix_symbolic(model, 0, 0, 0)
    with torch.no_grad():
        model.layers[0].mask[0, 1] = 0
    with pytest.raises(ValueError, match="pruned"):
        kantk.suggest_symbolic(model, 0, 1, 0, x)
    with pytest.raises(ValueError, match="real domain"):
        kantk.fix_symbolic(
            model,
            0,
            0,
            0,
            "nowhere",
            x,
            library=[kantk.SymbolicFunction("nowhere", lambda z: z * float("nan"), lambda z: z, 1)],
        )


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_auto_symbolic_works_for_every_basis(basis):
    model, x = _model_with_edges(basis, [lambda t: torch.sin(torch.pi * t), lambda t: t**2])
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [(r.layer, r.i, r.j, r.name, r.fixed) for r in report] == [
        (0, 0, 0, "sin", True),
        (0, 1, 0, "x^2", True),
    ]
    assert all(r.r2 > 0.999 for r in report)
    y = torch.sin(torch.pi * x[:, 0]) + x[:, 1] ** 2
    torch.testing.assert_close(model(x)[:, 0], y, atol=2e-2, rtol=0)
    assert kantk.auto_symbolic(model, x) == []  # nothing numeric is left


def test_auto_symbolic_keeps_poor_fits_numeric_and_reports_them():
    model, x = _model_with_edges(
        "bspline", [lambda t: torch.sin(torch.pi * t), lambda t: torch.sin(9 * t**3)]
    )
    report = kantk.auto_symbolic(model, x, library=["x", "x^2"], r2_threshold=0.9)
    kept = [r for r in report if not r.fixed]
    assert len(kept) >= 1 and kept[0].status == "below_threshold" and kept[0].r2 < 0.9
    assert model.layers[0].mask[0, kept[0].i] == 1
    with pytest.raises(ValueError, match="still numeric"):
        kantk.symbolic_formula(model, numeric="raise")
    with pytest.warns(UserWarning, match=f"f_0_{kept[0].i}_0"):  # default: named, as pykan returns one
        (partial,) = kantk.symbolic_formula(model)
    assert f"f_0_{kept[0].i}_0(x{kept[0].i + 1})" in str(partial)


def test_float32_models_work_too():
    model, x = _model_with_edges("chebyshev", [lambda t: torch.sin(torch.pi * t), lambda t: t**2])
    model = model.float()
    x = x.float()
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [r.name for r in report] == ["sin", "x^2"]
    assert model.layers[0].symbolic_affine.dtype == torch.float32
    (expr,) = kantk.symbolic_formula(model, digits=None)
    got = kantk.formula_to_callable(expr, ["x1", "x2"], backend="torch")(x)
    torch.testing.assert_close(got, model(x)[:, 0], rtol=1e-4, atol=1e-4)


def _near_linear_layer(wiggle: float):
    """[2, 1] KAN: edge 0 is sqrt(x + 5), curved by 7e-4 of its variance (1 - r^2 of a line);
    edge 1 a sine plus ``wiggle * sin(9 x)``, which no library function fits: a misfit of about
    ``wiggle**2`` of its variance, which sets how precisely the layer is fitted."""
    return _model_with_edges(
        "bspline",
        [lambda t: torch.sqrt(t + 5), lambda t: torch.sin(torch.pi * t) + wiggle * torch.sin(9 * t)],
        n=1000,
    )


def test_a_nearly_linear_edge_is_x_when_the_layer_is_fitted_less_precisely_than_its_curvature():
    """Layer precision ~1e-3 (the sine's misfit): sqrt's better r^2 on edge 0 (7e-4 of variance)
    is below what the layer resolves, so the simpler x is fixed (x1*x2 + x3*x4 needs this)."""
    model, x = _near_linear_layer(wiggle=0.03)
    sine = kantk.suggest_symbolic(model, 0, 1, 0, x, library="minimal")[0]
    assert sine.name == "sin" and 1e-4 < 1 - sine.r2 < 1e-2  # the layer's precision, capped at 1e-4
    top = kantk.suggest_symbolic(model, 0, 0, 0, x, library="minimal", topk=3)
    by_name = {c.name: c for c in kantk.suggest_symbolic(model, 0, 0, 0, x, library="minimal", topk=10)}
    assert by_name["sqrt"].r2 > by_name["x"].r2 + 5e-4  # sqrt does fit better...
    assert top[0].name == "x"  # ...but not by more than the layer resolves
    pykan = kantk.suggest_symbolic(model, 0, 0, 0, x, library="minimal", precision_cap=1e-5)
    assert pykan[0].name != "x"  # pykan's fixed floor (1e-5) takes the curvature at face value
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [(r.i, r.name) for r in report] == [(0, "x"), (1, "sin")]


def test_a_precisely_fitted_layer_keeps_its_true_root():
    """Without the wiggle every edge is fitted to ~1e-7 or better: the floor stays at pykan's 1e-5 and
    the true sqrt(x + 5) (r^2 better than x's by 7e-4) is kept."""
    model, x = _near_linear_layer(wiggle=0.0)
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [(r.i, r.name) for r in report] == [(0, "sqrt"), (1, "sin")]
    with pytest.raises(ValueError, match="precision_cap"):
        kantk.auto_symbolic(model, x, precision_cap=1e-9)


def test_a_candidate_that_overflows_in_float32_is_passed_over():
    """1e-40 * exp(x) fits an exp edge exactly in float64 (the fit's precision) with c ~ 1e40,
    beyond float32's range: a float32 model gets the next candidate, and stays finite."""
    import sympy

    tiny = kantk.SymbolicFunction(
        "tiny_exp", lambda z: 1e-40 * torch.exp(z), lambda z: sympy.Float(1e-40) * sympy.exp(z), 1
    )
    model, x = _model_with_edges("chebyshev", [lambda t: torch.sin(torch.pi * t), lambda t: torch.exp(2 * t)])
    model, x = model.float(), x.float()
    library = ["sin", "x^2", tiny]
    top = kantk.suggest_symbolic(model, 0, 1, 0, x, library=library)[0]
    assert top.name == "tiny_exp" and abs(top.params[2]) > 1e38  # best in float64
    report = kantk.auto_symbolic(model, x, library=library)
    assert [(r.i, r.name, r.fixed) for r in report] == [(0, "sin", True), (1, "x^2", True)]
    assert torch.isfinite(model(x)).all()


def test_auto_symbolic_one_layer_at_a_time():
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 2, 1], seed=0)
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first = kantk.auto_symbolic(model, x, library="minimal", r2_threshold=-1.0, layers=0)
    assert {r.layer for r in first} == {0} and len(first) == 4 and all(r.fixed for r in first)
    assert not model.layers[1].has_symbolic
    second = kantk.auto_symbolic(model, x, library="minimal", r2_threshold=-1.0, layers=[1])
    assert [(r.layer, r.fixed) for r in second] == [(1, True), (1, True)]
    with pytest.raises(IndexError, match="layer"):
        kantk.auto_symbolic(model, x, layers=[2])


def test_a_small_edge_into_a_product_factor_is_not_negligible():
    """x1 * (0.006 + 0.0003 x2): the x2 edge's spread is 3e-4 of the x1 edge's, but 3% of its
    factor's size; the factor's variation is part of the formula, not a constant to drop."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 2, generator=g) * 2 - 1
    model = kantk.KAN([2, [0, 1], 1], basis_kwargs={"grid_size": 5}, base_activation="zero", seed=0)
    layer = model.layers[0]
    zero = torch.zeros(400)
    target = torch.stack(
        [torch.stack([x[:, 0], zero], dim=1), torch.stack([zero, 0.006 + 0.0003 * x[:, 1]], dim=1)], dim=1
    )  # (n, out, in): sub-node 0 = x1, sub-node 1 = 0.006 + 0.0003 x2
    with torch.no_grad():
        layer.scale_sp.fill_(1.0)
        layer.coef.copy_(fit_coefficients(layer.basis(x), target))
        layer.mask[0, 1] = 0
        layer.mask[1, 0] = 0
    report = kantk.auto_symbolic(model, x, library="minimal", layers=0)
    assert {(r.i, r.j): (r.name, r.status) for r in report} == {
        (0, 0): ("x", "fixed"),
        (1, 1): ("x", "fixed"),
    }


def _amplified_model(small: float = 1e-3, term: float = 0.05):
    """A float64 [2, 2, 1] KAN of ``sin(2*x1) + term*x2``: its hidden node 0 holds
    ``small*sin(2*x1)`` and the next layer scales it by ``1/small``; node 1 holds ``x2``."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 2, generator=g) * 2 - 1
    model = kantk.KAN([2, 2, 1], basis_kwargs={"grid_size": 20}, base_activation="zero", seed=0)
    first, second = model.layers
    zero = torch.zeros(400)
    hidden = [torch.stack([small * torch.sin(2 * x[:, 0]), zero], 1), torch.stack([zero, x[:, 1]], 1)]
    with torch.no_grad():
        first.scale_sp.fill_(1.0)
        first.coef.copy_(fit_coefficients(first.basis(x), torch.stack(hidden, 1)))
        first.mask[0, 1] = 0
        first.mask[1, 0] = 0
        h = first(x)
        out = torch.stack([h[:, 0] / small, term * h[:, 1]], 1)[:, None, :]  # (n, 1, 2)
        second.scale_sp.fill_(1.0)
        second.coef.copy_(fit_coefficients(second.basis(h), out))
    return model, x, torch.sin(2 * x[:, 0]) + term * x[:, 1]


def test_a_small_edge_a_later_layer_scales_up_is_not_negligible():
    """The sine's first edge spreads 0.1% of x2's edge in its layer, but the next layer scales it
    by 1000: it carries the output. The spread rule alone fixed it to 0 (formula 0.05*x2 + c)."""
    model, x, y = _amplified_model()
    assert (model(x)[:, 0] - y).abs().max() < 1e-4  # the numeric model is the function
    ranked = kantk.suggest_symbolic(model, 0, 0, 0, x, library="default")
    assert "0" not in [c.name for c in ranked]
    report = kantk.auto_symbolic(model, x, library="default")
    assert {(r.layer, r.i, r.j): (r.name, r.status) for r in report} == {
        (0, 0, 0): ("sin", "fixed"),
        (0, 1, 1): ("x", "fixed"),
        (1, 0, 0): ("x", "fixed"),
        (1, 1, 0): ("x", "fixed"),
    }
    with torch.no_grad():
        assert (model(x)[:, 0] - y).abs().max() < 1e-4


def test_an_edge_small_in_spread_and_importance_is_still_negligible():
    """0.005*x2 is 0.3% of the output: both rules call its last edge negligible."""
    model, x, _ = _amplified_model(term=0.005)
    report = kantk.auto_symbolic(model, x, library="default")
    assert {(r.layer, r.i, r.j): r.status for r in report}[(1, 1, 0)] == "negligible"
    assert {(r.layer, r.i, r.j): r.name for r in report}[(0, 0, 0)] == "sin"


def test_auto_symbolic_refuses_samples_where_the_model_is_not_finite_before_any_change():
    """log(x2) fixed by hand is NaN for x2 < 0: auto_symbolic fixed every edge of layer 0, then
    failed on layer 1 with fit_affine's message, the model half changed."""
    torch.set_default_dtype(torch.float64)
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(model, 0, 1, 0, "log")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [list(row) for row in model.layers[0].symbolic_names]
    with pytest.raises(ValueError, match=r"layer 0's outputs are NaN or infinite on \d+ of the 200") as info:
        kantk.auto_symbolic(model, x)
    assert "\n" not in str(info.value)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [list(row) for row in model.layers[0].symbolic_names] == names
    assert not model.layers[1].has_symbolic
    # nothing left to fit: no refusal (kantk symbolic runs auto_symbolic on symbolic models too)
    done = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(done, 0, 0, 0, "log")
    kantk.fix_symbolic(done, 0, 1, 0, "x")
    assert kantk.auto_symbolic(done, x) == []


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), 1.5, "0.9", True, None])
def test_auto_symbolic_refuses_a_bad_r2_threshold_before_any_change(threshold):
    model, x = _model_with_edges("bspline", [lambda t: torch.sin(torch.pi * t), lambda t: t**2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="r2_threshold must be a number <= 1") as info:
        kantk.auto_symbolic(model, x, library="minimal", r2_threshold=threshold)
    assert "\n" not in str(info.value)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(layer.has_symbolic for layer in model.layers)


def test_an_r2_threshold_of_minus_infinity_fixes_every_edge():
    """-inf is a threshold (kantk discover uses it: every edge takes its best candidate)."""
    model, x = _model_with_edges("bspline", [lambda t: torch.sin(torch.pi * t), lambda t: t**2])
    kantk.auto_symbolic(model, x, library="minimal", r2_threshold=float("-inf"))
    assert all(len(layer.symbolic_edges()) == int(layer.live_edges().sum()) for layer in model.layers)


def test_an_edge_that_saw_one_input_value_is_fixed_to_a_constant():
    """Constant inputs made the fit's scale 1e-12: a = -1e12, and the model gave NaN next to the
    sample while the formula showed a constant."""
    model = kantk.KAN([1, 1], seed=0).double()
    x = torch.full((20, 1), 0.3, dtype=torch.float64)
    for name in ("log", "sqrt", "exp"):
        fit = kantk.fix_symbolic(model, 0, 0, 0, name, x)
        assert fit.params[0] == 0.0, (name, fit.params)
        probe = torch.tensor([[0.3], [0.0], [0.5], [-0.5]], dtype=torch.float64)
        assert torch.isfinite(model(probe)).all(), name


def test_another_function_under_a_used_name_is_refused():
    """Two list-built libraries ("custom") each with a "mypow": fixing x2's edge to z^3 turned
    x1's z^2 into z^3 too."""
    from kantk.symbolic import SymbolicFunction

    square = SymbolicFunction("mypow", lambda z: z**2, lambda z: z**2, complexity=2)
    cube = SymbolicFunction("mypow", lambda z: z**3, lambda z: z**3, complexity=2)
    model = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "mypow", library=[square], fit_params=False)
    with pytest.raises(ValueError, match="already uses another function named 'mypow'"):
        kantk.fix_symbolic(model, 0, 1, 0, "mypow", library=[cube], fit_params=False)
    assert model.layers[0].symbolic_names[0] == ["mypow", None]  # nothing changed
    kantk.fix_symbolic(model, 0, 0, 0, "mypow", library=[cube], fit_params=False)  # the same edge: fine


def test_integer_like_indices_and_bad_topk():
    import numpy as np

    model = kantk.KAN([2, 1], seed=0)
    x = torch.rand(20, 2, generator=torch.Generator().manual_seed(0))
    kantk.fix_symbolic(model, 0, np.int64(0), torch.tensor(0), "sin", fit_params=False)
    with pytest.raises(ValueError, match="topk must be an int >= 1"):
        kantk.suggest_symbolic(model, 0, 1, 0, x, topk=2.5)
    with pytest.raises(IndexError):
        kantk.fix_symbolic(model, 0, True, 0, "sin", fit_params=False)


def test_a_plugin_library_fixes_several_edges_to_one_function_and_improves_with_its_registry():
    """A plugin library builds new records whenever it is resolved: a second edge fixed to its
    "sinh" was refused as "another function named 'sinh'"; improve_symbolic took no registry."""
    import sympy

    from kantk.plugins import hookimpl
    from kantk.symbolic import SymbolicFunction
    from kantk.types import SymbolicLibrarySpec

    class Plugin:
        @staticmethod
        @hookimpl
        def kantk_symbolic_libraries():
            def functions():  # new callables on every call, as a plugin written from the docs has
                return [
                    SymbolicFunction("sinh", lambda z: torch.sinh(z), lambda z: sympy.sinh(z), complexity=2),
                    SymbolicFunction("cosh", lambda z: torch.cosh(z), lambda z: sympy.cosh(z), complexity=2),
                ]

            yield SymbolicLibrarySpec("hyperbolic", functions, "sinh and cosh")

    registry = kantk.Registry.with_plugins(Plugin)
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    model = kantk.KAN([2, 1], seed=0).double()
    for p in (0, 1):
        kantk.fix_symbolic(model, 0, p, 0, "sinh", x, library="hyperbolic", registry=registry)
    assert model.layers[0].symbolic_names[0] == ["sinh", "sinh"]
    y = torch.sinh(x[:, :1]) + torch.cosh(x[:, 1:])
    result = kantk.improve_symbolic(model, x, y, library="hyperbolic", registry=registry)
    assert result.swaps == [(0, 1, 0, "sinh", "cosh")] and result.rmse_after < 0.5 * result.rmse_before
