"""The kantk command line: ``kantk plugins`` and ``kantk fit --config configs/<name>.yaml``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import yaml

import kantk
from kantk.cli import main, run_lightning_cli
from kantk.lightning import KANModule

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _console_argv(monkeypatch):
    # as if run from the console: LightningCLI warns when sys.argv (here pytest's) and args differ
    monkeypatch.setattr(sys, "argv", ["kantk"])


def test_the_three_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"toy", "special", "classification"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_names_its_own_output_folder(config):
    settings = yaml.safe_load(config.read_text())
    root = settings["trainer"]["default_root_dir"]
    assert root == f"kantk-out/{config.stem}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_fit_runs_each_config_for_a_few_steps(config, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runs = tmp_path / "runs"
    cli = run_lightning_cli(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.max_steps",
            "2",
            "--trainer.default_root_dir",
            str(runs),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert isinstance(cli.model, KANModule)
    assert cli.trainer.global_step == 2
    assert list(cwd.iterdir()) == []  # nothing lands where the user stands
    assert list(runs.glob("lightning_logs/version_0/config.yaml"))
    # every config validates every 5 or 10 epochs: the final step is validated and saved anyway
    assert "val_loss" in cli.trainer.callback_metrics
    (checkpoint,) = runs.glob("lightning_logs/version_0/checkpoints/*.ckpt")
    assert checkpoint.name == "last.ckpt"
    # its checkpoint (hyperparameters with LightningCLI's _instantiator) serves the model commands
    (tmp_path / "fit.ckpt").write_bytes(checkpoint.read_bytes())
    n_in = cli.model.model.widths[0]
    (tmp_path / "x.csv").write_text("\n".join(",".join(["0.1"] * n_in) for _ in range(3)) + "\n")
    status = main(
        [
            "predict",
            str(tmp_path / "fit.ckpt"),
            "--data",
            str(tmp_path / "x.csv"),
            "-o",
            str(tmp_path / "y.csv"),
        ]
    )
    assert status == 0 and (tmp_path / "y.csv").exists()


def _toy_fit(root, steps, *extra):
    args = ["fit", "--config", str(CONFIGS[[p.stem for p in CONFIGS].index("toy")])]
    args += ["--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(root)]
    args += ["--trainer.enable_progress_bar", "false", *extra]
    return run_lightning_cli(args)


def test_fit_saves_a_final_step_between_validations_and_it_resumes(tmp_path):
    """toy.yaml validates (and so checkpoints) every 10 steps: 15 steps left steps 11-15 unsaved
    and unvalidated. The final state is last.ckpt; resumed to 20 steps it ends where an
    uninterrupted 20-step run does."""
    import torch

    part = _toy_fit(tmp_path / "part", 15)
    folder = tmp_path / "part/lightning_logs/version_0/checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=9-step=10.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 15
    metrics = (tmp_path / "part/lightning_logs/version_0/metrics.csv").read_text().splitlines()
    val = metrics[0].split(",").index("val_rmse")
    assert [row.split(",")[3] for row in metrics[1:] if row.split(",")[val]] == ["9", "15"]  # steps
    assert float(part.trainer.callback_metrics["val_rmse"]) == float(metrics[-1].split(",")[val])
    full = _toy_fit(tmp_path / "full", 20)
    resumed = _toy_fit(tmp_path / "resumed", 20, "--ckpt_path", str(folder / "last.ckpt"))
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # a run whose schedule saved its last step gets no last.ckpt
    assert not list((tmp_path / "full").rglob("last.ckpt"))


def test_a_resumed_fit_in_a_fixed_folder_brings_its_last_ckpt_up_to_date(tmp_path):
    """With logger false the checkpoint folder is fixed: the last.ckpt of the run resumed from
    named no last_model_path in its callback state (set after saving), so the resumed run warned
    "exists" and kept step 3's file, losing steps 4-15."""
    import torch

    _toy_fit(tmp_path, 3, "--trainer.logger", "false")
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    (tmp_path / "config.yaml").unlink()  # the merged config is never replaced
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the final step")
        _toy_fit(tmp_path, 15, "--trainer.logger", "false", "--ckpt_path", str(last))
    assert torch.load(last, weights_only=True)["global_step"] == 15
    # from a moved copy (its callback state names the old folder): the file it resumed from is
    # its own, though the final validation reset trainer.ckpt_path
    import shutil

    shutil.copytree(tmp_path / "checkpoints", tmp_path / "moved" / "checkpoints")
    (tmp_path / "moved" / "checkpoints" / "epoch=9-step=10.ckpt").unlink(missing_ok=True)
    moved = tmp_path / "moved" / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the final step")
        _toy_fit(tmp_path / "moved", 25, "--trainer.logger", "false", "--ckpt_path", str(moved))
    assert torch.load(moved, weights_only=True)["global_step"] == 25


