"""kantk.fit: a thin convenience over a real Lightning Trainer."""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import warnings

import numpy as np
import pytest
import torch

import kantk
from kantk.lightning import FunctionDataModule, KANModule

TOY = "exp(sin(pi*x1) + x2**2)"


@pytest.fixture()
def data():
    return kantk.create_dataset(TOY, n_vars=2, train_num=200, test_num=100, seed=0)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("optimizer", "kwargs"),
    [("lbfgs", {"steps": 4}), ("adam", {"steps": 25, "lr": 0.02}), ("adamw", {"steps": 25, "batch": 64})],
)
def test_fit_with_each_optimizer_trains_in_place(data, optimizer, kwargs):
    model = kantk.KAN([2, 3, 1], seed=0)
    params = list(model.parameters())
    before = _state(model)
    history = kantk.fit(model, data, optimizer=optimizer, progress=False, **kwargs)
    assert isinstance(history, kantk.History)
    assert list(model.parameters()) == params  # same tensors, trained in place
    assert not _same(before, _state(model))
    steps = kwargs["steps"]
    assert len(history) == steps
    assert len(history.train_rmse) == len(history.regularisation) == steps
    # test metrics on kantk.fit's default schedule: LBFGS every step, Adam/AdamW every 10 and the last
    every = 1 if optimizer == "lbfgs" else 10
    assert history.eval_step == sorted({*range(every, steps + 1, every), steps})
    assert len(history.test_rmse) == len(history.test_loss) == len(history.eval_step)
    assert history.test_rmse[-1] < history.test_rmse[0]
    assert history.train_rmse[-1] < history.train_rmse[0]
    assert history.regularisation == [0.0] * steps
    assert history.train_accuracy == [] and set(history.as_dict()) == {
        "train_loss",
        "train_rmse",
        "regularisation",
        "test_loss",
        "test_rmse",
        "eval_step",
    }
    with torch.no_grad():
        rmse = torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)).item()
    assert rmse == pytest.approx(history.test_rmse[-1], rel=1e-5)


def test_lbfgs_reaches_1e3_on_the_toy_function():
    """The done-when run: [2, 5, 1], G=5, LBFGS, 100 steps, float64 (the one long test)."""
    torch.set_default_dtype(torch.float64)
    data = kantk.create_dataset(TOY, n_vars=2, train_num=1000, test_num=1000, seed=0)
    model = kantk.KAN([2, 5, 1], basis="bspline", basis_kwargs={"grid_size": 5, "order": 3}, seed=0)
    history = kantk.fit(model, data, steps=100, optimizer="lbfgs", progress=False, seed=0)
    assert history.test_rmse[-1] <= 1e-3, history.test_rmse[-1]


def test_lbfgs_keeps_learning_below_torchs_curvature_threshold():
    # torch's LBFGS drops curvature pairs with y.s <= 1e-10: on the raw MSE this fit stalls near
    # RMSE 4e-5; dividing the objective by its running scale lets it reach the spline's limit.
    torch.set_default_dtype(torch.float64)
    data = kantk.create_dataset("exp(sin(pi*x1))", n_vars=1, train_num=300, test_num=10, seed=0)
    model = kantk.KAN([1, 1], basis_kwargs={"grid_size": 50}, seed=0)
    history = kantk.fit(model, data, steps=20, optimizer="lbfgs", progress=False, seed=0)
    with torch.no_grad():
        rmse = float((model(data["train_input"]) - data["train_label"]).square().mean().sqrt())
    assert rmse < 5e-6, rmse
    assert history.train_loss[-1] == pytest.approx(rmse**2, rel=0.5)  # logged undivided


@pytest.mark.parametrize(
    ("optimizer", "stopped"),
    [
        ("adam", r"training stopped at step \d: the loss or the parameters became NaN"),
        # every point LBFGS's line search tries at lr=1e300 is not finite: it backs off from such
        # points now, and a step that found no finite one stops with its own warning (the run
        # stayed at its start for all its steps without a word)
        ("lbfgs", r"training stopped at step 1: every point LBFGS's line search tried"),
    ],
)
def test_a_step_that_turns_nan_stops_training_and_keeps_the_last_finite_model(optimizer, stopped):
    torch.set_default_dtype(torch.float64)
    data = kantk.create_dataset(TOY, n_vars=2, train_num=200, test_num=100, seed=0)
    model = kantk.KAN([2, 3, 1], seed=0)
    before = _state(model)
    with pytest.warns(UserWarning, match=stopped) as caught:
        history = kantk.fit(model, data, steps=5, optimizer=optimizer, lr=1e300, progress=False, seed=0)
    # shown at this line, not at one of Lightning's (pytorch_lightning/strategies/strategy.py:391)
    assert [w.filename for w in caught if "training stopped" in str(w.message)] == [__file__]
    assert len(history.train_loss) < 5
    for k, v in model.state_dict().items():  # back where it started: its loss was the last finite one
        assert torch.equal(v, before[k]), k


