"""KANModule, the data modules and the grid-update callback under a real Lightning Trainer."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

import kantk
from kantk.lightning import (
    CSVDataModule,
    FunctionDataModule,
    GridExtension,
    GridUpdateCallback,
    KANModule,
    TensorDataModule,
)

TOY = "exp(sin(pi*x1) + x2**2)"


def _trainer(tmp_path, **kwargs):
    settings = {
        "default_root_dir": tmp_path,
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 3,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    settings.update(kwargs)
    return pl.Trainer(**settings)


def _data(**kwargs):
    return FunctionDataModule(TOY, 2, train_num=200, test_num=100, seed=0, **kwargs)


def test_trainer_run_logs_metrics(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    module = KANModule([2, 3, 1], optimizer="adam", lr=0.02, regularisers={"l1_entropy": 1e-3}, init_seed=0)
    trainer = _trainer(tmp_path, max_steps=20, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    trainer.fit(module, datamodule=_data(batch_size=50))
    assert trainer.global_step == 20
    metrics = trainer.callback_metrics
    assert {"train_loss", "train_rmse", "reg", "lr", "val_loss", "val_rmse"} <= set(metrics)
    assert metrics["reg"] > 0 and metrics["lr"] == pytest.approx(0.02)
    header = next((tmp_path / "lightning_logs" / "version_0" / "metrics.csv").open()).strip().split(",")
    assert {"train_rmse", "val_rmse", "reg", "lr"} <= set(header)
    # val_rmse is exact over the whole split, not a mean of batch means
    dm = _data()
    x, y = dm.dataset["test_input"], dm.dataset["test_label"]
    with torch.no_grad():
        expected = torch.sqrt(torch.mean((module(x) - y) ** 2))
    assert metrics["val_rmse"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_lbfgs_step_is_one_trainer_step(tmp_path):
    module = KANModule([2, 3, 1], optimizer="lbfgs", init_seed=0, optimizer_kwargs={"max_iter": 4})
    calls = []
    objective = module.objective
    module.objective = lambda x, y: (calls.append(1), objective(x, y))[1]
    trainer = _trainer(tmp_path, max_steps=3)
    trainer.fit(module, datamodule=_data())
    assert trainer.global_step == 3
    assert len(calls) > 3  # several closure evaluations per step
    opt = trainer.optimizers[0]
    assert isinstance(opt, torch.optim.LBFGS)
    group = opt.param_groups[0]
    assert (group["history_size"], group["line_search_fn"], group["tolerance_grad"], group["max_iter"]) == (
        30,
        "strong_wolfe",
        1e-32,
        4,  # pykan's settings with a longer curvature history (LBFGS_DEFAULTS)
    )


def test_load_from_checkpoint_takes_the_registry_of_plugins_not_installed(tmp_path):
    """``registry=`` was dropped without a word (Lightning passes on only what ``__init__`` takes),
    while the error for an unknown symbolic function advised passing it: a checkpoint using a
    ``Registry.with_plugins`` plugin could not be loaded in Python at all."""
    import sympy

    import kantk
    from kantk.registry import UnknownComponentError

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_regularisers():
            yield kantk.RegulariserSpec(
                "coef_sq_test", lambda: lambda model, x: model.layers[0].coef.square().sum()
            )

        @staticmethod
        @kantk.hookimpl
        def kantk_symbolic_libraries():
            yield kantk.SymbolicLibrarySpec(
                "hyper_test", lambda: [kantk.SymbolicFunction("sinh", torch.sinh, sympy.sinh, complexity=3)]
            )

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, 2, 1], seed=0)
    kantk.fix_symbolic(model, 1, 0, 0, "sinh", fit_params=False, library="hyper_test", registry=registry)
    module = KANModule.from_model(
        model, registry=registry, optimizer="adam", regularisers={"coef_sq_test": 1e-3}
    )
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.fit(module, datamodule=_data())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(UnknownComponentError, match="coef_sq_test"):
        KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    loaded = KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True, registry=registry)
    assert loaded.model.layers[1].symbolic_config() == module.model.layers[1].symbolic_config()
    x = torch.rand(5, 2)
    torch.testing.assert_close(loaded.model(x), module.model(x), rtol=0, atol=0)
    with pytest.raises(TypeError, match="registry must be a kantk.Registry or None, got str"):
        KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True, registry="hyper_test")


def test_a_checkpoint_that_would_load_another_symbolic_function_is_said_so(tmp_path):
    """kantk.save refuses it (tests/unit/test_io.py); a checkpoint warns, not to end the run."""
    import sympy

    import kantk
    from kantk.symbolic import get_library

    shadow = kantk.SymbolicFunction("sin", torch.cos, sympy.cos, complexity=2)
    model = kantk.KAN([2, 2, 1], seed=0)
    library = get_library("default").with_functions(shadow, name="default")
    kantk.fix_symbolic(model, 1, 0, 0, "sin", fit_params=False, library=library)
    module = KANModule.from_model(model, optimizer="adam")
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.fit(module, datamodule=_data())
    with pytest.warns(UserWarning, match="the checkpoint will not load as saved: layer 1: edge 0 -> 0 uses"):
        trainer.save_checkpoint(tmp_path / "m.ckpt")


def test_a_pruned_model_put_in_a_module_checkpoints_its_own_structure(tmp_path):
    """``module.model = kantk.prune(module.model, x)``: the hyperparameters kept widths [2, 5, 1],
    and the checkpoints neither loaded nor resumed ("size mismatch for model.layers.0.coef")."""
    import kantk

    data = _data(dtype="float64")
    module = KANModule([2, 5, 1], optimizer="adam", init_seed=0, dtype="float64")
    _trainer(tmp_path, max_steps=2).fit(module, datamodule=data)
    with torch.no_grad():  # hidden node 4 silent: the pruning drops it
        for name in ("coef", "scale_base", "scale_sp"):
            getattr(module.model.layers[0], name)[4] = 0
    module.model = kantk.prune(module.model, data.dataset["train_input"])
    assert module.model.widths == [2, 4, 1]
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    loaded = KANModule.load_from_checkpoint(tmp_path / "p.ckpt", weights_only=True)
    x = torch.rand(6, 2, dtype=torch.float64)
    assert loaded.model.widths == [2, 4, 1] and module.hparams["widths"] == [2, 4, 1]
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
    # resumed into a module built from the original widths (trainer.fit(ckpt_path=...))
    fresh = KANModule([2, 5, 1], optimizer="adam", init_seed=0, dtype="float64")
    with pytest.warns(UserWarning, match=r"widths \[2, 4, 1\] \(pruned, or another model\); it replaces"):
        _trainer(tmp_path, max_steps=4).fit(fresh, datamodule=data, ckpt_path=tmp_path / "p.ckpt")
    torch.testing.assert_close(fresh(x), module(x), rtol=0, atol=0)  # 4 steps both: nothing more to do


def test_a_refined_model_put_in_a_module_checkpoints_its_grids(tmp_path):
    """Only other widths were recorded: ``module.model = kantk.refine(module.model, 8)`` kept
    basis_kwargs of grid 5, and the checkpoint did not load (size mismatch)."""
    import kantk

    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0, dtype="float64")
    module.model = kantk.refine(module.model, 8)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=_data(dtype="float64"))
    trainer.save_checkpoint(tmp_path / "r.ckpt")
    loaded = KANModule.load_from_checkpoint(tmp_path / "r.ckpt", weights_only=True)
    assert loaded.model.layers[0].basis.grid_size == 8
    x = torch.rand(5, 2, dtype=torch.float64)
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)


def test_load_from_checkpoint_rebuilds_the_model(tmp_path):
    module = KANModule(
        [2, 4, 1],
        basis=["bspline", "rbf"],
        basis_kwargs=[{"grid_size": 7}, None],
        base_activation="silu",
        optimizer="adam",
        dtype="float64",
        init_seed=3,
        regularisers={"coef_l1": {"weight": 1e-4}},
    )
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=_data())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = KANModule.load_from_checkpoint(path)
    assert restored.model.config() == module.model.config()
    assert restored.model_dtype == torch.float64
    assert restored.hparams.regularisers == {"coef_l1": {"weight": 1e-4}}
    assert [r.name for r in restored.regularisers] == ["coef_l1"]
    x = torch.rand(16, 2, dtype=torch.float64)
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)


def test_checkpoint_keeps_updated_grids(tmp_path):
    module = KANModule([2, 3, 1], optimizer="adam", grid_update_every=1, grid_update_until=2, init_seed=0)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=_data())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = KANModule.load_from_checkpoint(path)
    for a, b in zip(restored.model.layers, module.model.layers):
        assert torch.equal(a.basis.grid, b.basis.grid)
    x = torch.rand(16, 2) * 2 - 1
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize("when", ["before_wrapping", "after_wrapping"])
def test_symbolic_edges_survive_a_checkpoint(tmp_path, when):
    """Symbolic edges, fixed before from_model (kantk.fit after auto_symbolic, the docs' recipe)
    or on the wrapped model later, are in the checkpoint: it loads, with the same functions and
    outputs (they were names outside the hyperparameters: "Unexpected key(s) symbolic_affine")."""
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], seed=0)
    if when == "before_wrapping":
        kantk.fix_symbolic(model, 0, 1, 2, "sin")
    module = KANModule.from_model(model, optimizer="adam")
    if when == "after_wrapping":
        kantk.fix_symbolic(model, 0, 1, 2, "sin")
    kantk.fix_symbolic(model, 1, 1, 0, "x^2")
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=_data())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = KANModule.load_from_checkpoint(path)
    for a, b in zip(restored.model.layers, model.layers):
        assert a.symbolic_config() == b.symbolic_config()
    x = torch.rand(16, 2, dtype=torch.float64)
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["kantk_symbolic"] = checkpoint["kantk_symbolic"][:1]
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="one entry per layer"):
        KANModule.load_from_checkpoint(tmp_path / "bad.ckpt")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_seed_initialises_as_kan_built_in_that_dtype(dtype):
    """configs/toy.yaml's comment: init_seed with dtype float64 is KAN(seed=...) built with float64
    as the default dtype (drawn in float64; casting a float32 KAN gives other numbers)."""
    module = KANModule([2, 5, 1], dtype=dtype, init_seed=0)
    torch.set_default_dtype(getattr(torch, dtype))
    model = kantk.KAN([2, 5, 1], seed=0)
    for a, b in zip(module.model.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_from_model_wraps_the_same_instance_and_records_its_structure():
    model = kantk.KAN([2, 3, 2], basis=["chebyshev", "bspline"], basis_kwargs=[{"degree": 4}, None], seed=0)
    module = KANModule.from_model(model, loss="cross_entropy", optimizer="adamw")
    assert module.model is model
    assert module.hparams.widths == [2, 3, 2]
    assert module.hparams.basis == ["chebyshev", "bspline"]
    assert module.hparams.basis_kwargs[0] == {"degree": 4}
    assert module.hparams.dtype == "float32"
    rebuilt = KANModule(**{k: v for k, v in module.hparams.items() if not k.startswith("_")})
    assert rebuilt.model.config() == model.config()
    with pytest.raises(TypeError, match="do not pass widths"):
        KANModule.from_model(model, widths=[2, 1])


def test_product_node_models_train_and_reload_from_a_checkpoint(tmp_path):
    # KAN([2, [0, 1], 1], mult_arity=3): the arity is part of the structure the checkpoint rebuilds.
    model = kantk.KAN([2, [1, 1], 1], mult_arity=3, seed=0)
    module = KANModule.from_model(model, optimizer="adam")
    assert module.hparams.widths == [2, [1, 1], 1]
    assert module.hparams.model_kwargs == {"mult_arity": 3}
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=_data())
    path = tmp_path / "mult.ckpt"
    trainer.save_checkpoint(path)
    restored = KANModule.load_from_checkpoint(path)
    assert restored.model.config() == model.config()
    x = torch.rand(16, 2) * 2 - 1
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)
    with pytest.raises(TypeError, match="mult_arity"):
        KANModule.from_model(model, model_kwargs={"mult_arity": 2})
    built = KANModule([2, [0, 1], 1], init_seed=0)  # the pykan spelling, arity 2
    assert built.model.widths == [2, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "rmsprop"}, "valid optimizers: adam, adamw, lbfgs"),
        ({"loss": "l1"}, "valid losses: mse, cross_entropy"),
        ({"dtype": "float16"}, "valid dtypes: float32, float64"),
        ({"grid_update_every": 0}, "grid_update_every must be an int >= 1"),
        ({"grid_update_until": True}, "grid_update_until must be an int >= 1 or None, got True"),
        ({"grid_eps": 1.5}, "grid_eps must be a number in [0, 1], got 1.5"),
        ({"lr": 0}, "lr must be a finite number > 0, got 0"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0, got -0.1"),
        ({"optimizer": "lbfgs", "optimizer_kwargs": {"betas": (0.9, 0.99)}}, "accepted optimizer_kwargs:"),
        # values: each ended in an internal error at the first step (after the sanity check), or
        # grew one LBFGS step to 5 GB (history_size 1000000)
        ({"optimizer": "lbfgs", "optimizer_kwargs": {"history_size": 0}}, "history_size must be an int >= 1"),
        ({"optimizer": "lbfgs", "optimizer_kwargs": {"history_size": 10**6}}, "must be at most 1,000, got"),
        ({"optimizer": "lbfgs", "optimizer_kwargs": {"line_search_fn": "evil"}}, "'strong_wolfe' or None"),
        ({"optimizer": "lbfgs", "optimizer_kwargs": {"tolerance_change": -1}}, "finite number >= 0, got -1"),
        ({"optimizer": "adam", "optimizer_kwargs": {"betas": [0.9]}}, "refuses optimizer_kwargs"),
        ({"optimizer": "adam", "optimizer_kwargs": {"betas": "abc"}}, "refuses optimizer_kwargs"),
        ({"optimizer": "adamw", "optimizer_kwargs": {"eps": -1.0}}, "Invalid epsilon value"),
        # flags that contradict each other, whatever the device
        (
            {"optimizer": "adam", "optimizer_kwargs": {"fused": True, "foreach": True}},
            "cannot be `True` together",
        ),
    ],
)
def test_bad_module_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        KANModule([2, 1], **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("widths", "basis_kwargs", "message"),
    [
        ([2, 4, 2], {"grid_size": 10**8}, "holds 2,200,000,138 numbers"),  # 3.2 GB of coef before
        ([2, 10**9, 1], None, "ask for 1,000,000,003 nodes"),  # a list of 2e9 names before
        ([2, [10**6, 1], 1], None, "ask for 1,000,004 nodes"),
        ([500_000, 500_000], None, "holds 2,750,006,000,000 numbers"),  # 2.5e11 edges: fine on meta
    ],
)
def test_a_model_too_large_to_build_from_arguments_is_refused_before_it_is_built(
    widths, basis_kwargs, message
):
    """A YAML config is untrusted input: its sizes are checked on the meta device (no memory)."""
    with pytest.raises(ValueError, match="KANModule.from_model") as info:
        KANModule(widths, basis_kwargs=basis_kwargs)
    assert message in str(info.value)
    big = KANModule([64, 64, 1], basis_kwargs={"grid_size": 100})  # 0.4M numbers: built as before
    assert big.model.layers[0].coef.shape == (64, 64, 103)


def test_unknown_regulariser_in_module_lists_known():
    with pytest.raises(kantk.UnknownComponentError, match="known regulariser names: coef_l1"):
        KANModule([2, 1], regularisers={"entropy": 1.0})


def test_label_shape_mismatch_in_a_trainer_run(tmp_path):
    data = kantk.create_dataset(TOY, 2, train_num=50, test_num=10)
    module = KANModule([2, 2], optimizer="adam")  # two outputs, labels have one
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(
        ValueError, match="train labels has shape \\(50, 1\\) but the model outputs \\(samples, 2\\)"
    ):
        _trainer(tmp_path).fit(module, datamodule=TensorDataModule(data))
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())


# --- data modules ------------------------------------------------------------------------------


def test_full_batch_is_one_batch_without_collation():
    dm = _data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 1
    x, y = batches[0]
    assert x is dm.dataset["train_input"] and y is dm.dataset["train_label"]
    ((vx, _),) = list(dm.val_dataloader())
    assert vx.shape == (100, 2)


def test_mini_batches_cover_the_split():
    dm = _data(batch_size=64, shuffle=True)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [b[0].shape[0] for b in batches] == [64, 64, 64, 8]
    seen = torch.cat([b[0] for b in batches])
    assert torch.equal(
        seen[seen[:, 0].argsort()], dm.dataset["train_input"][dm.dataset["train_input"][:, 0].argsort()]
    )


def test_tensor_datamodule_checks_data_and_batch_size():
    data = kantk.create_dataset(TOY, 2, train_num=20, test_num=5)
    data["train_label"][2, 0] = float("nan")
    with pytest.raises(ValueError, match="train_label contains 1 NaN"):
        TensorDataModule(data)
    with pytest.raises(ValueError, match="batch_size must be a positive int or -1"):
        TensorDataModule(kantk.create_dataset(TOY, 2, train_num=20, test_num=5), batch_size=0)


def test_num_workers_is_bounded_by_the_cores(monkeypatch):
    """A config is input: num_workers 1000000 forked over 1,300 DataLoader workers of 327 MB each."""
    import kantk.lightning.datamodules as datamodules

    assert datamodules.max_workers() >= datamodules.MIN_MAX_WORKERS
    monkeypatch.setattr(datamodules, "max_workers", lambda: 20)
    data = kantk.create_dataset(TOY, 2, train_num=20, test_num=5)
    assert TensorDataModule(data, batch_size=5, num_workers=20).num_workers == 20
    for cls, kwargs in ((TensorDataModule, {"dataset": data}), (FunctionDataModule, {"f": TOY, "n_vars": 2})):
        with pytest.raises(
            ValueError, match=r"^num_workers must be at most 20 \(the larger of 16 and .*got 1000000$"
        ):
            cls(**kwargs, batch_size=5, num_workers=1000000)
    TensorDataModule(data, batch_size=-1, num_workers=1000000)  # full batch starts no workers


@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")
def test_no_test_split_means_no_validation(tmp_path):
    data = kantk.create_dataset(TOY, 2, train_num=30, test_num=5)
    del data["test_input"], data["test_label"]
    module = KANModule([2, 2, 1], optimizer="adam")
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=TensorDataModule(data))
    assert trainer.global_step == 2 and "val_rmse" not in trainer.callback_metrics


def test_csv_datamodule(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        "x1,x2,y\n" + "\n".join(f"{i / 50 - 1},{(i * 7 % 50) / 25 - 1},{i / 100}" for i in range(50))
    )
    dm = CSVDataModule(str(path), label_columns="y", test_fraction=0.2, seed=0)
    assert dm.dataset["train_input"].shape == (40, 2) and dm.dataset["test_label"].shape == (10, 1)
    assert dm.hparams.label_columns == "y"
    module = KANModule([2, 2, 1], optimizer="adam")
    _trainer(tmp_path, max_steps=2).fit(module, datamodule=dm)


def test_classification_module_logs_accuracy(tmp_path):
    module = KANModule([2, 3, 2], loss="cross_entropy", optimizer="lbfgs", init_seed=0)
    dm = FunctionDataModule("x2 > sin(pi*x1)/2", 2, task="classification", train_num=200, test_num=100)
    trainer = _trainer(tmp_path, max_steps=5)
    trainer.fit(module, datamodule=dm)
    assert trainer.callback_metrics["val_acc"] > 0.8
    assert "train_acc" in trainer.callback_metrics and "val_rmse" not in trainer.callback_metrics


# --- grid-update callback ----------------------------------------------------------------------


def test_grid_schedule_matches_pykan():
    cb = GridUpdateCallback()  # pykan: every 5 steps until step 50
    assert [s for s in range(100) if cb.due(s)] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert [s for s in range(10) if GridUpdateCallback(every=3, until=7).due(s)] == [0, 3, 6]
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        GridUpdateCallback(every=0)
    with pytest.raises(
        ValueError, match=r"GridUpdateCallback grid_eps must be a number in \[0, 1\], got -0.1"
    ):
        GridUpdateCallback(grid_eps=-0.1)


def test_module_adds_the_callback_only_when_asked():
    def grid_callbacks(module):  # the module also brings its NaN guard (tests/integration/test_fit_engine.py)
        return [c for c in module.configure_callbacks() if type(c).__name__ != "NaNGuard"]

    assert grid_callbacks(KANModule([2, 1])) == []
    (cb,) = grid_callbacks(KANModule([2, 1], grid_update_every=5))
    assert isinstance(cb, GridUpdateCallback) and (cb.every, cb.until, cb.grid_eps) == (5, 50, 0.02)


def test_callback_updates_on_schedule_in_a_run(tmp_path):
    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0)
    cb = GridUpdateCallback(every=2, until=5)
    trainer = _trainer(tmp_path, max_steps=6, callbacks=[cb])
    before = module.model.layers[1].basis.grid.clone()
    trainer.fit(module, datamodule=_data())
    assert cb.updated_at == [0, 2, 4]
    assert not torch.equal(before, module.model.layers[1].basis.grid)


@pytest.mark.parametrize("own", [False, True], ids=["callback", "module_schedule"])
def test_a_resumed_run_with_grid_updates_waits_for_a_full_batch_as_the_uninterrupted_one(tmp_path, own):
    """The largest batch seen lived only in memory and on_train_start reset it: after a resume the
    first due update counted any batch as full, and one on an epoch's 1-row tail put every knot of
    the first layer within 0.002 of that row (the run ended 0.12 away from the uninterrupted one).
    97 rows in batches of 16: 6 full batches and one of 1 row per epoch."""
    x = torch.rand(120, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:] ** 2)
    data = {"train_input": x[:97], "train_label": y[:97], "test_input": x[97:], "test_label": y[97:]}

    def run(steps, ckpt=None, save=None):
        pl.seed_everything(0, verbose=False)
        schedule = {"grid_update_every": 3, "grid_update_until": 8} if own else {}
        module = KANModule([2, 3, 1], optimizer="adam", lr=1e-2, dtype="float64", init_seed=0, **schedule)
        callbacks = [] if own else [GridUpdateCallback(every=3, until=8)]
        trainer = _trainer(tmp_path, max_steps=steps, limit_val_batches=0, callbacks=callbacks)
        trainer.fit(module, datamodule=TensorDataModule(data, batch_size=16), ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        (cb,) = [c for c in trainer.callbacks if isinstance(c, GridUpdateCallback)]
        return torch.cat([p.detach().flatten() for p in module.parameters()]), cb.updated_at

    full, updated = run(12)
    assert updated == [0, 3, 7]  # step 6 is the 1-row batch: that update waits for step 7
    _, first = run(5, save=tmp_path / "part.ckpt")
    resumed, second = run(12, ckpt=tmp_path / "part.ckpt")
    assert (first, second) == ([0, 3], [7])
    assert torch.equal(resumed, full)


class _NotAKAN(pl.LightningModule):
    """A module whose ``model`` is no KAN: the grid callbacks refuse it before training."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.model(batch[0].float()).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("callback", [GridUpdateCallback(every=1), GridExtension(grid_sizes=[6], every=1)])
def test_grid_callbacks_refuse_a_model_that_is_not_a_kan(tmp_path, callback):
    name = type(callback).__name__
    with pytest.raises(
        TypeError, match=rf"^{name} .*pl_module.model, which must be a kantk.KAN; _NotAKAN has Linear$"
    ):
        _trainer(tmp_path, callbacks=[callback]).fit(_NotAKAN(), datamodule=_data())


def test_csv_predict_path_is_read_by_kantks_csv_reader(tmp_path):
    """read_inputs (CSVDataModule's predict_path) used np.loadtxt: a file with a byte-order mark lost
    its first row, and quoted fields were refused."""
    from kantk.lightning.datamodules import read_inputs

    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf0.1,0.2\r\n0.3,0.4\r\n")
    assert read_inputs(str(tmp_path / "bom.csv")).tolist() == [[0.1, 0.2], [0.3, 0.4]]
    (tmp_path / "q.csv").write_text('a,b\n"0.1","0.2"\n')
    assert read_inputs(str(tmp_path / "q.csv")).tolist() == [[0.1, 0.2]]
    (tmp_path / "bad.csv").write_text("0.1,0.2\n0.3,x\n")
    with pytest.raises(ValueError, match="line 2"):
        read_inputs(str(tmp_path / "bad.csv"))


def test_adamw_decays_by_default_and_weight_decay_overrides():
    """weight_decay defaulted to 0.0 and was always passed, so AdamW trained exactly as Adam
    (docs/training.md: "for weight decay use optimizer='adamw'")."""
    module = KANModule([2, 1], optimizer="adamw")
    assert module.configure_optimizers().param_groups[0]["weight_decay"] == 0.01  # torch's default
    assert KANModule([2, 1], optimizer="adam").configure_optimizers().param_groups[0]["weight_decay"] == 0
    explicit = KANModule([2, 1], optimizer="adamw", weight_decay=0.0)
    assert explicit.configure_optimizers().param_groups[0]["weight_decay"] == 0.0


def test_a_wrapped_model_above_the_bound_reloads_from_its_checkpoint(tmp_path, monkeypatch):
    """from_model is the documented way past MAX_MODEL_NUMBERS, but load_from_checkpoint rebuilt
    the module through __init__ and refused its own checkpoint."""
    import kantk.lightning.module as module_file

    monkeypatch.setattr(module_file, "MAX_MODEL_NUMBERS", 100)
    model = kantk.KAN([2, 5, 1], seed=0)  # 249 numbers
    with pytest.raises(ValueError, match="more than KANModule builds from its arguments"):
        KANModule([2, 5, 1])
    module = KANModule.from_model(model)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "big.ckpt")
    loaded = KANModule.load_from_checkpoint(tmp_path / "big.ckpt", weights_only=True)
    assert torch.equal(loaded.model.layers[0].coef, model.layers[0].coef)
    with pytest.raises(ValueError, match="more than KANModule builds"):
        KANModule([2, 5, 1])  # the bound is back after loading