def test_fit_without_validation_data_ends_without_validating(tmp_path, monkeypatch):
    """A data module of the user's with only train_dataloader: the final validation called
    Lightning's val_dataloader, which raises "must be implemented", after training had finished."""
    (tmp_path / "train_only.py").write_text(
        "import torch\nimport pytorch_lightning as pl\n\n"
        "class TrainOnly(pl.LightningDataModule):\n"
        "    def train_dataloader(self):\n"
        "        x = torch.rand(16, 2)\n"
        "        return torch.utils.data.DataLoader(list(zip(x, x[:, :1])), batch_size=16)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KANTK_CONFIG_MODULES", "train_only")
    cli = run_lightning_cli(
        ["fit", "--model.widths", "[2, 1]", "--data", "train_only.TrainOnly", "--trainer.max_steps", "3"]
        + ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"]
    )
    assert cli.trainer.global_step == 3 and not any(
        k.startswith("val_") for k in cli.trainer.callback_metrics
    )


def test_fit_keeps_a_last_ckpt_it_did_not_write(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"someone else's")
    with pytest.warns(UserWarning, match=r"the final step 3 was not saved: .*last.ckpt' exists"):
        _toy_fit(tmp_path, 3, "--trainer.logger", "false")
    assert (folder / "last.ckpt").read_bytes() == b"someone else's"


def test_main_routes_fit_to_lightning_and_overrides_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    toy = next(p for p in CONFIGS if p.stem == "toy")
    status = main(
        [
            "fit",
            "--config",
            str(toy),
            "--trainer.max_steps",
            "1",
            "--trainer.default_root_dir",
            str(tmp_path / "r"),
            "--trainer.enable_progress_bar",
            "false",
            "--model.regularisers",
            "{l1_entropy: 0.001}",
            "--trainer.logger",
            "false",
            "--trainer.check_val_every_n_epoch",
            "1",
        ]
    )
    assert status == 0
    assert "kantk fit: step 1, val_loss" in capsys.readouterr().out  # the closing summary line
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["model"]["regularisers"] == {"l1_entropy": 0.001}
    assert saved["trainer"]["max_steps"] == 1


def test_print_config_prints_the_merged_config(capsys):
    toy = next(p for p in CONFIGS if p.stem == "toy")
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(toy), "--model.optimizer", "adam", "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["optimizer"] == "adam"
    assert printed["model"]["widths"] == [2, 5, 1]
    assert printed["data"]["class_path"] == "kantk.lightning.FunctionDataModule"