def test_same_seed_gives_bit_identical_parameters(data):
    def run(seed):
        model = kantk.KAN([2, 3, 1], seed=0)
        history = kantk.fit(model, data, steps=6, optimizer="adam", batch=32, seed=seed, progress=False)
        return _state(model), history

    (a, ha), (b, hb), (c, _) = run(7), run(7), run(8)
    assert _same(a, b) and ha.as_dict() == hb.as_dict()
    assert not _same(a, c)  # the seed drives the shuffling
    assert _same(a, run(np.int64(7))[0])  # a numpy integer is the same seed


def test_seeded_fit_restores_global_state(data):
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    kantk.fit(kantk.KAN([2, 2, 1], seed=0), data, steps=2, seed=5, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not torch.are_deterministic_algorithms_enabled()


def test_fit_writes_nothing_anywhere(data, tmp_path, monkeypatch):
    cwd, temp = tmp_path / "cwd", tmp_path / "temp"
    cwd.mkdir()
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    kantk.fit(kantk.KAN([2, 2, 1], seed=0), data, steps=2, progress=True)
    assert list(cwd.iterdir()) == []
    assert list(temp.iterdir()) == []  # the scratch root_dir is cleaned up


def test_log_dir_gets_metrics_and_a_loadable_checkpoint(data, tmp_path):
    model = kantk.KAN([2, 3, 1], basis=["bspline", "chebyshev"], seed=0).to(torch.float64)
    kantk.fit(model, data, steps=3, log_dir=tmp_path, progress=False)
    assert list(tmp_path.glob("kantk/version_0/metrics.csv"))
    checkpoints = list(tmp_path.glob("kantk/version_0/checkpoints/*.ckpt"))
    assert len(checkpoints) == 1
    restored = KANModule.load_from_checkpoint(checkpoints[0])
    assert restored.model.config() == model.config()
    assert restored.model_dtype == torch.float64
    x = data["test_input"].double()
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_a_run_that_stops_early_still_leaves_its_checkpoint(tmp_path):
    """LBFGS on a target the model can match exactly reaches round-off and stops before steps:
    the log_dir still gets one checkpoint, of the state the run ended in (the ModelCheckpoint
    saved only at step == steps, so there was none)."""
    torch.set_default_dtype(torch.float64)
    target = kantk.KAN([1, 1], seed=1)
    gen = torch.Generator().manual_seed(0)
    x, xt = torch.rand(200, 1, generator=gen) * 2 - 1, torch.rand(100, 1, generator=gen) * 2 - 1
    with torch.no_grad():
        data = {"train_input": x, "train_label": target(x), "test_input": xt, "test_label": target(xt)}
    model = kantk.KAN([1, 1], seed=0)
    history = kantk.fit(model, data, steps=40, log_dir=tmp_path, progress=False)
    assert len(history.train_loss) < 40  # it did stop early
    checkpoints = list(tmp_path.glob("kantk/version_0/checkpoints/*.ckpt"))
    assert len(checkpoints) == 1
    assert f"step={len(history.train_loss)}" in checkpoints[0].name
    restored = KANModule.load_from_checkpoint(checkpoints[0])
    torch.testing.assert_close(restored(xt), model(xt), rtol=0, atol=0)


def test_fit_is_quiet(data, caplog, capsys):
    caplog.set_level(logging.INFO)
    level = logging.getLogger("pytorch_lightning").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kantk.fit(kantk.KAN([2, 2, 1], seed=0), data, steps=2, progress=False)
    assert "GPU available" not in caplog.text and "stopped" not in caplog.text
    assert not [w for w in caught if "PossibleUserWarning" in type(w.message).__name__]
    assert capsys.readouterr().out == ""
    assert logging.getLogger("pytorch_lightning").level == level  # restored


def test_fit_without_a_test_split_warns_nothing(data):
    # no test split, no evaluation (documented): Lightning's "Total length of list across ranks
    # is zero" hint about the empty validation loader is not the user's business
    train_only = {k: data[k] for k in ("train_input", "train_label")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = kantk.fit(kantk.KAN([2, 2, 1], seed=0), train_only, steps=2, progress=False)
    assert not [str(w.message) for w in caught if "across ranks" in str(w.message)]
    assert len(history.train_loss) == 2


def test_regularisers_enter_the_loss_and_the_history(data):
    model = kantk.KAN([2, 3, 1], seed=0)
    history = kantk.fit(
        model, data, steps=3, regularisers={"l1_entropy": {"weight": 1e-2}, "coef_l1": 1e-3}, progress=False
    )
    assert all(r > 0 for r in history.regularisation)
    reg = kantk.default_registry().regularisers
    x = data["train_input"]
    expected = 1e-2 * reg.get("l1_entropy").factory()(model, x) + 1e-3 * reg.get("coef_l1").factory()(
        model, x
    )
    # LBFGS records the value at its last evaluation, close to the final parameters
    assert history.regularisation[-1] == pytest.approx(expected.item(), rel=0.2)


def test_classification_with_cross_entropy():
    data = kantk.create_dataset("x2 > sin(pi*x1)/2", 2, task="classification", train_num=300, test_num=100)
    model = kantk.KAN([2, 3, 2], seed=0)
    history = kantk.fit(model, data, steps=8, loss="cross_entropy", progress=False)
    assert history.test_accuracy[-1] > 0.9
    assert history.train_rmse == [] and len(history.train_accuracy) == 8


def test_fit_accepts_a_datamodule():
    model = kantk.KAN([2, 2, 1], seed=0)
    history = kantk.fit(
        model, FunctionDataModule("x1*x2", 2, train_num=100, test_num=50), steps=3, progress=False
    )
    assert len(history.test_rmse) == 3 and history.test_rmse[-1] < history.test_rmse[0]


def test_float_data_is_cast_to_the_model_dtype(data):
    model = kantk.KAN([2, 2, 1], seed=0).to(torch.float64)
    history = kantk.fit(model, data, steps=2, progress=False)  # float32 data
    assert model.layers[0].coef.dtype == torch.float64 and len(history) == 2


def test_grid_updates_move_the_grid_on_schedule(data):
    model = kantk.KAN([2, 3, 1], seed=0)
    with torch.no_grad():
        hidden = model.layers[0](data["train_input"])
    history = kantk.fit(model, data, steps=5, grid_update_every=2, grid_update_until=4, progress=False)
    grid = model.layers[1].basis.grid
    assert grid.min() >= hidden.min() - 3 * (hidden.max() - hidden.min())  # follows the data, not [-1, 1]
    assert not torch.allclose(grid, kantk.KAN([2, 3, 1], seed=0).layers[1].basis.grid)
    assert len(history) == 5 and math.isfinite(history.test_rmse[-1])


# --- bad input: clear errors, raised before the model changes ----------------------------------


def _bad(data, key, index, value):
    data = {k: v.clone() for k, v in data.items()}
    data[key].view(-1)[index] = value
    return data


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda d: _bad(d, "train_input", 3, float("nan")), ValueError, "train_input contains 1 NaN"),
        (
            lambda d: _bad(d, "test_label", 0, float("inf")),
            ValueError,
            "test_label contains 0 NaN and 1 infinite",
        ),
        (lambda d: {**d, "train_label": d["train_label"][:, 0]}, ValueError, "label shapes must agree"),
        (
            lambda d: {**d, "train_label": d["train_label"][:, 0], "test_label": d["test_label"][:, 0]},
            ValueError,
            "reshape with y.unsqueeze(-1)",
        ),
        (
            lambda d: {**d, "train_label": d["train_label"][:10]},
            ValueError,
            "200 samples but train_label has 10",
        ),
        (
            lambda d: {**d, "train_input": torch.zeros(200, 3), "test_input": torch.zeros(100, 3)},
            ValueError,
            "train_input has 3 features but the model expects 2",
        ),
        (lambda d: {"train_input": d["train_input"]}, ValueError, "missing train_label"),
    ],
)
def test_bad_data_is_rejected_before_training(data, make, error, message):
    model = kantk.KAN([2, 3, 1], seed=0)
    before = _state(model)
    with pytest.raises(error) as info:
        kantk.fit(model, make(data), steps=2, progress=False, grid_update_every=1)
    assert message in str(info.value)
    assert _same(before, _state(model))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"optimizer": "sgd"}, ValueError, "unknown optimizer 'sgd'; valid optimizers: adam, adamw, lbfgs"),
        ({"loss": "mae"}, ValueError, "unknown loss 'mae'; valid losses: mse, cross_entropy"),
        (
            {"regularisers": {"l1": 1.0}},
            kantk.UnknownComponentError,
            "known regulariser names: coef_l1, coef_smoothness, l1_entropy",
        ),
        ({"optimizer_kwargs": {"momentum": 0.9}}, ValueError, "accepted optimizer_kwargs:"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1"),
        ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
        ({"seed": 1.5}, ValueError, "seed must be a whole number from -2**63 to 2**64-1, got 1.5"),
        ({"seed": True}, ValueError, "seed must be a whole number from -2**63 to 2**64-1, got True"),
    ],
)
def test_bad_settings_list_what_is_valid(data, kwargs, error, message):
    model = kantk.KAN([2, 3, 1], seed=0)
    before = _state(model)
    with pytest.raises(error) as info:
        kantk.fit(model, data, **{"steps": 2, "progress": False, **kwargs})
    assert message in str(info.value)
    assert _same(before, _state(model))


