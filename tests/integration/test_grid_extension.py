"""GridExtension inside a real Lightning run, and the grid-extension example."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import kantk
from kantk.lightning import GridExtension, KANModule, TensorDataModule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def data():
    return kantk.create_dataset(
        "exp(sin(pi*x1) + x2**2)", n_vars=2, train_num=128, test_num=64, seed=0, dtype=torch.float64
    )


class _Probe(pl.Callback):
    """Records the model's training predictions just before and just after the callbacks that follow it."""

    def __init__(self, x: torch.Tensor, records: list):
        self.x, self.records = x, records

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        with torch.no_grad():
            self.records.append((trainer.global_step, pl_module.model(self.x).clone()))


def _trainer(tmp_path, steps, callbacks):
    return pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
    )


@pytest.mark.parametrize(
    ("optimizer", "widths", "options"),
    [
        # hidden inputs leave the uniform grid range: keep the outer knots to keep the function there
        ("lbfgs", [2, 3, 1], {"uniform": False}),
        # one layer, inputs within the grid range: the uniform (fast) refinement is exact there
        ("adam", [2, 2], {"uniform": True}),
    ],
)
def test_refines_on_schedule_keeps_the_function_and_trains_the_new_parameters(
    tmp_path, data, optimizer, widths, options
):
    if widths[-1] == 2:
        data = {k: v.expand(-1, 2) if k.endswith("label") else v for k, v in data.items()}
    module = KANModule(
        widths, basis_kwargs={"grid_size": 3}, optimizer=optimizer, dtype="float64", init_seed=0
    )
    model = module.model
    x = data["train_input"]
    before, after = [], []
    extension = GridExtension(grid_sizes=(6, 12), every=3, **options)
    callbacks = [_Probe(x, before), extension, _Probe(x, after)]
    _trainer(tmp_path, 8, callbacks).fit(module, datamodule=TensorDataModule(data, batch_size=-1))

    assert extension.refined_at == [(3, 6), (6, 12)]
    assert module.model is model  # refined in place: whoever holds the model sees the finer grids
    assert all(layer.basis.grid_size == 12 for layer in model.layers)
    assert all(layer.basis.is_uniform() == options["uniform"] for layer in model.layers)
    for step in (3, 6):  # the function is kept across each refinement (3 -> 6 -> 12 are nested)
        old = dict(before)[step]
        new = dict(after)[step]
        assert float((new - old).norm() / old.norm()) < 1e-10
    optimizer_params = {id(p) for group in module.trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimizer_params == {id(p) for p in model.parameters()}  # rebuilt for the new parameters
    last_refined, final = dict(after)[6], model(x).detach()
    assert not torch.equal(last_refined, final)  # training went on with the new parameters
    assert module.hparams.basis_kwargs["grid_size"] == 12


def test_checkpoints_after_refining_load(tmp_path, data):
    module = KANModule(
        [2, 2, 1], basis_kwargs={"grid_size": 4}, optimizer="lbfgs", dtype="float64", init_seed=0
    )
    trainer = _trainer(tmp_path, 4, [GridExtension(grid_sizes=[8], steps=[2])])
    trainer.fit(module, datamodule=TensorDataModule(data, batch_size=-1))
    path = tmp_path / "refined.ckpt"
    trainer.save_checkpoint(path)
    restored = KANModule.load_from_checkpoint(path)
    assert restored.model.layers[0].basis.grid_size == 8
    x = data["test_input"]
    torch.testing.assert_close(restored.model(x), module.model(x))


def test_a_schedule_past_the_model_bound_is_refused_before_training(tmp_path, data, monkeypatch):
    """A config's grid_sizes: [100000000] was accepted and asked for 3.5 GB once training ran."""
    import kantk.lightning.grid_extension as grid_extension

    monkeypatch.setattr(grid_extension, "MAX_MODEL_NUMBERS", 1000)
    module = KANModule([2, 5, 1], basis_kwargs={"grid_size": 4}, optimizer="adam", init_seed=0)
    before = [p.detach().clone() for p in module.parameters()]
    extension = GridExtension(grid_sizes=[20, 100], every=1)  # 15 edges x 100 = 1,500 > 1,000
    with pytest.raises(ValueError, match=r"grid_sizes entry 100 asks for at least 1,500 coefficients"):
        _trainer(tmp_path, 3, [extension]).fit(module, datamodule=TensorDataModule(data, batch_size=-1))
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters())) and extension.refined_at == []
    within = GridExtension(grid_sizes=[20, [60, 40]], every=1)  # 10 edges x 60 + 5 x 40 = 800
    _trainer(tmp_path, 3, [within]).fit(module, datamodule=TensorDataModule(data, batch_size=-1))
    assert within.refined_at == [(1, 20), (2, [60, 40])]