def test_unknown_optimizer_in_a_config_lists_valid_names(tmp_path):
    toy = next(p for p in CONFIGS if p.stem == "toy")
    with pytest.raises(ValueError, match="valid optimizers: adam, adamw, lbfgs"):
        run_lightning_cli(
            [
                "fit",
                "--config",
                str(toy),
                "--model.optimizer",
                "sgd",
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )


def test_plugins_command_lists_the_regularisers(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "regularisers: coef_l1 (kantk.regularisers.coef_l1)" in out
    assert "node operations: mult (kantk.nodes), sum (kantk.nodes)" in out
    assert "l1_entropy (kantk.regularisers.l1_entropy)" in out


def test_help_lists_fit_and_plugins(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "fit" in out and "plugins" in out
    # no command: a usage error, the help on stderr (an empty $CMD in a script "succeeded")
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "COMMAND" in captured.err and "plugins" in captured.err


def test_a_closed_stdout_ends_the_command_quietly_with_sigpipes_status(tmp_path):
    """``kantk plugins | head -1``: "kantk: [Errno 32] Broken pipe" and status 1, which symbolic
    and discover use for "no closed form"; now nothing on stderr and 141, as Unix tools."""
    import subprocess

    console = Path(sys.executable).with_name("kantk")
    if not console.exists():
        pytest.skip("the kantk console script is not installed next to this Python")
    done = subprocess.run(
        f"'{console}' plugins | true; echo status=${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert "status=141" in done.stdout and done.stderr == "", (done.stdout, done.stderr)


def test_sigterm_ends_a_model_command_without_leaving_its_temporary_files(tmp_path):
    """SIGTERM (timeout, a CI job's cancellation) left ``.kantk-tmp-*/out.csv`` half written."""
    import os
    import signal
    import subprocess
    import time

    console = Path(sys.executable).with_name("kantk")
    if not console.exists():
        pytest.skip("the kantk console script is not installed next to this Python")
    kantk.save(kantk.KAN([2, 2, 1], seed=0), tmp_path / "m.kantk")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "p.csv").write_text("old\n")
    rows = "\n".join("0.1,0.2" for _ in range(400_000))  # seconds of writing
    (tmp_path / "big.csv").write_text("a,b\n" + rows + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KANTK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    process = subprocess.Popen(
        [str(console), "predict", "m.kantk", "--data", "big.csv", "-o", "out/p.csv"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 100
    while process.poll() is None and time.monotonic() < deadline:  # until it writes its temporary file
        if any(p.name.startswith(".kantk-tmp") for p in (tmp_path / "out").iterdir()):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the command finished before the signal (a fast machine)")
    assert process.returncode == 143 and err.strip().endswith("kantk: terminated"), (process.returncode, err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.csv"]
    assert (tmp_path / "out" / "p.csv").read_text() == "old\n"


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert kantk.__version__ in capsys.readouterr().out


def test_import_and_help_load_no_torch():
    """``import kantk`` and every ``--help`` build without torch (the fast face of issue 19)."""
    import subprocess
    import sys

    code = (
        "import sys, kantk\n"
        "from kantk.cli import build_parser, lightning_help\n"
        "build_parser(); lightning_help('fit')\n"
        "heavy = ('torch', 'sympy', 'networkx', 'matplotlib', 'pytorch_lightning')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert set(kantk.__all__) <= set(dir(kantk))\n"
        "import kantk.attribution\n"
        "assert callable(kantk.attribution) and not isinstance(kantk.attribution, type(sys))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_help_is_kantks_short_help(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--help-all" in out and "--config" in out and "--trainer.KEY" in out


def test_close_process_group_ends_an_initialised_group_and_is_a_no_op_without_one(tmp_path):
    import torch.distributed as dist

    from kantk.cli import close_process_group

    close_process_group()  # no group: nothing to do
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        close_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


_CONFIG = """
trainer:
  default_root_dir: {root}
  max_steps: 1
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  callbacks:
    - class_path: {callback}
      init_args: {init_args}
model:
  widths: [2, 1]
data:
  class_path: kantk.lightning.FunctionDataModule
  init_args: {{f: x1*x2, n_vars: 2, train_num: 16, test_num: 8}}
"""


@pytest.mark.parametrize(
    ("callback", "init_args", "refused"),
    [
        ("pytorch_lightning.callbacks.LambdaCallback", "{on_fit_start: builtins.print}", "builtins.print"),
        ("pytorch_lightning.callbacks.LambdaCallback", "{on_fit_start: this.s}", "this.s"),
        (
            "pytorch_lightning.callbacks.LambdaCallback",
            "{on_fit_start: pytorch_lightning.seed_everything}",
            "the function 'pytorch_lightning.seed_everything'",
        ),
        ("collections.Counter", "{}", "collections.Counter"),
    ],
    ids=["builtin_function", "module_import", "lightning_function", "other_class"],
)
def test_a_config_names_only_kantks_and_lightnings_code(tmp_path, capsys, callback, init_args, refused):
    """A config is input: a LambdaCallback with on_fit_start: builtins.print called print with the
    trainer and the module, and this.s imported the module this, whose top-level code printed the
    Zen of Python before any check."""
    config = tmp_path / "c.yaml"
    config.write_text(_CONFIG.format(root=tmp_path / "run", callback=callback, init_args=init_args))
    sys.modules.pop("this", None)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    err = capsys.readouterr()
    assert f"{refused}" in err.err and "KANTK_CONFIG_MODULES" in err.err
    assert "Beautiful is better than ugly" not in err.out and "this" not in sys.modules
    assert "Trainer" not in err.out  # print(trainer, module) did not run
    assert not (tmp_path / "run").exists()


def test_the_config_guard_checks_where_an_object_comes_from():
    """Only the path's first name was checked: kantk.cli.os.system (os's function, reached through
    kantk.cli) passed as "a function of kantk"."""
    import jsonargparse._util as util

    from kantk.cli import ConfigImportError, config_imports_limited

    with config_imports_limited():
        with pytest.raises(ConfigImportError, match=r"the function 'kantk.cli.os.system'"):
            util.import_object("kantk.cli.os.system")
        with pytest.raises(ConfigImportError, match=r"'kantk.cli.os', which is os's"):
            util.import_object("kantk.cli.os")
        assert util.import_object("kantk.lightning.GridUpdateCallback").__name__ == "GridUpdateCallback"
        assert util.import_object("pytorch_lightning.callbacks.EarlyStopping").__name__ == "EarlyStopping"
        # jsonargparse's own paths (annotations: check_path=False) are not the config's
        assert util.import_object("datetime.timedelta", check_path=False).__name__ == "timedelta"


def test_the_config_guard_needs_a_jsonargparse_that_marks_its_own_imports(monkeypatch):
    import jsonargparse._util as util

    from kantk.cli import config_imports_limited

    monkeypatch.setattr(util, "import_object", lambda name: None)  # older: no check_path
    with pytest.raises(SystemExit, match=r"need jsonargparse 4.53 or newer"):
        with config_imports_limited():
            pass


def test_kantk_config_modules_allows_a_package_of_the_users(tmp_path, monkeypatch, capsys):
    """A data module or callback of the user's own package: allowed once the user names it."""
    package = tmp_path / "my_kan_project"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import pytorch_lightning as pl\n\nclass Seen(pl.Callback):\n    started = False\n\n"
        "    def on_fit_start(self, trainer, pl_module):\n        Seen.started = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text(_CONFIG.format(root=tmp_path / "run", callback="my_kan_project.Seen", init_args="{}"))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config)])
    assert "set KANTK_CONFIG_MODULES=my_kan_project" in capsys.readouterr().err
    monkeypatch.setenv("KANTK_CONFIG_MODULES", "other, my_kan_project")
    assert main(["fit", "--config", str(config)]) == 0
    import my_kan_project

    assert my_kan_project.Seen.started


def test_a_fit_resumed_from_its_final_last_ckpt_equals_the_uninterrupted_one(tmp_path):
    """kantk fit validated its final step before saving it: trainer.validate emptied the fit
    loop's state (where the shuffled loader was) and replaced the grid-update callback by a fresh
    one, so a run resumed from that last.ckpt trained on other batches (0.03 off) and updated its
    grids on a partial batch (0.4 off)."""
    import torch

    config = tmp_path / "mini.yaml"
    config.write_text(
        "seed_everything: 0\n"
        "trainer: {max_steps: 8, enable_progress_bar: false, enable_model_summary: false,"
        " check_val_every_n_epoch: 100}\n"
        "model: {widths: [2, 3, 1], optimizer: adam, dtype: float64, init_seed: 0, grid_update_every: 3}\n"
        "data:\n  class_path: kantk.lightning.FunctionDataModule\n"
        "  init_args: {f: x1*x2 + sin(x1), n_vars: 2, train_num: 100, test_num: 20, dtype: float64,"
        " batch_size: 30, shuffle: true}\n"
    )

    def fit(root, steps, *extra):
        args = ["fit", "--config", str(config), "--trainer.max_steps", str(steps)]
        return run_lightning_cli([*args, "--trainer.default_root_dir", str(tmp_path / root), *extra])

    full = fit("full", 8)
    fit("part", 5)  # mid-epoch, between two grid updates, with a final validation
    last = tmp_path / "part/lightning_logs/version_0/checkpoints/last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 5 and saved["loops"]["fit_loop"]["state_dict"]  # the loader's place
    resumed = fit("resumed", 8, "--ckpt_path", str(last))
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name  # parameters and grids


@pytest.mark.parametrize("save_last", ["true", "link"])
def test_a_monitoring_checkpoint_with_save_last_gets_the_final_step(tmp_path, save_last):
    """finish_fit skipped every callback with a monitor: with save_last its last.ckpt held (or
    linked to) the last validation's step (10), not the run's final step (12)."""
    import torch

    callbacks = (
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.monitor=val_rmse",
        f"--trainer.callbacks.save_last={save_last}",
    )
    _toy_fit(tmp_path, 12, "--trainer.logger", "false", *callbacks)
    (last,) = tmp_path.rglob("last.ckpt")
    assert not last.is_symlink() and torch.load(last, weights_only=True)["global_step"] == 12
    best = [p for p in last.parent.iterdir() if p.name != "last.ckpt"]
    assert [torch.load(p, weights_only=True)["global_step"] for p in best] == [10]  # top-k untouched


def test_kantks_per_package_classes_pickle_as_ddp_spawn_needs():
    """ddp_spawn pickles the Trainer's callbacks; classes local to a function did not pickle, and a
    second class for the default argument (save_config_callback_class()) was "not the same object"."""
    import pickle

    from kantk import cli

    for make in (cli.cli_class, cli.save_config_callback_class):
        assert make() is make("pytorch_lightning")
        assert pickle.loads(pickle.dumps(make())) is make()
    last = cli._last_evaluation("pytorch_lightning")
    assert type(pickle.loads(pickle.dumps(last))) is type(last)
    with pytest.raises(AttributeError):
        cli.no_such_name  # noqa: B018 - the module's __getattr__ answers only its classes


def test_kantk_fit_warns_of_inputs_outside_the_grids_as_kantk_fit_in_python_does(tmp_path):
    """The grid warnings lived in kantk.fit only: a config of data in [200, 1000] on the default
    grid trained to a poor fit without a word on the command line."""
    config = tmp_path / "far.yaml"
    config.write_text(
        "seed_everything: 0\n"
        "trainer: {max_steps: 5, logger: false, enable_checkpointing: false, enable_progress_bar: false,"
        " enable_model_summary: false, check_val_every_n_epoch: 100}\n"
        "model: {widths: [2, 3, 1], optimizer: lbfgs, dtype: float64, init_seed: 0}\n"
        "data:\n  class_path: kantk.lightning.FunctionDataModule\n"
        "  init_args: {f: x1*x2, n_vars: 2, ranges: [200.0, 1000.0], train_num: 100, test_num: 20,"
        " dtype: float64, batch_size: -1}\n"
    )
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_lightning_cli(args)
    said = [str(w.message) for w in caught if "--model.grid_update_every 5" in str(w.message)]
    assert len(said) == 2 and said[0].startswith("input 1's training values") and "after training" in said[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_lightning_cli([*args[:-1], str(tmp_path / "updated"), "--model.grid_update_every", "5"])
    assert not [w for w in caught if "grid_update_every" in str(w.message)]  # the grids follow the data