def test_class_labels_must_fit_the_output_width():
    data = kantk.create_dataset("x1 > 0", 2, task="classification", train_num=50, test_num=10)
    with pytest.raises(ValueError, match="holds class 1 but the model has 1 outputs"):
        kantk.fit(kantk.KAN([2, 1], seed=0), data, steps=1, loss="cross_entropy", progress=False)


def _regulariser_registry(spec):
    """A registry with the built-ins and one more regulariser (a plugin not installed)."""

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_regularisers():
            yield spec

    return kantk.Registry.with_plugins(Plugin)


def test_a_regulariser_from_an_explicit_registry_trains(data):
    """fit(registry=...) looks the regularisers up there (a plugin not installed, the way the
    docs test one): it used the default registry and refused the name."""
    calls = []

    class CoefficientNorm:
        def __call__(self, model, x):
            calls.append(1)
            return sum(layer.coef.abs().mean() for layer in model.layers)

    registry = _regulariser_registry(kantk.RegulariserSpec("coef_norm_test", CoefficientNorm, "mean |coef|"))
    model = kantk.KAN([2, 2, 1], seed=0, registry=registry)
    with pytest.raises(ValueError, match="coef_norm_test"):
        kantk.fit(model, data, steps=1, regularisers={"coef_norm_test": 1e-3}, progress=False)
    kantk.fit(model, data, steps=2, regularisers={"coef_norm_test": 1e-3}, registry=registry, progress=False)
    assert calls


