from __future__ import annotations

import math

import pytest
import torch

import kantk
from kantk.bases import SupportsGridUpdate

ADAPTIVE = [
    n for n in kantk.list_bases() if isinstance(kantk.KANLayer(1, 1, basis=n).basis, SupportsGridUpdate)
]


def _fit_like(model, x, y, steps=30):
    opt = torch.optim.LBFGS(model.parameters(), lr=1, line_search_fn="strong_wolfe", max_iter=10)

    def closure():
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)


# Relative change of a smooth layer's output on the data after update_grid (at most 1e-3 on
# smooth targets for every basis but RBFs with fast-kan's width equal to the spacing). grids.md
# quotes the values this prints: pytest -s tests/unit/test_grid_update.py -k smooth_layer
TOLERANCE = {"bspline": 1e-4, "chebyshev": 1e-3, "rbf": 1e-3, "rbf-width1": 1e-2}


@pytest.mark.parametrize("name", ["bspline", "chebyshev", "rbf", "rbf-width1"])
def test_update_grid_keeps_a_smooth_layer_on_the_data(name):
    from kantk.bases.base import fit_coefficients

    torch.set_default_dtype(torch.float64)
    basis, kwargs = ("rbf", {"width_scale": 1.0}) if name == "rbf-width1" else (name, {})
    model = kantk.KAN([2, 1], basis=basis, basis_kwargs=kwargs, seed=0)
    layer = model.layers[0]
    xs = torch.linspace(-1, 1, 200).unsqueeze(-1).expand(-1, 2)
    target = torch.sin(torch.tensor([[0.9, 1.3]]).unsqueeze(0) * xs.unsqueeze(1) + 0.3)  # (200, 1, 2)
    with torch.no_grad():
        layer.coef.copy_(fit_coefficients(layer.basis(xs), target))
    x = torch.rand(400, 2) * 1.6 - 0.8
    before = model(x)
    model.update_grid(x)
    rel = (model(x) - before).norm() / before.norm()
    print(f"update_grid, smooth layer, {name}: relative change {float(rel):.1e}")
    assert rel <= TOLERANCE[name], rel


@pytest.mark.parametrize("name", ADAPTIVE)
def test_update_grid_keeps_a_trained_model_close(name):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], basis=name, seed=0)
    x = torch.rand(400, 2) * 1.6 - 0.8
    y = torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2)
    _fit_like(model, x, y, steps=5)
    before = model(x)
    model.update_grid(x)
    rel = (model(x) - before).norm() / before.norm()
    assert rel <= 0.1, rel


def test_bspline_grid_follows_quantiles():
    torch.set_default_dtype(torch.float64)
    layer = kantk.KANLayer(1, 1, basis_kwargs={"grid_size": 4, "order": 3})
    x = torch.rand(1000, 1) ** 3 * 4  # skewed towards 0, range [0, 4)
    layer.update_grid(x)
    grid = layer.basis.grid[0]
    assert not layer.basis.is_uniform()
    assert grid[3] == pytest.approx(float(x.min()), abs=1e-9)
    assert grid[-4] == pytest.approx(float(x.max()), abs=1e-9)
    inner = grid[3:-3]
    median = torch.quantile(x[:, 0], 0.5)
    assert abs(float(inner[2]) - (0.98 * float(median) + 0.02 * float(inner[0] + inner[-1]) / 2)) < 1e-6


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize(
    "samples",
    [
        torch.full((50, 2), 0.3),  # all equal
        torch.tensor([[1e8, -1e8], [2e8, 3e8], [-5e8, 1e7]] * 5),  # huge
        torch.tensor([[0.1, 0.2], [0.5, -0.3]]),  # fewer samples than coefficients
    ],
    ids=["constant", "huge", "few"],
)
def test_hostile_samples_give_a_working_grid(name, samples):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 2, 1], basis=name, seed=0)
    model.update_grid(samples.to(torch.float64))
    for buf in model.buffers():
        assert torch.isfinite(buf).all()
    for p in model.parameters():
        assert torch.isfinite(p).all()
    x = torch.rand(10, 2) * 2 - 1
    y = model(torch.cat([x, samples.to(torch.float64)]))
    assert torch.isfinite(y).all()