def test_a_schedule_the_bases_cannot_follow_is_refused_before_training(tmp_path, data):
    """A coarser entry (grid_size 5, then [8, 3]) ended the run with the basis' error at its step,
    after every step before it (hours into a long run); the RBF's num_centers likewise."""
    for basis, options, sizes, layer, why in (
        ("bspline", {"grid_size": 5}, [8, 3], 0, "grid_size must be >= 8"),
        ("bspline", {"grid_size": 5}, [[6, 4]], 1, "grid_size must be >= 5 .*, got 4"),
        ("rbf", {"num_centers": 8}, [6], 0, "num_centers must be >= 8"),
    ):
        module = KANModule([2, 3, 1], basis=basis, basis_kwargs=options, optimizer="adam", init_seed=0)
        before = [p.detach().clone() for p in module.parameters()]
        extension = GridExtension(grid_sizes=sizes, steps=[2 + i for i in range(len(sizes))])
        trainer = _trainer(tmp_path, 5, [extension])
        with pytest.raises(ValueError, match=rf"GridExtension grid_sizes entry .*: layer {layer}: .*{why}"):
            trainer.fit(module, datamodule=TensorDataModule(data, batch_size=-1))
        assert trainer.global_step == 0 and extension.refined_at == []
        assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_a_run_resumed_after_a_refinement_checks_only_the_entries_left(tmp_path, data):
    """The schedule check saw the refined model and the whole schedule (refined_at comes back after
    setup): a resume of a run past its refinements to 5 and 8 was refused as "5 is coarser than 8"."""
    module = KANModule([2, 2, 1], basis_kwargs={"grid_size": 3}, optimizer="adam", init_seed=0)
    trainer = _trainer(tmp_path, 5, [GridExtension(grid_sizes=(5, 8, 10), steps=(2, 4, 7))])
    trainer.fit(module, datamodule=TensorDataModule(data, batch_size=-1))
    trainer.save_checkpoint(tmp_path / "r.ckpt")
    resumed = KANModule.load_from_checkpoint(tmp_path / "r.ckpt")
    assert resumed.model.layers[0].basis.grid_size == 8
    extension = GridExtension(grid_sizes=(5, 8, 10), steps=(2, 4, 7))
    later = _trainer(tmp_path, 8, [extension])
    later.fit(resumed, datamodule=TensorDataModule(data, batch_size=-1), ckpt_path=tmp_path / "r.ckpt")
    assert extension.refined_at == [(2, 5), (4, 8), (7, 10)] and resumed.model.layers[0].basis.grid_size == 10


def test_fit_with_grid_extension_refines_the_users_model(data):
    model = kantk.KAN([2, 1, 1], basis_kwargs={"grid_size": 3}, seed=1)
    extension = GridExtension(grid_sizes=[5, 10], every=2)
    history = kantk.fit(model, data, steps=6, progress=False, callbacks=[extension], seed=0)
    assert len(history.train_loss) == 6 and all(math.isfinite(v) for v in history.train_loss)
    assert model.layers[0].basis.grid_size == 10 and model.layers[0].coef.shape[-1] == 13