def test_the_nan_guard_names_a_regulariser_whose_penalty_turned_nan(data):
    """A plugin penalty that became NaN stopped the run with "the loss or the parameters became
    NaN", naming neither the regulariser nor that the data loss was fine."""
    calls = []

    class NaNAfterTwo:
        def __call__(self, model, x):
            calls.append(1)
            value = sum(layer.coef.abs().mean() for layer in model.layers)
            return value * float("nan") if len(calls) > 2 else value

    registry = _regulariser_registry(kantk.RegulariserSpec("nan_later_test", NaNAfterTwo, "NaN from call 3"))
    model = kantk.KAN([2, 2, 1], seed=0, registry=registry)
    with pytest.warns(UserWarning, match=r"regulariser 'nan_later_test' returned a NaN or infinite penalty"):
        kantk.fit(
            model,
            data,
            steps=5,
            optimizer="adam",
            regularisers={"nan_later_test": 1e-3},
            registry=registry,
            progress=False,
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_nan_guard_names_a_regulariser_whose_penalty_is_nan_from_the_first_step(data):
    """The commonest broken regulariser, NaN from its first call, stopped the run with "the loss
    was not finite from the first step" and no name (only a later NaN was blamed on it)."""

    class NaNAlways:
        def __call__(self, model, x):
            return sum(layer.coef.abs().mean() for layer in model.layers) * float("nan")

    registry = _regulariser_registry(kantk.RegulariserSpec("nan_first_test", NaNAlways, "always NaN"))
    model = kantk.KAN([2, 2, 1], seed=0, registry=registry)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(
        UserWarning, match=r"first step \(step 1\): regulariser 'nan_first_test' returned a NaN"
    ):
        kantk.fit(
            model, data, steps=3, regularisers={"nan_first_test": 1e-3}, registry=registry, progress=False
        )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("trainer_kwargs", "match"),
    [
        ({"accumulate_grad_batches": 2}, "one batch per optimizer step"),
        ({"strategy": "ddp_spawn", "devices": 2, "accelerator": "cpu"}, "trains in this one process"),
    ],
)
def test_fit_refuses_what_its_history_cannot_follow(data, trainer_kwargs, match):
    """Accumulation recorded every micro-batch as a step (12 entries for 6 steps) and evaluated at
    the wrong steps; ddp_spawn failed with a PicklingError of kantk's callbacks."""
    model = kantk.KAN([2, 3, 1], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        kantk.fit(
            model, data, steps=2, optimizer="adam", batch=50, progress=False, trainer_kwargs=trainer_kwargs
        )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("trainer_kwargs", "match"),
    [
        ({"gradient_clip_val": 1.0}, r"^optimizer='lbfgs' .*cannot clip gradients .*gradient_clip_val=1.0"),
        ({"accumulate_grad_batches": 2}, r"^optimizer='lbfgs' .*does not accumulate .*=2\); give it full"),
    ],
)
def test_lbfgs_refuses_clipping_and_accumulation_in_kantks_words(tmp_path, trainer_kwargs, match):
    """Lightning refused both with "not supported for manual optimization", a mode the user never
    chose (kantk.fit's default optimizer is LBFGS); Adam takes both."""
    import pytorch_lightning as pl

    datamodule = FunctionDataModule(f="x1*x2", n_vars=2, train_num=64, test_num=16, seed=0)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    module = KANModule([2, 3, 1], optimizer="lbfgs", init_seed=0)
    with pytest.raises(ValueError, match=match):
        pl.Trainer(max_steps=2, default_root_dir=tmp_path, **quiet, **trainer_kwargs).fit(module, datamodule)
    adam = KANModule([2, 3, 1], optimizer="adam", init_seed=0)
    pl.Trainer(max_steps=2, default_root_dir=tmp_path, **quiet, **trainer_kwargs).fit(adam, datamodule)
    # only fitting takes optimizer steps: validating an LBFGS module with such a Trainer is fine
    pl.Trainer(default_root_dir=tmp_path, **quiet, **trainer_kwargs).validate(module, datamodule)