def test_a_resumed_lbfgs_run_equals_the_uninterrupted_one(tmp_path):
    """Resuming reset LBFGS's objective divisor and cleared the curvature history Lightning had just
    restored: parameters 0.08 away from the uninterrupted run's (Adam was already bit-identical)."""
    from kantk.lightning import FunctionDataModule

    def run(steps, ckpt=None, save=None):
        pl.seed_everything(0, verbose=False)
        module = KANModule([2, 3, 1], optimizer="lbfgs", dtype="float64", init_seed=0)
        data = FunctionDataModule(
            "exp(sin(pi*x1) + x2**2)", n_vars=2, train_num=200, test_num=50, dtype="float64"
        )
        trainer = _trainer(tmp_path, max_steps=steps, limit_val_batches=0)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    full = run(8)
    run(4, save=tmp_path / "half.ckpt")
    assert torch.equal(run(8, ckpt=tmp_path / "half.ckpt"), full)
    # a fresh fit of a module loaded from that checkpoint still starts its own scale
    loaded = KANModule.load_from_checkpoint(tmp_path / "half.ckpt", weights_only=True)
    assert loaded._resumed_lbfgs is not None
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(
        loaded, datamodule=FunctionDataModule("x1", n_vars=2, train_num=20, test_num=5, dtype="float64")
    )
    assert loaded._resumed_lbfgs is None
    saved_scale = torch.load(tmp_path / "half.ckpt", weights_only=True)["kantk_lbfgs"]["scale"]
    assert loaded._lbfgs_scale is not None and loaded._lbfgs_scale != saved_scale  # its own objective