def test_state_dict_round_trip():
    extension = GridExtension(grid_sizes=[5, [10, 20]], every=10)
    extension.refined_at = [(10, 5)]
    again = GridExtension(grid_sizes=[5, [10, 20]], every=10)
    again.load_state_dict(extension.state_dict())
    assert again.refined_at == [(10, 5)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid_sizes": 5, "every": 10}, "non-empty list"),
        ({"grid_sizes": [], "every": 10}, "non-empty list"),
        ({"grid_sizes": [5, 2.5], "every": 10}, "ints >= 1"),
        ({"grid_sizes": [5]}, "exactly one of every"),
        ({"grid_sizes": [5], "every": 10, "steps": [10]}, "exactly one of every"),
        ({"grid_sizes": [5], "every": 0}, "every must be an int >= 1"),
        ({"grid_sizes": [5, 10], "steps": [10]}, "1 steps for 2 grid_sizes"),
        ({"grid_sizes": [5, 10], "steps": [10, 10]}, "increasing"),
    ],
)
def test_bad_arguments_say_what_is_accepted(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridExtension(**kwargs)


@pytest.mark.parametrize("engine", ["loop", "fit"])
def test_example_quick_runs_and_reports(tmp_path, monkeypatch, capsys, engine):
    monkeypatch.chdir(tmp_path)
    path = ROOT / "examples" / "grid_extension.py"
    spec = importlib.util.spec_from_file_location("grid_extension_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows = example.main(["--quick", "--engine", engine])
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot
    out = capsys.readouterr().out
    assert "| widths | G |" in out and "[2, 5, 1]" in out
    assert [(r["widths"], r["grid"]) for r in rows] == [
        (w, g) for w in ([2, 1, 1], [2, 5, 1]) for g in (3, 5, 10)
    ]
    for r in rows:
        assert math.isfinite(r["train_rmse"]) and math.isfinite(r["test_rmse"]) and r["test_rmse"] < 3
        assert math.isfinite(r["test_rmse_extend"])
        if (
            r["grid"] != 3
        ):  # (on G = 3 after 2 steps, a cubic continued over a wide outer interval can be far off)
            assert r["test_rmse_extend"] < 3
        if r["grid"] != 3:  # grids adapted to data are refined exactly (3 -> 5 and 5 -> 10)
            assert r["refine_change"] < 1e-10
    plot = tmp_path / "sub" / "curve.png"
    plot.parent.mkdir()
    example.plot(rows, str(plot))
    assert plot.stat().st_size > 1000


def _nan_loss(nan_at):
    """A custom MSE loss that is NaN on the calls ``nan_at(call)`` says (1 = the first step)."""
    calls = [0]

    def loss(model, batch):
        x, y = batch
        calls[0] += 1
        value = ((model(x) - y) ** 2).mean()
        return value * float("nan") if nan_at(calls[0]) else value

    return loss


def _fit_nan_at(nan_at, steps, callbacks, **kwargs):
    """kantk.fit (Adam) of a [2, 3, 1] KAN on G = 3 with the loss NaN where ``nan_at`` says."""
    data = kantk.create_dataset("x1*x2", n_vars=2, train_num=100, test_num=20, seed=0)
    model = kantk.KAN([2, 3, 1], basis_kwargs={"grid_size": 3}, seed=0)
    kantk.fit(
        model,
        data,
        steps=steps,
        optimizer="adam",
        loss=_nan_loss(nan_at),
        eval_every=100,
        progress=False,
        callbacks=callbacks,
        **kwargs,
    )
    return model


def test_a_nan_after_a_refinement_goes_back_to_the_refined_model():
    """The NaN guard's snapshots kept the coarse shapes: a NaN loss after GridExtension refined the
    grids ended in "size mismatch for layers.0.coef" instead of a restore."""
    extension = GridExtension(grid_sizes=(6,), steps=[3])
    with pytest.warns(UserWarning, match="back at the parameters of step 3, when it was last restructured"):
        model = _fit_nan_at(lambda call: call >= 4, 8, [extension])  # the first step after refining
    assert extension.refined_at == [(3, 6)] and model.layers[0].basis.grid_size == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_refined_run_resumes_from_its_checkpoint(tmp_path):
    """trainer.fit(ckpt_path=...) builds the module from the coarse arguments; the checkpoint holds
    the refined layers ("size mismatch for model.layers.0.coef"). The resumed run equals the
    uninterrupted one."""
    from kantk.lightning import FunctionDataModule

    def run(steps, ckpt=None, save=None):
        module = KANModule([2, 3, 1], basis_kwargs={"grid_size": 3}, optimizer="adam", init_seed=0)
        data = FunctionDataModule("x1*x2", n_vars=2, train_num=100, test_num=20, seed=0)
        trainer = _trainer(tmp_path, steps, [GridExtension(grid_sizes=(6,), steps=[2])])
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return module

    full = run(6)
    run(4, save=tmp_path / "half.ckpt")
    resumed = run(6, ckpt=tmp_path / "half.ckpt")
    assert resumed.model.layers[0].basis.grid_size == 6
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)


def test_a_model_gone_nan_between_guard_checks_is_not_refined():
    """With NaNGuard(every=10) (the accelerator default) a NaN at step 3 was refined into the new
    grids at step 5, and the guard then 'restored' the refined, non-finite snapshot."""
    from kantk.lightning import NaNGuard

    extension, guard = GridExtension(grid_sizes=(6,), steps=[5]), NaNGuard(every=10)
    with pytest.warns(UserWarning, match="training stopped at step 10"):
        # a NaN gradient at step 3 only
        model = _fit_nan_at(lambda call: call == 3, 12, [extension, guard], nan_guard=False)
    assert extension.refined_at == [] and guard.restored_to == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_grid_extension_under_ddp_is_refused_as_bad_configuration():
    """It raised a RuntimeError, which kantk fit printed as an "internal error" on every rank."""
    from types import SimpleNamespace

    from kantk.cli import describe_error

    with pytest.raises(ValueError, match="GridExtension runs on one process only") as raised:
        GridExtension([5, 10], every=2).setup(SimpleNamespace(world_size=2), KANModule([2, 1]), "fit")
    assert describe_error(raised.value).startswith("kantk: GridExtension runs on one process only")


class _HalvingEveryEpoch(KANModule):
    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5),
        }


def test_a_refinement_keeps_the_learning_rate_schedule(tmp_path):
    """The optimizer rebuilt for the new parameters went back to its first learning rate, and a
    StepLR to its first step: 0.01, 0.005, 0.0025, then 0.005 again after a refinement at step 8."""
    from kantk.lightning import FunctionDataModule

    rates = []

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    module = _HalvingEveryEpoch(
        [2, 3, 1], optimizer="adam", lr=0.01, init_seed=0, basis_kwargs={"grid_size": 3}
    )
    data = FunctionDataModule("x1*x2", n_vars=2, train_num=64, test_num=16, batch_size=16)  # 4 steps an epoch
    extension = GridExtension(grid_sizes=(5,), steps=(8,))
    _trainer(tmp_path, 16, [Record(), extension]).fit(module, datamodule=data)
    assert extension.refined_at == [(8, 5)] and module.model.layers[0].basis.grid_size == 5
    assert rates == pytest.approx([0.01, 0.005, 0.0025, 0.00125], rel=1e-12)