def test_fit_warns_of_lbfgs_on_mini_batches(data):
    with pytest.warns(UserWarning, match=r"^LBFGS on mini-batches \(batch=10 of \d+ training rows\)"):
        kantk.fit(kantk.KAN([2, 1], seed=0), data, steps=1, batch=10, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        n = data["train_input"].shape[0]
        for batch in (-1, n):  # the full set, either way
            kantk.fit(kantk.KAN([2, 1], seed=0), data, steps=1, batch=batch, progress=False)


def test_grid_updates_once_per_optimizer_step_under_gradient_accumulation():
    """GridUpdateCallback ran before every micro-batch ([0, 0, 2, 2, 4, 4]), refitting the
    coefficients while a gradient was half accumulated."""
    import pytorch_lightning as pl

    from kantk.lightning import GridUpdateCallback

    grids = GridUpdateCallback(every=2, until=6)
    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0)
    datamodule = FunctionDataModule(f="x1*x2", n_vars=2, train_num=200, test_num=50, seed=0, batch_size=50)
    trainer = pl.Trainer(
        max_steps=6,
        accumulate_grad_batches=2,
        callbacks=[grids],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=datamodule)
    assert grids.updated_at == [0, 2, 4]


def test_fit_logs_a_function_data_module_whose_dtype_differs_from_the_model(tmp_path):
    """KANModule's ``dtype`` (the model's) and FunctionDataModule's (the samples') were logged under
    one key, and Lightning refused the two values: "Error while merging hparams: the keys
    ['dtype'] ...", for every kantk.fit(model, FunctionDataModule(...), log_dir=...)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    model = kantk.KAN([2, 3, 1], seed=0)
    datamodule = FunctionDataModule("x1*x2", n_vars=2, train_num=40, test_num=10)
    kantk.fit(model, datamodule, steps=1, log_dir=tmp_path / "fit", progress=False)
    (saved,) = (tmp_path / "fit").rglob("hparams.yaml")
    assert "data_dtype: null" in saved.read_text() and "dtype: float32" in saved.read_text()
    module = KANModule([2, 3, 1], dtype="float64", init_seed=0)
    trainer = pl.Trainer(
        max_steps=1,
        logger=CSVLogger(tmp_path / "pl"),
        default_root_dir=tmp_path / "pl",
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=FunctionDataModule("x1*x2", n_vars=2, train_num=40, test_num=10))
    assert datamodule.hparams["dtype"] is None  # the argument keeps its name (checkpoints)


@pytest.mark.parametrize(
    ("key", "use"), [("callbacks", "callbacks="), ("max_steps", "steps="), ("logger", "log_dir=")]
)
def test_fit_refuses_trainer_kwargs_it_sets_itself(data, key, use):
    """trainer_kwargs={"callbacks": [...]} replaced the History recorder and the NaN guard: an
    empty History and NaN parameters, without a word."""
    model = kantk.KAN([2, 3, 1], seed=0)
    before = _state(model)
    with pytest.raises(ValueError, match=rf"trainer_kwargs\['{key}'\]: kantk.fit sets .*{use}"):
        kantk.fit(model, data, steps=2, progress=False, trainer_kwargs={key: None})
    assert _same(before, _state(model))


def test_fit_keeps_a_nan_guard_given_in_callbacks(data):
    """callbacks=[NaNGuard()] crashed ("more than one stateful callback of type NaNGuard"), and
    NaNGuard(every=5) was doubled by fit's own every-step guard (two warnings)."""
    from kantk.lightning import NaNGuard

    kantk.fit(kantk.KAN([2, 3, 1], seed=0), data, steps=2, callbacks=[NaNGuard()], progress=False)
    guard = NaNGuard(every=5)
    model = kantk.KAN([2, 3, 1], seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kantk.fit(model, data, steps=8, optimizer="adam", lr=1e30, callbacks=[guard], progress=False)
    assert guard.restored_at == 5  # the user's guard checked, at its own interval
    assert sum("training stopped" in str(w.message) for w in caught) == 1
    # parameters gone NaN make every penalty NaN: the cause is not named a regulariser's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kantk.fit(
            kantk.KAN([2, 3, 1], seed=0),
            data,
            steps=3,
            optimizer="adam",
            lr=1e30,
            regularisers={"l1_entropy": 1e-3},
            progress=False,
        )
    (stop,) = [str(w.message) for w in caught if "training stopped" in str(w.message)]
    assert "regulariser" not in stop and "the loss or the parameters became NaN" in stop
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fit_takes_a_model_checkpoint_and_a_progress_bar_in_callbacks(tmp_path, data):
    """Without log_dir, a ModelCheckpoint failed ("configured with enable_checkpointing=False") and
    a TQDMProgressBar beside fit's own bar failed ("multiple progress bar callbacks")."""
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2)
    kantk.fit(kantk.KAN([2, 3, 1], seed=0), data, steps=2, callbacks=[checkpoint], progress=False)
    assert list((tmp_path / "ckpt").glob("*.ckpt"))
    # without dirpath or log_dir it would write into fit's temporary folder, removed at the end
    with pytest.raises(ValueError, match="ModelCheckpoint without dirpath writes under log_dir"):
        kantk.fit(kantk.KAN([2, 3, 1], seed=0), data, steps=2, callbacks=[ModelCheckpoint()], progress=False)
    kantk.fit(kantk.KAN([2, 3, 1], seed=0), data, steps=1, callbacks=[TQDMProgressBar()])