def test_load_from_checkpoint_takes_the_dtype_asked_for(tmp_path):
    """``dtype="float64"`` was overwritten by the checkpoint tensors' float32 while the
    hyperparameters said float64."""
    from kantk.lightning import MLPModule

    data = FunctionDataModule("x1*x2", n_vars=2, train_num=32, test_num=8)
    for cls, kwargs, key in (
        (KANModule, {"widths": [2, 3, 1], "init_seed": 0}, "model.layers.0.coef"),
        (MLPModule, {"widths": [2, 4, 1]}, "model.layers.0.weight"),
    ):
        module = cls(**kwargs)
        trainer = _trainer(tmp_path, max_steps=1)
        trainer.fit(module, datamodule=data)
        trainer.save_checkpoint(tmp_path / "f32.ckpt")
        wide = cls.load_from_checkpoint(tmp_path / "f32.ckpt", dtype="float64")
        assert wide.hparams.dtype == "float64" and wide.model_dtype == torch.float64
        saved = module.state_dict()[key]
        assert torch.equal(wide.state_dict()[key], saved.double())
        assert cls.load_from_checkpoint(tmp_path / "f32.ckpt").model_dtype == torch.float32


@pytest.mark.parametrize("stop", [10, 14], ids=["mid_epoch", "epoch_end"])
def test_a_resumed_shuffled_mini_batch_run_equals_the_uninterrupted_one(tmp_path, stop):
    """Shuffled mini-batches were drawn from torch's global generator, which checkpoints do not
    keep: an Adam run resumed at an epoch's end ended 0.008 away, one resumed in mid-epoch 0.04
    (Lightning then also restarts the epoch's batches). 200 rows in batches of 32: 7 per epoch."""
    x = torch.rand(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = x[:, :1] * x[:, 1:]
    data = {"train_input": x[:200], "train_label": y[:200], "test_input": x[200:], "test_label": y[200:]}

    def run(steps, ckpt=None, save=None, seed=0):
        pl.seed_everything(seed, verbose=False)
        module = KANModule([2, 3, 1], optimizer="adam", lr=1e-2, dtype="float64", init_seed=0)
        trainer = _trainer(tmp_path, max_steps=steps, limit_val_batches=0)
        trainer.fit(module, datamodule=TensorDataModule(data, batch_size=32), ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    full = run(24)
    run(stop, save=tmp_path / "part.ckpt")
    assert torch.equal(run(24, ckpt=tmp_path / "part.ckpt"), full)
    assert not torch.equal(run(24, seed=1), full)  # another seed (same initial model): other orders


class _Recorder(pl.LightningModule):
    """Records the rows of every training batch (10 rows numbered 0..9 in batches of 3)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0][:, 0].long().tolist())
        return (self.w * batch[0]).sum() * 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize(
    "loader, trainer",
    [({"num_workers": 1}, {}), ({}, {"reload_dataloaders_every_n_epochs": 1}), ({"shuffle": False}, {})],
    ids=["worker_process", "reloaded_loaders", "unshuffled"],
)
def test_resumed_shuffled_batches_with_workers_or_reloads(tmp_path, loader, trainer):
    """A worker process fetches the first epoch's rows before Lightning numbers it, and a reload
    built a sampler with a new seed: resumed runs took other batches from the next epoch on. Only
    shuffled loaders kept their place: an unshuffled run resumed at step 2 took batches 0 and 1
    again, skipped 2 and 3, and cut its epoch short."""
    rows = torch.arange(10.0)[:, None]
    data = {"train_input": rows, "train_label": torch.zeros(10, 1)}

    def run(ckpt=None, save_at=None):
        pl.seed_everything(0, verbose=False)
        module = _Recorder()
        callbacks = []
        if save_at:
            callbacks.append(
                ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1, filename="{step}")
            )
        settings = {
            "max_steps": -1,
            "max_epochs": 3,
            "callbacks": callbacks,
            "enable_checkpointing": bool(save_at),
        }
        run_trainer = _trainer(tmp_path, **settings, **trainer)
        run_trainer.fit(module, datamodule=TensorDataModule(data, batch_size=3, **loader), ckpt_path=ckpt)
        return module.seen

    full = run(save_at=True)
    assert len(full) == 12
    if loader.get("shuffle") is False:
        assert full == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] * 3  # the stored order every epoch
    for step in (2, 4, 5, 8):
        assert run(ckpt=tmp_path / f"step={step}.ckpt") == full[step:], step


def test_a_shuffled_run_resumes_without_shuffle_or_on_more_processes(tmp_path):
    """The checkpoint holds the training loader's state; a loader that keeps none (no shuffle,
    full batch, DDP) made Lightning refuse it ("0 stateful loaders, but found 1 states")."""
    data = {"train_input": torch.arange(10.0)[:, None], "train_label": torch.zeros(10, 1)}
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(_Recorder(), datamodule=TensorDataModule(data, batch_size=3))
    trainer.save_checkpoint(tmp_path / "shuffled.ckpt")
    for kwargs in ({"batch_size": 3, "shuffle": False}, {"batch_size": -1}):
        module = _Recorder()
        _trainer(tmp_path, max_steps=6).fit(
            module, datamodule=TensorDataModule(data, **kwargs), ckpt_path=tmp_path / "shuffled.ckpt"
        )
        assert len(module.seen) == 2


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("recorded", [True, False], ids=["names", "older-checkpoint"])
def test_a_run_saved_after_fix_symbolic_resumes(tmp_path, optimizer, recorded):
    """An edge fixed symbolic during a run adds symbolic_affine parameters the run's optimizer was
    made without; resuming from its checkpoint failed with "loaded state dict contains a parameter
    group that doesn't match the size of optimizer's group". The optimizer state is now matched by
    parameter name: Adam's moments stay with their tensors, the new parameters start without state
    (an LBFGS history over the old parameters starts over)."""
    from kantk.lightning import FunctionDataModule

    def data():
        return FunctionDataModule("x1**2 + sin(x2)", n_vars=2, train_num=64, test_num=16, seed=0)

    pl.seed_everything(0, verbose=False)
    module = KANModule([2, 3, 1], optimizer=optimizer, init_seed=0)
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=data())
    kantk.fix_symbolic(module.model, 0, 0, 0, "x^2", fit_params=False)
    trainer.save_checkpoint(tmp_path / "sym.ckpt")
    if not recorded:  # a checkpoint written before the names were recorded
        checkpoint = torch.load(tmp_path / "sym.ckpt", weights_only=True)
        del checkpoint["kantk_optimizer_params"]
        torch.save(checkpoint, tmp_path / "sym.ckpt")
    saved = torch.load(tmp_path / "sym.ckpt", weights_only=True)["optimizer_states"][0]

    resumed = KANModule([2, 3, 1], optimizer=optimizer)
    restored = {}

    class Spy(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            optim = trainer.optimizers[0]
            for name, p in pl_module.named_parameters():
                restored[name] = {k: v.clone() for k, v in optim.state.get(p, {}).items()}

    trainer = _trainer(tmp_path, max_steps=5, limit_val_batches=0, callbacks=[Spy()])
    trainer.fit(resumed, datamodule=data(), ckpt_path=tmp_path / "sym.ckpt")
    assert resumed.model.layers[0].symbolic_mask[0, 0] == 1
    assert restored["model.layers.0.symbolic_affine"] == {}
    if optimizer == "adam":  # coef was the optimizer's first parameter, and keeps its moments
        assert torch.equal(restored["model.layers.0.coef"]["exp_avg"], saved["state"][0]["exp_avg"])
        assert restored["model.layers.1.coef"] != {}
    else:
        assert all(state == {} for state in restored.values())
    assert all(torch.isfinite(p).all() for p in resumed.parameters())


def test_a_subclass_whose_optimizer_holds_more_parameters_still_resumes(tmp_path):
    """Matching the optimizer state to self.model's parameters rewrote the state of a subclass's
    own optimizer (one more parameter): "loaded state dict contains a parameter group that doesn't
    match"; such optimizers are left as they are."""
    from kantk.lightning import FunctionDataModule

    class Tempered(KANModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.temp = torch.nn.Parameter(torch.ones(()))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    def data():
        return FunctionDataModule("x1*x2", n_vars=2, train_num=32, test_num=8, seed=0)

    module = Tempered([2, 3, 1], optimizer="adam", init_seed=0)
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=data())
    trainer.save_checkpoint(tmp_path / "sub.ckpt")
    resumed = Tempered([2, 3, 1], optimizer="adam")
    _trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(
        resumed, datamodule=data(), ckpt_path=tmp_path / "sub.ckpt"
    )
    assert resumed.trainer.global_step == 3


def test_an_lbfgs_weight_decay_is_refused_but_old_checkpoints_load(tmp_path):
    KANModule([2, 1], optimizer="lbfgs", weight_decay=0.0)  # the old default, harmless
    with pytest.raises(ValueError, match="lbfgs has none"):
        KANModule([2, 1], optimizer="lbfgs", weight_decay=0.5)
    module = KANModule([2, 1], optimizer="lbfgs")
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["weight_decay"] = 0.5  # accepted and ignored before
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert KANModule.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True).optimizer_name == "lbfgs"


