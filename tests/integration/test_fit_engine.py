"""kantk.fit's engine: the evaluation schedule, the NaN guard callback, Ctrl-C, tensor batches."""

from __future__ import annotations

import os
import signal
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import kantk
import kantk.training
from kantk.lightning import KANModule, NaNGuard, TensorDataModule

TOY = "exp(sin(pi*x1) + x2**2)"


@pytest.fixture()
def data():
    return kantk.create_dataset(TOY, n_vars=2, train_num=200, test_num=100, seed=0, dtype=torch.float64)


def _model():
    return kantk.KAN([2, 3, 1], seed=0).to(torch.float64)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _test_rmse(model, data, rows=slice(None)):
    with torch.no_grad():
        pred = model(data["test_input"][rows])
    return float((pred - data["test_label"][rows]).square().mean().sqrt())


# --- evaluation schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "every", "expected"), [(5, 2, [2, 4, 5]), (6, 3, [3, 6]), (3, None, [1, 2, 3])]
)
def test_eval_every_sets_the_schedule_and_the_history_says_when(data, steps, every, expected):
    history = kantk.fit(_model(), data, steps=steps, eval_every=every, progress=False, seed=0)
    assert history.eval_step == expected
    assert len(history.test_rmse) == len(history.test_loss) == len(expected)
    assert len(history.train_loss) == steps  # training metrics stay per step


def test_adam_evaluates_every_10_steps_and_after_the_last(data):
    model = _model()
    history = kantk.fit(model, data, steps=23, optimizer="adam", batch=50, progress=False, seed=0)
    assert history.eval_step == [10, 20, 23]
    assert history.test_rmse[-1] == pytest.approx(_test_rmse(model, data), rel=1e-12)


def test_a_large_test_split_is_sampled_until_the_last_evaluation(data, monkeypatch):
    monkeypatch.setattr(kantk.training, "EVAL_ROWS", 40)  # the test split (100 rows) counts as large
    model = _model()
    history = kantk.fit(model, data, steps=4, eval_every=2, progress=False, seed=0)
    assert history.eval_step == [2, 4]
    # the last row: the whole split, exactly
    assert history.test_rmse[-1] == pytest.approx(_test_rmse(model, data), rel=1e-12)
    # the others: a fixed subset of 40 rows (seed 0, kept in order)
    rows = torch.randperm(100, generator=torch.Generator().manual_seed(0))[:40].sort().values
    replay = _model()
    kantk.fit(replay, data, steps=2, eval_every=2, progress=False, seed=0)
    assert history.test_rmse[0] == pytest.approx(_test_rmse(replay, data, rows), rel=1e-12)


def test_bad_eval_every_is_refused(data):
    with pytest.raises(ValueError, match="eval_every must be an int >= 1 or None"):
        kantk.fit(_model(), data, steps=2, eval_every=0, progress=False)


def test_mini_batches_by_indexing_match_per_sample_collation():
    x, y = torch.randn(37, 3), torch.randn(37, 1)
    module = TensorDataModule({"train_input": x, "train_label": y}, batch_size=8, shuffle=True)
    loader = module.train_dataloader()
    fast = [tuple(t.clone() for t in b) for b in loader]
    order = list(loader.sampler)  # the same epoch's order again
    assert sorted(order) == list(range(37)) and order != list(range(37))
    slow = list(DataLoader(TensorDataset(x, y), batch_size=8, sampler=order))
    assert len(fast) == len(slow) == 5
    for (fx, fy), (sx, sy) in zip(fast, slow, strict=True):
        assert torch.equal(fx, sx) and torch.equal(fy, sy)


# --- NaN guard ----------------------------------------------------------------------------------