def test_fit_refuses_a_misspelt_test_key(data):
    """test_inputs/test_labels were ignored: the run never evaluated, and nothing said why."""
    model = kantk.KAN([2, 3, 1], seed=0)
    typo = {"train_input": data["train_input"], "train_label": data["train_label"]}
    typo |= {"test_inputs": data["test_input"], "test_labels": data["test_label"]}
    with pytest.raises(
        ValueError, match="dataset key 'test_inputs' is not one kantk reads; did you mean 'test_input'"
    ):
        kantk.fit(model, typo, steps=1, progress=False)
    kantk.fit(
        model, {**data, "train_label_ori": data["train_label"]}, steps=1, progress=False
    )  # an extra key


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_dir": ""}, "log_dir is empty"),
        ({"lr": math.inf, "optimizer": "adam"}, "lr must be"),
        ({"seed": 2**64}, "seed must be a whole number"),
    ],
)
def test_fit_refuses_arguments_it_accepted_or_left_to_torch(tmp_path, monkeypatch, data, kwargs, match):
    """log_dir="" wrote a run into the working directory; lr=inf turned the run NaN at once;
    seed=2**64 gave torch's "Overflow when unpacking long long"."""
    monkeypatch.chdir(tmp_path)
    model = kantk.KAN([2, 3, 1], seed=0)
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        kantk.fit(model, data, steps=1, progress=False, **kwargs)
    assert _same(before, _state(model)) and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="weight_decay applies to adam and adamw; lbfgs has none"):
        KANModule([2, 3, 1], optimizer="lbfgs", weight_decay=0.5)