def test_ddp_shards_are_cut_by_the_data_module_from_the_single_process_rows():
    """Under DDP (a stand-in trainer: the data module reads only world_size and global_rank) the
    ranks' validation rows are the val_rows subset one process validates on, cut in two: not
    val_rows of each rank's own shard (twice the rows, other rows than one process)."""
    from types import SimpleNamespace

    from kantk.lightning import TensorDataModule

    data = kantk.create_dataset("x1*x2", n_vars=2, train_num=64, test_num=1000, seed=0)
    single = TensorDataModule(data, batch_size=16, val_rows=100)
    single.setup("fit")
    want = torch.cat([b[0] for b in single.val_dataloader()])
    parts = []
    for rank in (0, 1):
        module = TensorDataModule(data, batch_size=16, val_rows=100)
        module.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        module.setup("fit")
        loader = module.val_dataloader()
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)  # Lightning keeps it
        parts.append(torch.cat([b[0] for b in loader]))
    assert [len(p) for p in parts] == [50, 50]
    assert torch.equal(torch.cat(parts).sort(dim=0).values, want.sort(dim=0).values)


def test_several_validation_and_test_loaders_give_one_set_of_metrics_each(tmp_path):
    """``val_dataloaders=[in_range, far]`` ended in Lightning's "no ``dataloader_idx`` argument in
    ``KANModule.validation_step()``"; the metrics are named as Lightning names them."""
    from torch.utils.data import DataLoader, TensorDataset

    import kantk

    near = kantk.create_dataset("x1*x2", n_vars=2, train_num=8, test_num=30, seed=0)
    far = kantk.create_dataset("x1*x2", n_vars=2, ranges=(1, 2), train_num=8, test_num=20, seed=1)
    loaders = [DataLoader(TensorDataset(d["test_input"], d["test_label"]), batch_size=7) for d in (near, far)]
    module = KANModule([2, 3, 1], init_seed=0)
    trainer = _trainer(tmp_path)
    alone = [trainer.validate(module, dataloaders=[loader], verbose=False)[0] for loader in loaders]
    both = trainer.validate(module, dataloaders=loaders, verbose=False)[0]
    tested = trainer.test(module, dataloaders=loaders, verbose=False)[0]
    for i, metrics in enumerate(alone):
        for name in ("loss", "rmse"):
            assert both[f"val_{name}/dataloader_idx_{i}"] == pytest.approx(metrics[f"val_{name}"], rel=1e-6)
            assert tested[f"test_{name}/dataloader_idx_{i}"] == both[f"val_{name}/dataloader_idx_{i}"]
    assert alone[1]["val_loss"] > 10 * alone[0]["val_loss"]  # two different sets, not one merged