def test_update_grid_rejects_bad_samples_and_changes_nothing():
    model = kantk.KAN([2, 1], seed=0)
    grid = model.layers[0].basis.grid.clone()
    with pytest.raises(ValueError, match="finite"):
        model.update_grid(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        model.update_grid(torch.rand(5, 3))
    assert torch.equal(model.layers[0].basis.grid, grid)


def test_a_hidden_layer_that_fails_leaves_every_layer_as_it_was():
    """Finite samples, but a symbolic sqrt edge makes layer 1's input NaN: the error names layer 1,
    and layer 0, already moved by then, gets its grid and coefficients back (it kept the moved
    ones, and the message blamed the samples)."""
    model = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sqrt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(100, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match=r"input of layer 1 \(the output of layer 0\) holds NaN"):
        model.update_grid(x)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_fit_that_raises_in_a_later_layer_leaves_the_model_as_it_was(monkeypatch):
    model = kantk.KAN([2, 3, 1], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    last = model.layers[1]

    def fail(*args, **kwargs):
        raise RuntimeError("least squares failed")

    monkeypatch.setattr(last, "update_grid", fail)
    with pytest.raises(RuntimeError, match="least squares"):
        model.update_grid(torch.rand(50, 2) * 2 - 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", ["bspline", "chebyshev", "rbf"])
def test_update_grid_on_no_samples_is_a_clear_value_error(name):
    # issue 16: an empty batch used to end in an IndexError deep in the quantile code
    model = kantk.KAN([2, 3, 1], basis=name, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="at least one sample"):
        model.update_grid(torch.empty(0, 2))
    for bad_eps in (-0.1, 1.5, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="grid_eps"):
            model.update_grid(torch.rand(8, 2), grid_eps=bad_eps)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.update_grid([[0.0, 1.0]])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_basis_without_the_capability_is_skipped_with_a_warning(fixed_basis_registry):
    registry = fixed_basis_registry
    model = kantk.KAN([2, 2, 1], basis=["fixed_test", "bspline"], registry=registry, seed=0)
    x = torch.rand(30, 2)
    coef = model.layers[0].coef.clone()
    with pytest.warns(UserWarning, match="'fixed_test' cannot update its grid"):
        model.update_grid(x)
    assert torch.equal(model.layers[0].coef, coef)
    assert not model.layers[1].basis.is_uniform()  # the next layer still adapted


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("samples", "grid_eps"),
    [
        (
            torch.tensor([[0.1, 0.5]] * 40 + [[0.3, -0.2]] * 40 + [[0.9, 0.0]]),
            0.0,
        ),  # duplicates, pure quantiles
        (torch.tensor([[0.3, -0.4]]), 0.02),  # a single sample
        (torch.stack([torch.full((30,), 2.0), torch.linspace(-1, 1, 30)], 1), 0.02),  # one constant input
        (1.0 + 1e-9 * torch.rand(50, 2, generator=torch.Generator().manual_seed(0)), 0.02),  # a tiny spread
        (torch.tensor([[3e37, -3e37], [1e37, 2e37]] * 5), 0.02),  # near float32's limit
    ],
    ids=["duplicates-eps0", "single", "one-constant", "tiny-spread", "near-f32-max"],
)
def test_more_hostile_samples_then_refine(name, dtype, samples, grid_eps):
    torch.set_default_dtype(dtype)
    model = kantk.KAN([2, 2, 1], basis=name, seed=0)
    samples = samples.to(dtype)
    model.update_grid(samples, grid_eps=grid_eps)
    assert all(torch.isfinite(t).all() for t in [*model.buffers(), *model.parameters()])
    x = torch.cat([torch.rand(10, 2) * 2 - 1, samples])
    assert torch.isfinite(model(x)).all()
    finer = kantk.refine(model, {"bspline": 10, "chebyshev": 8, "rbf": 12}.get(name, 10))
    assert torch.isfinite(finer(x)).all()


def test_refit_with_buffers_restores_the_basis_when_the_fit_fails(monkeypatch):
    import kantk.bases.base as base

    layer = kantk.KANLayer(2, 1, basis="rbf")
    before = (layer.basis.centers.clone(), layer.basis.width.clone())
    x = torch.rand(40, 2)
    target = torch.zeros(40, 1, 2)

    def broken(feats, target):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(base, "fit_coefficients", broken)
    with pytest.raises(RuntimeError, match="solver exploded"):
        base.refit_with_buffers(
            layer.basis, x, target, centers=torch.zeros_like(before[0]), width=before[1] * 2
        )
    assert torch.equal(layer.basis.centers, before[0]) and torch.equal(layer.basis.width, before[1])


def test_layer_update_grid_on_no_samples_is_a_clear_error():
    import pytest
    import torch

    import kantk

    layer = kantk.KANLayer(3, 2)
    grid = layer.basis.grid.clone()
    with pytest.raises(ValueError, match="at least one sample"):
        layer.update_grid(torch.empty(0, 3))
    assert torch.equal(layer.basis.grid, grid)


def _registry_with_a_sloppy_basis():
    """A plugin basis whose update_grid and refine return (1, in, n) coefficients, not (out, in, n)."""
    from kantk.bases import RBFBasis

    class Sloppy(RBFBasis):
        def update_grid(self, x, coef, grid_eps=0.02):
            return super().update_grid(x, coef, grid_eps)[:1]

        def refine(self, size, coef):
            basis, new = super().refine(size, coef)
            return basis, new[:1]

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_bases():
            yield kantk.BasisSpec("sloppy", Sloppy)

    return kantk.Registry.with_plugins(Plugin)


def test_coefficients_of_the_wrong_shape_from_a_plugin_are_refused():
    """update_grid's coef.copy_ broadcast (1, in, n) onto every output edge silently; refine kept
    them. Both now refuse, naming the basis, and update_grid leaves the layer's grid as it was."""
    registry = _registry_with_a_sloppy_basis()
    model = kantk.KAN([2, 3, 1], basis="sloppy", registry=registry, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ValueError, match=r"basis 'sloppy': update_grid returned coefficients of shape \(1, 2, "
    ):
        model.layers[0].update_grid(torch.rand(40, 2) * 2 - 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(ValueError, match=r"layer 0: basis 'sloppy': refine returned coefficients of shape"):
        kantk.refine(model, 12)


def test_a_basis_that_rebinds_its_grid_is_put_back_too():
    """The rollback restores tensor objects by their place in the module: a plugin's update_grid
    that assigns a new buffer (self.centers = ...) instead of writing in place, then fails, leaves
    the old buffer in place."""
    from kantk.bases import RBFBasis

    class Rebinding(RBFBasis):
        def update_grid(self, x, coef, grid_eps=0.02):
            self.centers = self.centers + 1.0  # a new tensor under the same buffer name
            raise RuntimeError("fit failed")

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_bases():
            yield kantk.BasisSpec("rebinding", Rebinding)

    model = kantk.KAN([2, 3, 1], basis="rebinding", registry=kantk.Registry.with_plugins(Plugin), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="fit failed"):
        model.update_grid(torch.rand(40, 2) * 2 - 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf", "fourier"])
def test_samples_that_are_not_finite_are_named_as_the_samples(basis):
    """A basis without grid updates (the fourier plugin) let NaN samples through layer 0, and the
    error blamed "the input of layer 1"."""
    model = kantk.KAN([2, 3, 1], basis=basis, seed=0)
    x = torch.rand(8, 2)
    x[3, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^update_grid: the samples are not all finite"):
        model.update_grid(x)


def test_a_bfloat16_constant_column_gets_knots_its_dtype_tells_apart(tmp_path):
    """The 1e-3 window around a constant 0.7 is below bfloat16's spacing there (0.004): every knot
    became 0.69921875, save wrote the model and load refused it ("zero span")."""
    model = kantk.KAN([2, 3, 1], seed=0).to(torch.bfloat16)
    x = (torch.rand(100, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(torch.bfloat16)
    x[:, 1] = 0.7
    model.update_grid(x)
    knots = model.layers[0].basis.grid[1].float()
    assert float(knots[-1] - knots[0]) > 0 and bool((knots.diff() >= 0).all())
    kantk.save(model, tmp_path / "m.kantk")
    assert torch.equal(kantk.load(tmp_path / "m.kantk").layers[0].basis.grid, model.layers[0].basis.grid)


def test_knots_beyond_the_dtype_s_range_are_a_clear_error_that_changes_nothing():
    """float32 samples near 3e38 put the outer knots at inf: a raw torch LinAlgError."""
    model = kantk.KAN([2, 3, 1], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x[:, 0] *= 3e38
    with pytest.raises(ValueError, match="beyond the largest torch.float32 number"):
        model.update_grid(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_narrow_bfloat16_column_keeps_its_own_range():
    """The low-precision window (48 eps, 0.375 in bfloat16) widened columns that were not
    constant: data in [0.9, 1.0] got outer interior knots at 0.76 and 1.14."""
    from kantk.bases.bspline import data_knots

    x = (torch.rand(200, 1, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.9).to(torch.bfloat16)
    knots = data_knots(x, 5, 3, dtype=torch.bfloat16)
    assert float(knots[0, 3]) >= 0.89 and float(knots[0, 8]) <= 1.01


def test_column_quantiles_equal_torch_s_and_take_any_number_of_samples(monkeypatch):
    """torch.quantile refuses more than 2**24 elements: update_grid on a million samples of 16
    inputs failed; the sort-based quantiles give torch's values bit for bit, without its limit."""
    from kantk.bases.base import column_quantiles

    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 1000):
        x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        levels = torch.linspace(0, 1, 6, dtype=torch.float64)
        assert torch.equal(column_quantiles(x, levels), torch.quantile(x, levels, dim=0))

    def limited(*args, **kwargs):
        raise RuntimeError("quantile() input tensor is too large")

    monkeypatch.setattr(torch, "quantile", limited)  # as on more than 2**24 elements
    for basis in ("bspline", "rbf"):
        kantk.KAN([2, 1], basis=basis, seed=0).update_grid(torch.rand(100, 2, generator=gen))


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_samples_spanning_no_finite_range_are_a_clear_error(basis):
    """+-1e308 made the range inf: a raw LinAlgError from the SVD of the fit."""
    model = kantk.KAN([1, 1], basis=basis, seed=0).double()
    x = torch.tensor([[-1e308], [0.0], [1e308]], dtype=torch.float64)
    with pytest.raises(ValueError, match="span no finite range"):
        model.update_grid(x)


def test_grids_adapt_to_distinct_values_not_to_a_value_most_samples_repeat(monkeypatch):
    """On data that is 90 % zeros, RBF update_grid put most centres on 0 and refitted a sine edge
    4.1 % off on the data (max over the batch, relative); with each value counted at most one
    interval's share it is 0.085 % (the bounds leave room for other CPUs' round-off). Data without
    such a value, rounded data included, keeps the quantiles of all samples."""
    import kantk.bases.rbf as rbf
    from kantk.bases.base import column_quantiles, distinct_quantiles, fit_coefficients

    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=g, dtype=torch.float64) * 2 - 1
    levels = torch.linspace(0, 1, 7, dtype=torch.float64)
    assert torch.equal(distinct_quantiles(x, levels), column_quantiles(x, levels))  # no repeats: the same
    g2 = torch.Generator().manual_seed(1)
    rounded = (torch.randn(20000, 1, generator=g2, dtype=torch.float64) * 100).round() / 100
    assert torch.equal(distinct_quantiles(rounded, levels), column_quantiles(rounded, levels))
    x[torch.rand(200, generator=g) < 0.9] = 0.0
    spread = distinct_quantiles(x, levels)
    assert int((spread == 0).sum()) <= 2 * 2  # at most an interval's two ends on 0, per input

    def refit_error() -> float:
        layer = kantk.KAN([2, 1], basis="rbf", seed=0).double().layers[0]
        xs = torch.linspace(-1, 1, 200, dtype=torch.float64).unsqueeze(-1).expand(-1, 2)
        target = torch.sin(
            torch.tensor([[1.9, 1.3]], dtype=torch.float64).unsqueeze(0) * xs.unsqueeze(1) + 0.3
        )
        with torch.no_grad():
            layer.coef.copy_(fit_coefficients(layer.basis(xs), target))
            before = layer(x)
            layer.update_grid(x)
            return float((layer(x) - before).abs().max() / before.abs().max())

    capped = refit_error()
    monkeypatch.setattr(rbf, "distinct_quantiles", column_quantiles)
    uncapped = refit_error()
    assert capped < 0.004 < 0.02 < uncapped, (capped, uncapped)
    from kantk.bases.bspline.knots import data_knots

    knots = data_knots(x, 5, 3, grid_eps=0.0)  # B-spline knots follow the same quantiles
    assert int((knots == 0).sum(dim=1).max()) == 1  # one knot on 0, not most of them