def test_a_grid_extension_refines_again_in_a_second_fit(data):
    """refined_at was never reset: a GridExtension used for a second run refined nothing."""
    from kantk.lightning import GridExtension

    extension = GridExtension([5], steps=[2])
    for _ in range(2):
        model = kantk.KAN([2, 3, 1], basis_kwargs={"grid_size": 3}, seed=0)
        kantk.fit(model, data, steps=3, callbacks=[extension], progress=False)
        assert model.layers[0].basis.grid_size == 5 and extension.refined_at == [(2, 5)]
    # a second fit of the model it refined refines no further (it refined to a coarser grid: error)
    extension = GridExtension([6, 12], every=2)
    kantk.fit(model, data, steps=5, callbacks=[extension], progress=False)
    kantk.fit(model, data, steps=5, callbacks=[extension], progress=False)
    assert model.layers[0].basis.grid_size == 12 and extension.refined_at == [(2, 6), (4, 12)]
    copy.deepcopy(extension)  # its weak reference to the model is not copied


def test_pykans_optimizer_spelling_is_accepted(data):
    """opt="LBFGS" (pykan's spelling, in the migration doc) was an unknown optimizer."""
    model = kantk.KAN([2, 3, 1], seed=0)
    kantk.fit(model, data, steps=1, optimizer="LBFGS", progress=False)
    assert KANModule([2, 1], optimizer="Adam").hparams["optimizer"] == "adam"


def test_the_whole_split_evaluation_is_the_last_metrics_row(tmp_path):
    """With a test split above EVAL_ROWS, the History's last evaluation (the whole split) was not
    in metrics.csv, whose last val_rmse was the subset's."""
    import csv

    big = kantk.create_dataset("x1*x2", n_vars=2, train_num=100, test_num=5000, seed=0)
    history = kantk.fit(
        kantk.KAN([2, 3, 1], seed=0),
        big,
        steps=3,
        optimizer="adam",
        eval_every=2,
        log_dir=tmp_path,
        progress=False,
    )
    (path,) = tmp_path.rglob("metrics.csv")
    rows = [r for r in csv.DictReader(path.open()) if r.get("val_rmse")]
    assert history.eval_step == [2, 3]
    assert int(rows[-1]["step"]) + 1 == 3 and float(rows[-1]["val_rmse"]) == pytest.approx(
        history.test_rmse[-1]
    )


