"""``loss=`` as a callable ``(model, batch) -> scalar``: kantk.fit (Adam and LBFGS), KANModule,
regularisers, evaluation, checkpoints."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch

import kantk
from kantk.lightning import KANModule, TensorDataModule


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's small-dataset and worker hints
        yield


def mse(model, batch):
    x, y = batch
    return (model(x) - y).square().mean()


def _data():
    return kantk.create_dataset("x1*x2", n_vars=2, train_num=64, test_num=32, seed=0)


def test_callable_mse_matches_the_builtin_loss_with_adam():
    histories, models = [], []
    for loss in ("mse", mse):
        model = kantk.KAN([2, 3, 1], seed=0)
        histories.append(
            kantk.fit(model, _data(), steps=4, optimizer="adam", loss=loss, seed=0, progress=False)
        )
        models.append(model)
    builtin, custom = histories
    # the same objective written two ways: equal up to float32 round-off of the two formulas
    torch.testing.assert_close(torch.tensor(custom.train_loss), torch.tensor(builtin.train_loss))
    torch.testing.assert_close(torch.tensor(custom.test_loss), torch.tensor(builtin.test_loss))
    assert custom.train_rmse == [] and custom.test_rmse == [] and custom.train_accuracy == []
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)


def test_callable_loss_with_lbfgs_and_regularisers_trains():
    torch.manual_seed(0)
    model = kantk.KAN([2, 3, 1], seed=0)
    history = kantk.fit(
        model, _data(), steps=3, loss=mse, regularisers={"l1_entropy": 1e-3}, seed=0, progress=False
    )
    assert len(history.train_loss) == 3 and all(r > 0 for r in history.regularisation)
    assert history.train_loss[-1] < history.train_loss[0] / 2  # LBFGS on x*y falls fast


def test_labels_are_optional_with_a_callable_loss():
    seen = []

    def shrink(model, batch):
        x, y = batch
        seen.append(tuple(y.shape))
        return model(x).square().mean()

    data = _data()
    model = kantk.KAN([2, 3, 1], seed=0)
    history = kantk.fit(
        model, {"train_input": data["train_input"]}, steps=2, optimizer="adam", loss=shrink, progress=False
    )
    assert len(history.train_loss) == 2 and seen[0] == (64, 0)


def test_predict_on_dict_batches_is_refused_in_one_line(tmp_path):
    """A custom loss trains on dict batches; trainer.predict on them failed inside kantk with
    "AttributeError: 'dict' object has no attribute 'is_floating_point'"."""
    from torch.utils.data import DataLoader

    rows = [{"x": torch.rand(2), "y": torch.rand(1)} for _ in range(6)]
    module = KANModule([2, 3, 1], init_seed=0, loss=lambda model, batch: model(batch["x"]).square().mean())
    trainer = pl.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    with pytest.raises(
        ValueError, match=r"got a dict with keys 'x', 'y'; for other batches override predict_step"
    ):
        trainer.predict(module, dataloaders=DataLoader(rows, batch_size=3))
    assert [
        p.shape for p in trainer.predict(module, dataloaders=DataLoader(torch.rand(6, 2), batch_size=4))
    ] == [
        (4, 1),
        (2, 1),
    ]


def test_evaluation_runs_the_callable_with_gradients():
    """A derivative-based loss (d u / d x by autograd) works in validation, which Lightning runs
    under inference mode."""

    def slope(model, batch):
        x = batch[0].detach().requires_grad_(True)
        (du,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return (du - 1).square().mean()

    model = kantk.KAN([2, 3, 1], seed=0)
    history = kantk.fit(model, _data(), steps=2, optimizer="adam", loss=slope, progress=False)
    assert len(history.test_loss) >= 1 and all(v > 0 for v in history.test_loss)


def test_a_bad_return_value_is_named():
    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.raises(TypeError, match="must return a floating scalar tensor"):
        kantk.fit(model, _data(), steps=1, loss=lambda m, b: m(b[0]), progress=False)


def test_a_pykan_style_loss_of_pred_and_target_is_explained():
    # pykan's loss_fn(pred, target): "'list' object has no attribute 'size'", "unsupported operand
    # type(s) for -: 'KAN' and 'list'"
    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match=r"loss=MSELoss\(\) is a loss of \(pred, target\)"):
        kantk.fit(model, _data(), steps=1, loss=torch.nn.MSELoss(), progress=False)
    for loss in (torch.nn.functional.mse_loss, lambda pred, y: ((pred - y) ** 2).mean()):
        with pytest.raises((TypeError, AttributeError)) as info:
            kantk.fit(model, _data(), steps=1, loss=loss, progress=False)
        note = " ".join(getattr(info.value, "__notes__", [])) + str(info.value)
        assert "kantk calls a custom loss as loss(model, batch)" in note
        assert "loss_fn(model(batch[0]), batch[1])" in note

    def buggy(model, batch):  # a loss's own bug keeps its own message and type
        return (model(batch[0]) - batch[1]).square().mean() * None

    with pytest.raises(TypeError, match="unsupported operand type") as info:
        kantk.fit(model, _data(), steps=1, loss=buggy, progress=False)
    assert not getattr(info.value, "__notes__", None)


def test_checkpoint_records_the_name_and_needs_the_callable_again(tmp_path):
    module = KANModule([2, 3, 1], loss=mse, init_seed=0)
    assert module.hparams.loss == f"custom:{__name__}.mse"
    trainer = pl.Trainer(
        max_steps=2,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=TensorDataModule(_data(), batch_size=16))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    with pytest.raises(ValueError, match="pass it again"):
        KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    loaded = KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True, loss=mse)
    assert loaded.custom_loss is mse
    x = _data()["test_input"]
    torch.testing.assert_close(loaded.model(x), module.model(x))


def test_unknown_loss_name_lists_the_choices():
    with pytest.raises(ValueError, match="valid losses: mse, cross_entropy or a callable"):
        KANModule([2, 1], loss="l2")
