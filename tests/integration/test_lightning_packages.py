"""kantk with both Lightning packages: ``import lightning as L`` and ``import pytorch_lightning as pl``.

Each package gets a script written as its users write them: train a tiny KANModule for a few
steps, save a checkpoint, resume from it, predict. Then configs with either class-path spelling
through ``kantk fit --config``, and ``kantk.fit`` with the unified package's data module.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

import kantk
from kantk.cli import cli_package, main
from kantk.lightning import compat

pytest.importorskip("lightning")

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


@pytest.fixture(autouse=True)
def _no_lightning_chatter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's small-dataset and worker hints
        yield


def test_script_with_import_lightning_as_L(tmp_path):
    import lightning as L

    from kantk.lightning.unified import FunctionDataModule, KANModule

    L.seed_everything(0)
    data = FunctionDataModule("x1*x2", n_vars=2, train_num=64, test_num=32, batch_size=16, seed=0)
    module = KANModule([2, 3, 1], init_seed=0, grid_update_every=2)
    trainer = L.Trainer(max_steps=3, default_root_dir=tmp_path, **QUIET)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3
    ckpt = tmp_path / "three.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = L.Trainer(max_steps=5, default_root_dir=tmp_path, **QUIET)
    resumed.fit(KANModule([2, 3, 1], init_seed=1, grid_update_every=2), datamodule=data, ckpt_path=ckpt)
    assert resumed.global_step == 5

    loaded = KANModule.load_from_checkpoint(ckpt, weights_only=True)
    predictions = torch.cat(L.Trainer(**QUIET).predict(loaded, datamodule=data))
    x = data.dataset["test_input"]
    assert predictions.shape == (32, 1)
    torch.testing.assert_close(predictions, loaded.model(x).detach())
    torch.testing.assert_close(loaded.model(x), module.model(x))  # the checkpoint holds step 3


def test_script_with_import_pytorch_lightning_as_pl(tmp_path):
    import pytorch_lightning as pl

    from kantk.lightning import FunctionDataModule, KANModule

    pl.seed_everything(0)
    data = FunctionDataModule("x1*x2", n_vars=2, train_num=64, test_num=32, batch_size=16, seed=0)
    module = KANModule([2, 3, 1], init_seed=0, grid_update_every=2)
    trainer = pl.Trainer(max_steps=3, default_root_dir=tmp_path, **QUIET)
    trainer.fit(module, datamodule=data)
    ckpt = tmp_path / "three.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = pl.Trainer(max_steps=5, default_root_dir=tmp_path, **QUIET)
    resumed.fit(KANModule([2, 3, 1], init_seed=1, grid_update_every=2), datamodule=data, ckpt_path=ckpt)
    assert resumed.global_step == 5

    loaded = KANModule.load_from_checkpoint(ckpt, weights_only=True)
    predictions = torch.cat(pl.Trainer(**QUIET).predict(loaded, datamodule=data))
    x = data.dataset["test_input"]
    assert predictions.shape == (32, 1)
    torch.testing.assert_close(predictions, loaded.model(x).detach())
    torch.testing.assert_close(loaded.model(x), module.model(x))


def test_both_packages_train_the_same_model(tmp_path):
    """One implementation: the same seed gives the same parameters under either Trainer."""
    import lightning as L
    import pytorch_lightning as pl

    import kantk.lightning as kl
    import kantk.lightning.unified as ku

    results = []
    for package, classes in ((pl, kl), (L, ku)):
        package.seed_everything(0)
        data = classes.FunctionDataModule("x1*x2", n_vars=2, train_num=32, test_num=8, seed=0)
        module = classes.KANModule([2, 3, 1], init_seed=0, optimizer="lbfgs")
        package.Trainer(max_steps=2, default_root_dir=tmp_path, **QUIET).fit(module, datamodule=data)
        results.append(module.model.state_dict())
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, rtol=0, atol=0)


def test_checkpoints_load_across_packages(tmp_path):
    import lightning as L

    import kantk.lightning as kl
    import kantk.lightning.unified as ku

    module = ku.KANModule([2, 3, 1], init_seed=0, dtype="float64")
    trainer = L.Trainer(max_steps=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(
        module, datamodule=ku.FunctionDataModule("x1+x2", n_vars=2, train_num=16, test_num=4, dtype="float64")
    )
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    other = kl.KANModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    x = torch.rand(5, 2, dtype=torch.float64)
    torch.testing.assert_close(other.model(x), module.model(x))


def test_every_class_exists_for_both_packages():
    import lightning.pytorch as lp
    import pytorch_lightning as pl

    import kantk.lightning as kl
    import kantk.lightning.unified as ku

    assert kl.__all__ == ku.__all__
    bases = {
        "KANModule": "LightningModule",
        "TensorDataModule": "LightningDataModule",
        "FunctionDataModule": "LightningDataModule",
        "CSVDataModule": "LightningDataModule",
        "GridUpdateCallback": "Callback",
        "GridExtension": "Callback",
        "StepProgressBar": "Callback",
    }
    for name, base in bases.items():
        assert issubclass(getattr(kl, name), getattr(pl, base)) and not issubclass(
            getattr(kl, name), getattr(lp, base)
        )
        assert issubclass(getattr(ku, name), getattr(lp, base)) and not issubclass(
            getattr(ku, name), getattr(pl, base)
        )
        assert compat.lightning_package(getattr(ku, name)) == "lightning.pytorch"
        assert compat.lightning_package(getattr(kl, name)) == "pytorch_lightning"
    assert issubclass(ku.FunctionDataModule, ku.TensorDataModule)
    assert ku.KANModule.__module__ == "kantk.lightning.unified.module"


def test_rewrite_imports_changes_only_import_lines():
    source = (
        "import pytorch_lightning as pl\n"
        "from pytorch_lightning.callbacks import ProgressBar\n"
        "    from lightning_fabric.utilities import cloud_io\n"
        "        from kantk.lightning.callbacks import GridUpdateCallback\n"
        "from kantk.lightning.unified import KANModule\n"
        "from kantk.lightningx import y\n"
        "x = 'pytorch_lightning'  # import pytorch_lightning\n"
    )
    assert compat.rewrite_imports(source).splitlines() == [
        "import lightning.pytorch as pl",
        "from lightning.pytorch.callbacks import ProgressBar",
        "    from lightning.fabric.utilities import cloud_io",
        "        from kantk.lightning.unified.callbacks import GridUpdateCallback",
        "from kantk.lightning.unified import KANModule",
        "from kantk.lightningx import y",
        "x = 'pytorch_lightning'  # import pytorch_lightning",
    ]


@pytest.mark.parametrize(
    "path, package, expected",
    [
        (
            "lightning.pytorch.callbacks.EarlyStopping",
            "pytorch_lightning",
            "pytorch_lightning.callbacks.EarlyStopping",
        ),
        (
            "pytorch_lightning.callbacks.EarlyStopping",
            "lightning.pytorch",
            "lightning.pytorch.callbacks.EarlyStopping",
        ),
        (
            "pytorch_lightning.callbacks.EarlyStopping",
            "pytorch_lightning",
            "pytorch_lightning.callbacks.EarlyStopping",
        ),
        ("lightning.fabric.plugins.X", "pytorch_lightning", "lightning_fabric.plugins.X"),
        (
            "kantk.lightning.FunctionDataModule",
            "lightning.pytorch",
            "kantk.lightning.unified.FunctionDataModule",
        ),
        (
            "kantk.lightning.unified.FunctionDataModule",
            "lightning.pytorch",
            "kantk.lightning.unified.FunctionDataModule",
        ),
        (
            "kantk.lightning.unified.FunctionDataModule",
            "pytorch_lightning",
            "kantk.lightning.FunctionDataModule",
        ),
        ("kantk.lightning.FunctionDataModule", "pytorch_lightning", "kantk.lightning.FunctionDataModule"),
        ("lightningx.Y", "pytorch_lightning", "lightningx.Y"),
        ("EarlyStopping", "pytorch_lightning", "EarlyStopping"),
    ],
)
def test_class_path_for(path, package, expected):
    assert compat.class_path_for(path, package) == expected


CONFIG = """
seed_everything: 0
trainer:
  max_steps: 2
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: {early_stopping}
      init_args: {{monitor: val_loss, patience: 5}}
    - class_path: {summary}