@pytest.mark.parametrize("basis", ["bspline", "rbf", "chebyshev"])
def test_fit_warns_of_inputs_where_the_first_basis_is_constant(basis):
    """Inputs in [1000, 2000] on the default grid trained to RMSE 9.6 (labels' spread 104) without a
    word: only the SiLU branch fitted them, and auto_symbolic read the edge as a linear law."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(300, 2, generator=gen)
    x[:, 1] = 1000 + 1000 * x[:, 1]
    data = {"train_input": x, "train_label": 3 * x[:, :1] + 1e-4 * x[:, 1:] ** 2}
    with pytest.warns(
        UserWarning,
        match=rf"^input 2's training values, 100[\d.]+ to (1999[\d.]*|2000), lie where .*{basis} basis",
    ):
        kantk.fit(kantk.KAN([2, 1], basis=basis, seed=0), data, steps=1, progress=False)
    moved = kantk.KAN([2, 1], basis=basis, seed=0)
    if basis != "chebyshev":
        moved.update_grid(x)  # the grids follow the data: no word
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        if basis != "chebyshev":
            kantk.fit(moved, data, steps=1, progress=False)
        kantk.fit(kantk.KAN([2, 1], basis=basis, seed=0), data, steps=1, grid_update_every=1, progress=False)


def test_fit_warns_after_training_of_hidden_values_outside_their_grid():
    """The paper's [2, 1, 1] on G = 3 fitted without grid updates stalled at test RMSE 0.54 (0.018
    with grid_update_every=5) without a word: its hidden values spanned [-1.9, 4.9] on the grid
    [-1, 1]. pykan moves the grids by default; kantk.fit now says so after training."""
    x = torch.linspace(-1, 1, 200, dtype=torch.float64).unsqueeze(-1)
    data = {"train_input": x, "train_label": torch.sin(3 * x)}

    def model():
        m = kantk.KAN([1, 1, 1], base_activation="identity", seed=0).double()
        with torch.no_grad():  # the hidden node computes 4 x: half its values outside [-1, 1]
            m.layers[0].coef.zero_()
            m.layers[0].scale_base.fill_(4.0)
        return m

    quiet = {"steps": 1, "optimizer": "adam", "lr": 1e-6, "progress": False}
    with pytest.warns(
        UserWarning,
        match=r"^after training, 7\d% of the values of node 0 \(counting from 0\) of node layer 1 ",
    ) as caught:
        kantk.fit(model(), data, **quiet)
    assert [w.filename for w in caught] == [__file__]  # this line, not kantk's pykan-names wrapper
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        kantk.fit(model(), data, grid_update_every=1, **quiet)  # the grids follow the values
    # the hidden node's edge symbolic: no spline reads its values (the refit after auto_symbolic
    # was told to pass grid_update_every), nor the first layer's inputs' (before training)
    symbolic = model()
    kantk.fix_symbolic(symbolic, 1, 0, 0, "sin")
    far = {"train_input": 50 * x, "train_label": data["train_label"]}
    kantk.fix_symbolic(symbolic, 0, 0, 0, "x")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        kantk.fit(symbolic, far, **quiet)


def test_the_grid_warning_looks_at_the_range_not_at_rows():
    """It judged the first 2048 rows: a constant column (0.3, inside the grid), a binary column
    whose first rows were all 0 and two close rows (0.1, 0.102) were called outside the grid; then
    64 points from min to max: one outlier each side (-1000, 1000) hid 998 rows in [-1, 1], and a
    column in [0.5, 0.50002] looked constant."""
    n = 3000
    constant = torch.full((n, 1), 0.3)
    binary = (torch.arange(n) >= n - 10).float().unsqueeze(-1)  # the first 2990 rows are 0
    close = torch.linspace(0.1, 0.102, n).unsqueeze(-1)
    x = torch.cat([constant, binary, close], dim=1)
    outliers = torch.linspace(-1, 1, n).unsqueeze(-1)
    outliers[0], outliers[-1] = -1000.0, 1000.0  # an even spread from min to max missed the grid
    x = torch.cat([x, outliers, torch.full((n, 1), 0.5) + torch.linspace(0, 2e-5, n).unsqueeze(-1)], dim=1)
    data = {"train_input": x, "train_label": x[:, 2:3]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        kantk.fit(kantk.KAN([5, 1], seed=0), data, steps=1, progress=False)


def test_a_data_module_with_several_validation_loaders_records_the_first():
    """kantk.fit's history took no test rows (the metrics were val_loss/dataloader_idx_N) yet
    counted the evaluations, and its last evaluation merged every loader's rows into one."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    near = kantk.create_dataset("x1*x2", n_vars=2, train_num=64, test_num=30, seed=0)
    far = kantk.create_dataset("x1*x2", n_vars=2, ranges=(1, 2), train_num=8, test_num=20, seed=1)

    class Data(pl.LightningDataModule):
        def __init__(self, sets):
            super().__init__()
            self.sets = sets

        def train_dataloader(self):
            return DataLoader(TensorDataset(near["train_input"], near["train_label"]), batch_size=64)

        def val_dataloader(self):
            loaders = [
                DataLoader(TensorDataset(d["test_input"], d["test_label"]), batch_size=64) for d in self.sets
            ]
            return loaders if len(loaders) > 1 else loaders[0]

    histories = []
    for sets in ([near, far], [near]):
        model = kantk.KAN([2, 3, 1], seed=0)
        histories.append(
            kantk.fit(model, Data(sets), steps=6, optimizer="adam", eval_every=2, progress=False)
        )
    both, alone = histories
    assert both.eval_step == alone.eval_step == [2, 4, 6]
    assert both.test_loss == alone.test_loss and both.test_rmse == alone.test_rmse