def test_a_successful_fit_does_not_warn(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kantk.fit(_model(), data, steps=3, progress=False, seed=0)


def test_without_a_finite_start_the_warning_says_so_and_the_model_stays(data):
    model = _model()
    with torch.no_grad():
        model.layers[0].coef.fill_(1e300)  # finite parameters whose loss overflows to inf
    before = _state(model)
    with pytest.warns(UserWarning, match="the loss was not finite from the first step"):
        kantk.fit(model, data, steps=4, optimizer="adam", progress=False, seed=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_guard_can_be_switched_off(data):
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kantk.fit(model, data, steps=3, optimizer="adam", lr=1e300, nan_guard=False, progress=False, seed=0)
    assert not all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_guard_checking_every_3_steps_goes_back_to_a_checked_state(data):
    guard = NaNGuard(every=3)

    class BlowUpAtStep5(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 4:  # the 5th step starts from NaN parameters
                with torch.no_grad():
                    pl_module.model.layers[0].coef.fill_(float("nan"))

    model = _model()
    reference = _model()
    kantk.fit(reference, data, steps=3, optimizer="adam", progress=False, seed=0)
    with pytest.warns(UserWarning, match=r"stopped at step 6: .* back at the parameters after step 3"):
        history = kantk.fit(
            model,
            data,
            steps=9,
            optimizer="adam",
            progress=False,
            seed=0,
            nan_guard=False,
            callbacks=[guard, BlowUpAtStep5()],
        )
    assert guard.restored_at == 6 and guard.restored_to == 3
    assert len(history.train_loss) == 6
    for k, v in model.state_dict().items():  # the state checked after step 3
        assert torch.equal(v, reference.state_dict()[k]), k
    assert guard.state_dict()["restored_at"] == 6


def test_a_trainer_keeps_its_own_guard_and_the_module_adds_one_otherwise():
    module = KANModule([2, 2, 1], init_seed=0)
    own = NaNGuard(every=4)
    trainer = pl.Trainer(max_steps=1, callbacks=[own], logger=False, enable_checkpointing=False)
    module.trainer = trainer
    assert not any(isinstance(c, NaNGuard) for c in module.configure_callbacks())
    bare = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False)
    module.trainer = bare
    assert any(isinstance(c, NaNGuard) for c in module.configure_callbacks())
    module.nan_guard = False
    assert not any(isinstance(c, NaNGuard) for c in module.configure_callbacks())


def test_the_guard_works_under_the_lightning_package():
    pytest.importorskip("lightning")
    import lightning as L

    from kantk.lightning.unified import FunctionDataModule as LFunctionDataModule
    from kantk.lightning.unified import KANModule as LKANModule

    class BlowUp(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2:
                with torch.no_grad():
                    pl_module.model.layers[0].coef.fill_(float("nan"))

    module = LKANModule([2, 2, 1], init_seed=0, dtype="float64")
    trainer = L.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[BlowUp()],
    )
    datamodule = LFunctionDataModule("x1*x2", 2, train_num=50, test_num=10, dtype="float64")
    with pytest.warns(UserWarning, match=r"stopped at step 3: .* back at the parameters after step 1"):
        trainer.fit(module, datamodule=datamodule)
    assert all(bool(torch.isfinite(p).all()) for p in module.model.parameters())
    assert trainer.global_step == 3
    assert [type(c).__name__ for c in trainer.callbacks].count("NaNGuard") == 1


# --- Ctrl-C -------------------------------------------------------------------------------------


class _InterruptAt(pl.Callback):
    def __init__(self, step, how):
        self.step, self.how = step, how

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            if self.how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            # Python runs the handler at the next bytecode: KeyboardInterrupt inside this step


@pytest.fixture
def python_sigint():
    """SIGINT handled by Python's own handler (KeyboardInterrupt), as in a terminal, for the test's
    duration: a process that a shell without job control starts in the background (``cmd &`` in a
    script, CI runners among them) inherits SIGINT ignored, and the signal would do nothing."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("how", ["raise", "sigint"])
def test_ctrl_c_raises_keyboard_interrupt_after_a_checkpoint(data, tmp_path, how, optimizer, python_sigint):
    reference = _model()
    kantk.fit(reference, data, steps=3, optimizer=optimizer, batch=-1, progress=False, seed=0)
    model = _model()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="interrupted after step 3"):
        kantk.fit(
            model,
            data,
            steps=10,
            optimizer=optimizer,
            log_dir=tmp_path,
            progress=False,
            seed=0,
            callbacks=[_InterruptAt(3, how)],
        )
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's SIG_IGN is undone
    # the parameters of the last completed step
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference.state_dict()[k]), k
    (checkpoint,) = tmp_path.glob("**/interrupted-step=3.ckpt")
    restored = KANModule.load_from_checkpoint(checkpoint)
    for k, v in model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[k], v), k


def test_ctrl_c_without_log_dir_writes_nothing(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        kantk.fit(_model(), data, steps=5, progress=False, callbacks=[_InterruptAt(1, "raise")])
    assert list(tmp_path.iterdir()) == []


def test_lbfgs_stops_quietly_once_the_loss_is_round_off(data):
    # labels the model already reproduces: the MSE is at round-off from the start, and LBFGS must
    # stop there instead of dividing its objective by round-off (which sent refits of symbolic
    # edges to NaN after they had converged, and the NaN guard warned about successful fits)
    model = _model()
    with torch.no_grad():
        exact = {**data, "train_label": model(data["train_input"]), "test_label": model(data["test_input"])}
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = kantk.fit(model, exact, steps=10, progress=False, seed=0)
    assert len(history) == 1 and history.eval_step == [1]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- the History's names ------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_history_holds_the_logged_metrics_under_its_names(task, tmp_path):
    """Every History field but eval_step is one logged metric (TRAIN_FIELDS, EVAL_FIELDS), with the
    values a log_dir's metrics.csv holds: val_* there is test_* in the History (same split)."""
    import csv
    from dataclasses import fields

    mapping = {**kantk.training.TRAIN_FIELDS, **kantk.training.EVAL_FIELDS}
    assert sorted([*mapping.values(), "eval_step"]) == sorted(f.name for f in fields(kantk.History))
    if task == "regression":
        data = kantk.create_dataset(TOY, n_vars=2, train_num=60, test_num=30, seed=0)
        model, loss = kantk.KAN([2, 3, 1], seed=0), "mse"
    else:
        data = kantk.create_dataset(
            "x2 > sin(pi*x1)/2", n_vars=2, task="classification", train_num=60, test_num=30, seed=0
        )
        model, loss = kantk.KAN([2, 3, 2], seed=0), "cross_entropy"
    history = kantk.fit(
        model, data, steps=3, loss=loss, regularisers={"coef_l1": 1e-3}, log_dir=tmp_path, progress=False
    )
    (path,) = tmp_path.glob("kantk/version_0/metrics.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    logged = {name for name in rows[0] if name not in ("step", "epoch", "lr")}
    assert {mapping[name] for name in logged} == set(history.as_dict()) - {"eval_step"}
    for name in logged:
        column = [float(row[name]) for row in rows if row[name] != ""]
        # the same float32 tensors, read back from their CSV text: agree to its printed digits
        assert column == pytest.approx(getattr(history, mapping[name]), rel=1e-6), name


# --- found in review (stop 33) ------------------------------------------------------------------


def test_a_grid_update_due_on_a_partial_batch_waits_for_a_full_one():
    """101 rows in batches of 50: step 2's batch is one row, and its update put every knot within
    0.002 of it (test RMSE 33x worse at the end of the helper's run)."""
    data = kantk.create_dataset(TOY, n_vars=2, train_num=101, test_num=50, seed=0, dtype=torch.float64)
    model = _model()
    kantk.fit(
        model,
        data,
        steps=4,
        optimizer="adam",
        batch=50,
        grid_update_every=1,
        grid_update_until=3,
        progress=False,
    )
    grid = model.layers[0].basis.grid
    assert bool(((grid[:, -1] - grid[:, 0]) > 1.0).all()), grid  # spans the data, [-1, 1]


def test_fit_s_final_checkpoint_is_its_own_not_a_user_s_best(data, tmp_path):
    """The user's ModelCheckpoint(monitor=...) came first: fit named the last step's state as that
    callback's best, with val_loss=0.0000 in its name."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    best = ModelCheckpoint(monitor="val_loss", filename="best-{step}-{val_loss:.4f}", save_top_k=1)
    kantk.fit(
        _model(),
        data,
        steps=6,
        optimizer="adam",
        lr=1.0,
        eval_every=1,
        progress=False,
        log_dir=tmp_path,
        callbacks=[best],
    )
    names = sorted(p.name for p in tmp_path.glob("**/*.ckpt"))
    assert [n for n in names if n.startswith("best-")] == [os.path.basename(best.best_model_path)], names
    assert "val_loss=0.0000" not in " ".join(names)


def test_ctrl_c_inside_an_lbfgs_step_resumes_as_if_uninterrupted(data, tmp_path):
    """The checkpoint kept LBFGS's state of the interrupted step beside the parameters of its start:
    the resumed run ended 0.085 away from the uninterrupted one."""
    calls = {"n": 0, "stop_at": None}

    def loss(model, batch):  # Ctrl-C on the 20th evaluation: inside step 2's line search
        x, y = batch
        if model.training:
            calls["n"] += 1
            if calls["n"] == calls["stop_at"]:
                raise KeyboardInterrupt
        return torch.mean((model(x) - y) ** 2)

    reference = _model()
    kantk.fit(reference, data, steps=5, loss=loss, progress=False)
    model = _model()
    calls.update(n=0, stop_at=20)
    with pytest.raises(KeyboardInterrupt):
        kantk.fit(model, data, steps=5, loss=loss, progress=False, log_dir=tmp_path)
    (checkpoint,) = tmp_path.glob("**/interrupted-step=*.ckpt")
    calls["stop_at"] = None
    module = KANModule.from_model(model, optimizer="lbfgs", loss=loss)
    trainer = pl.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, TensorDataModule(data), ckpt_path=checkpoint)
    for k, v in reference.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v), k


def test_training_ended_by_max_epochs_is_evaluated_after_its_last_step(data):
    """max_epochs in trainer_kwargs ended training at step 14: the last evaluation was step 10's."""
    model = _model()
    history = kantk.fit(
        model, data, steps=1000, optimizer="adam", batch=32, progress=False, trainer_kwargs={"max_epochs": 2}
    )
    assert history.eval_step[-1] == len(history.train_loss) == 14  # 7 batches of 200 rows per epoch
    assert history.test_rmse[-1] == pytest.approx(_test_rmse(model, data), rel=1e-12)


def test_training_ended_before_its_first_evaluation_is_still_evaluated(data):
    """max_epochs=1 ended an Adam run at step 7, before its first evaluation (step 10): the History
    had no test row at all (``history.test_rmse[-1]`` an IndexError)."""
    model = _model()
    history = kantk.fit(
        model, data, steps=100, optimizer="adam", batch=32, progress=False, trainer_kwargs={"max_epochs": 1}
    )
    assert history.eval_step == [7]
    assert history.test_rmse[-1] == pytest.approx(_test_rmse(model, data), rel=1e-12)
    # validation switched off by the user stays off
    off = kantk.fit(
        _model(),
        data,
        steps=100,
        optimizer="adam",
        batch=32,
        progress=False,
        trainer_kwargs={"max_epochs": 1, "limit_val_batches": 0},
    )
    assert off.eval_step == [] and len(off.train_loss) == 7


def test_a_user_data_module_ended_early_is_evaluated_after_its_last_step(data):
    """kantk.fit's last evaluation was for its own data modules only: a plain LightningDataModule
    whose run max_epochs ended at step 14 reported step 10's test metrics."""

    class Plain(pl.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(TensorDataset(data["train_input"], data["train_label"]), batch_size=40)

        def val_dataloader(self):
            return DataLoader(TensorDataset(data["test_input"], data["test_label"]), batch_size=30)

    model = _model()
    history = kantk.fit(
        model, Plain(), steps=1000, optimizer="adam", progress=False, trainer_kwargs={"max_epochs": 3}
    )
    assert history.eval_step == [10, 15]  # 5 batches per epoch
    assert history.test_rmse[-1] == pytest.approx(_test_rmse(model, data), rel=1e-12)

    class NoValidation(pl.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(TensorDataset(data["train_input"], data["train_label"]), batch_size=40)

    one_epoch = {"max_epochs": 1}
    quiet = kantk.fit(
        _model(), NoValidation(), steps=100, optimizer="adam", progress=False, trainer_kwargs=one_epoch
    )
    assert quiet.eval_step == [] and len(quiet.train_loss) == 5


def test_a_grid_update_callback_reused_with_smaller_batches_still_updates():
    """Its largest batch carried over: a second run in batches of 20 after one of 100 waited for
    a "full" batch at every due step and never updated."""
    from kantk.lightning import GridUpdateCallback

    data = kantk.create_dataset(TOY, n_vars=2, train_num=100, test_num=20, seed=0, dtype=torch.float64)
    module = KANModule.from_model(_model(), optimizer="adam")
    callback = GridUpdateCallback(every=1, until=3)
    for batch in (100, 20):
        trainer = pl.Trainer(
            max_steps=3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[callback],
        )
        trainer.fit(module, TensorDataModule(data, batch_size=batch))
    assert callback.updated_at == [0, 1, 2, 0, 1, 2]


def test_lbfgs_from_a_start_that_is_not_finite_stops_with_the_guard_s_word(data):
    """A regulariser that is NaN from the start: torch's line search failed with an IndexError
    instead of the NaN guard's warning."""
    from kantk.plugins import hookimpl
    from kantk.types import RegulariserSpec

    class Plugin:
        @staticmethod
        @hookimpl
        def kantk_regularisers():
            yield RegulariserSpec("nan", lambda: lambda model, x: torch.tensor(float("nan")), "NaN")

    model = _model()
    before = _state(model)
    registry = kantk.Registry.with_plugins(Plugin)
    with pytest.warns(UserWarning, match="not finite from the first step"):
        kantk.fit(model, data, steps=3, regularisers={"nan": 1.0}, progress=False, registry=registry)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_single_device_trainer_in_a_program_with_a_process_group_trains_as_one_process(monkeypatch):
    """The loss weight and the regularisers' sync read the global process group: a Trainer on one
    device, in a program that made a group of 2 processes for something else, doubled its data
    loss (weight rows * 2 / rows) and reduced statistics over the unrelated process."""
    import kantk.lightning.module as module_code

    module = KANModule([2, 2, 1], init_seed=0)
    module.trainer = pl.Trainer(
        max_steps=1, devices=1, accelerator="cpu", logger=False, enable_checkpointing=False
    )
    monkeypatch.setattr(module_code, "_distributed", lambda: True)  # a group of 2 exists
    assert not module._distributed() and module._shard_weight(10) == 1.0


def test_lbfgs_backs_off_from_a_trial_point_where_a_penalty_is_not_finite():
    """A barrier penalty, finite at the start and NaN past its wall, ended LBFGS's strong-Wolfe
    search in torch's IndexError (the guard covered only each step's start); a trial point that is
    not finite is now "far too high" and the search backs off, so the wall is never crossed."""

    class Barrier:
        def __call__(self, model, x):
            m = torch.stack([layer.coef.abs().max() for layer in model.layers]).max()
            return -torch.log(0.2 - m)  # NaN once a coefficient passes 0.2

    class Plugin:
        @kantk.hookimpl
        def kantk_regularisers(self):
            yield kantk.RegulariserSpec("barrier_test", Barrier)

    registry = kantk.Registry.with_plugins(Plugin())
    data = kantk.create_dataset("x1*x2", n_vars=2, train_num=64, test_num=32, seed=0)
    model = kantk.KAN([2, 3, 1], seed=0)
    start = float((model(data["train_input"]) - data["train_label"]).square().mean())
    kantk.fit(model, data, steps=20, regularisers={"barrier_test": 1e-3}, progress=False, registry=registry)
    assert max(float(layer.coef.abs().max()) for layer in model.layers) < 0.2  # inside the wall
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert (
        float((model(data["train_input"]) - data["train_label"]).square().mean()) < 0.8 * start
    )  # it trained (to 0.56 of the start here: the wall caps the coefficients)