model:
  widths: [2, 3, 1]
data:
  class_path: {data}
  init_args: {{f: x1*x2, n_vars: 2, train_num: 32, test_num: 8}}
"""


@pytest.mark.parametrize(
    "spelling, package",
    [
        (
            (
                "lightning.pytorch.callbacks.EarlyStopping",
                "lightning.pytorch.callbacks.ModelSummary",
                "kantk.lightning.unified.FunctionDataModule",
            ),
            "lightning.pytorch",
        ),
        (
            (
                "lightning.pytorch.callbacks.EarlyStopping",
                "pytorch_lightning.callbacks.ModelSummary",
                "kantk.lightning.FunctionDataModule",
            ),
            "lightning.pytorch",
        ),
        (
            (
                "pytorch_lightning.callbacks.EarlyStopping",
                "pytorch_lightning.callbacks.ModelSummary",
                "kantk.lightning.FunctionDataModule",
            ),
            "pytorch_lightning",
        ),
    ],
    ids=["lightning", "mixed", "pytorch_lightning"],
)
def test_kantk_fit_config_accepts_either_class_path_spelling(
    tmp_path, monkeypatch, capsys, spelling, package
):
    monkeypatch.chdir(tmp_path)
    early_stopping, summary, data = spelling
    config = tmp_path / "config.in.yaml"
    config.write_text(CONFIG.format(early_stopping=early_stopping, summary=summary, data=data))
    assert cli_package(["fit", "--config", str(config)]) == package
    status = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run")])
    assert status == 0
    assert "kantk fit: step 2" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    paths = [c["class_path"] for c in saved["trainer"]["callbacks"]] + [saved["data"]["class_path"]]
    prefix = "lightning.pytorch." if package == "lightning.pytorch" else "pytorch_lightning."
    assert paths[0].startswith(prefix) and paths[1].startswith(prefix)  # saved in the package that ran
    assert ("unified" in paths[2]) == (package == "lightning.pytorch")


def test_kantk_fit_function_with_the_unified_data_module():
    import lightning as L

    from kantk.lightning.unified import FunctionDataModule

    model = kantk.KAN([2, 3, 1], seed=0)
    data = FunctionDataModule("x1*x2", n_vars=2, train_num=32, test_num=8)
    history = kantk.fit(model, data, steps=2, seed=0, callbacks=[L.pytorch.callbacks.ModelSummary()])
    assert len(history.train_loss) == 2


def test_kantk_fit_refuses_a_mix_of_packages():
    import pytorch_lightning as pl

    from kantk.lightning.unified import FunctionDataModule

    data = FunctionDataModule("x1*x2", n_vars=2, train_num=32, test_num=8)
    with pytest.raises(TypeError, match="both pytorch_lightning and lightning.pytorch"):
        kantk.fit(kantk.KAN([2, 3, 1], seed=0), data, steps=1, callbacks=[pl.callbacks.ModelSummary()])


def test_lightning_spelling_without_the_lightning_package_runs_on_pytorch_lightning(
    tmp_path, monkeypatch, capsys
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("lightning") else real(name, *a)
    )
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.in.yaml"
    config.write_text(
        CONFIG.format(
            early_stopping="lightning.pytorch.callbacks.EarlyStopping",
            summary="lightning.pytorch.callbacks.ModelSummary",
            data="kantk.lightning.unified.FunctionDataModule",
        )
    )
    assert cli_package(["fit", f"--config={config}"]) == "pytorch_lightning"
    assert main(["fit", f"--config={config}", "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["class_path"] == "kantk.lightning.FunctionDataModule"
    assert saved["trainer"]["callbacks"][0]["class_path"].startswith("pytorch_lightning.")


def test_cli_package_reads_the_command_line_and_config_files(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("model:\n  widths: [2, 1]\n")
    assert cli_package(["fit", "--config", str(plain)]) == "pytorch_lightning"
    assert cli_package(["fit", "--config", str(tmp_path / "missing.yaml")]) == "pytorch_lightning"
    assert cli_package(["fit", "--config"]) == "pytorch_lightning"
    assert cli_package(
        ["fit", "--config", str(plain), "--trainer.callbacks+=lightning.pytorch.callbacks.Timer"]
    ) == ("lightning.pytorch")
