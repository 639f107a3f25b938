"""Distributed data parallel on 2 CPU processes (gloo): the ranks must end identical.

DDP relaunches ``sys.argv``, so the run is a small script in ``tmp_path`` started in a
subprocess; each rank saves its final parameters and grids there and the test compares them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import kantk

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import pytorch_lightning as pl
    from kantk.lightning import FunctionDataModule, KANModule

    out, optimizer, grid = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    pl.seed_everything(0, verbose=False)
    module = KANModule(
        [2, 3, 1], basis_kwargs={"grid_size": 5}, optimizer=optimizer, init_seed=0, dtype="float64",
        grid_update_every=2 if grid else None, grid_update_until=5,
        optimizer_kwargs={"max_iter": 5} if optimizer == "lbfgs" else None,
    )
    data = FunctionDataModule("exp(sin(pi*x1) + x2**2)", 2, train_num=200, test_num=100, seed=0,
                              batch_size=-1 if optimizer == "lbfgs" else 32)
    trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_steps=6, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    state = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
    state["_world_size"] = torch.tensor(trainer.world_size)
    state["_steps"] = torch.tensor(trainer.global_step)
    state["_train_rows"] = torch.tensor(sum(b[0].shape[0] for b in trainer.train_dataloader))
    state["_val_rmse"] = trainer.callback_metrics["val_rmse"].detach().cpu()
    torch.save(state, os.path.join(out, f"rank{trainer.global_rank}.pt"))
    if torch.distributed.is_initialized():  # PyTorch's advice: destroy the group before exit
        torch.distributed.destroy_process_group()
    """
)


def _launch(tmp_path, text: str, name: str, *args: str) -> subprocess.CompletedProcess:
    """Run the script ``text`` (saved as ``name`` in ``tmp_path``) with ``args``; it must succeed."""
    script = tmp_path / name
    script.write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KANTK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _run(tmp_path, optimizer: str, grid: bool) -> tuple[dict, dict]:
    done = _launch(tmp_path, SCRIPT, "ddp_fit.py", optimizer, "1" if grid else "0")
    assert "Grad strides do not match" not in done.stderr  # coef.grad keeps coef's layout
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return ranks[0], ranks[1]


@pytest.mark.parametrize(
    ("optimizer", "grid"),
    [
        ("lbfgs", True),  # full batch: each rank holds half the rows; closure losses averaged
        ("adam", False),  # mini-batches through Lightning's DistributedSampler
    ],
)
def test_ddp_ranks_end_with_identical_parameters_and_grids(tmp_path, optimizer, grid):
    rank0, rank1 = _run(tmp_path, optimizer, grid)
    assert int(rank0["_world_size"]) == 2 and int(rank0["_steps"]) == 6
    # together the ranks see the 200 training rows once per epoch, each its own half
    assert int(rank0["_train_rows"]) + int(rank1["_train_rows"]) in (200, 208)  # 208: padded batches
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        if key != "_train_rows":
            assert torch.equal(rank0[key], rank1[key]), key
    fresh = kantk.KAN([2, 3, 1], seed=0).to(torch.float64).state_dict()
    assert not torch.equal(rank0["layers.0.coef"], fresh["layers.0.coef"])  # it trained
    if grid:  # the hidden layer's grid followed the (gathered) data away from [-1, 1]
        assert not torch.allclose(rank0["layers.1.basis.grid"], fresh["layers.1.basis.grid"])
    assert torch.isfinite(rank0["_val_rmse"])


SYNC_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import pytorch_lightning as pl
    from kantk.lightning import FunctionDataModule, KANModule

    out, devices, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pl.seed_everything(0, verbose=False)
    module = KANModule(
        [2, 3, 1], basis_kwargs={"grid_size": 5}, optimizer="lbfgs", init_seed=0, dtype="float64",
        optimizer_kwargs={"max_iter": 5}, regularisers={"l1_entropy": 1e-2},
    )
    data = FunctionDataModule("exp(sin(pi*x1) + x2**2)", 2, train_num=rows, test_num=100, seed=0,
                              batch_size=-1)
    trainer = pl.Trainer(strategy="ddp" if devices > 1 else "auto", devices=devices, accelerator="cpu",
                         max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    state = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
    torch.save(state, os.path.join(out, f"devices{devices}_rank{trainer.global_rank}.pt"))
    if torch.distributed.is_initialized():  # PyTorch's advice: destroy the group before exit
        torch.distributed.destroy_process_group()
    """
)


@pytest.mark.parametrize("rows", [200, 201], ids=["even", "odd"])
def test_ddp_with_l1_entropy_equals_one_process(tmp_path, rows):
    """The regulariser's batch statistics (per-edge standard deviations) are taken over all ranks'
    rows, so two processes with half the rows each train as one process with all of them. With
    an odd count (shards of 101 and 100 rows) each rank's mean loss weighed the same: 9.6e-3 apart
    from one process after 3 steps (with KANModule._shard_weight returning 1), until it was
    weighted by its rows."""
    script = tmp_path / "ddp_sync.py"
    script.write_text(SYNC_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KANTK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for devices in (1, 2):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path), str(devices), str(rows)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert "Grad strides do not match" not in done.stderr  # coef.grad keeps coef's layout
    one = torch.load(tmp_path / "devices1_rank0.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"devices2_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in one.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        # measured 4e-14 (float64 round-off: the sums run in another order); per-shard statistics
        # gave 2.1e-3 here
        torch.testing.assert_close(ranks[0][key], value, rtol=0, atol=1e-10)


CLI_CONFIG = """
trainer: {max_steps: 2, logger: false, enable_progress_bar: false, enable_model_summary: false,
          enable_checkpointing: false, strategy: ddp, devices: 2, accelerator: cpu}
model: {widths: [2, 3, 1]}
data:
  class_path: kantk.lightning.FunctionDataModule
  init_args: {f: x1*x2, n_vars: 2, train_num: 32, test_num: 8}
"""


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_cli_summary_line_prints_once_under_ddp(tmp_path, strategy):
    """ddp_spawn pickles the Trainer's callbacks: kantk's, classes local to functions, failed with
    "Can't pickle local object" (an internal error). Its main process does not learn the step.
    A warning of the training (LBFGS's line search finding only NaN) is one ``kantk: warning:``
    line: each rank printed it, and ddp_spawn's workers as Python's ``.../multiprocessing/
    process.py:108: UserWarning: kantk: ...`` with a source line; so was Lightning's torch
    deprecation (``isinstance(treespec, LeafSpec)``), once per process."""
    from pathlib import Path

    console = Path(sys.executable).with_name("kantk")
    if not console.exists():
        pytest.skip("the kantk console script is not installed next to this Python")
    (tmp_path / "config.yaml").write_text(CLI_CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KANTK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [str(console), "fit", "--config", "config.yaml", "--trainer.default_root_dir", "run"]
        + ["--trainer.strategy", strategy, "--model.optimizer", "lbfgs", "--model.lr", "1e300"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = "kantk fit: step 1" if strategy == "ddp" else "kantk fit: val_loss"
    assert done.stdout.count(summary) == 1 and done.stdout.count("kantk fit:") == 1, done.stdout
    warning = "kantk: warning: training stopped at step 1: every point LBFGS's line search tried"
    assert done.stderr.count(warning) == 1 and done.stderr.count("training stopped") == 1, done.stderr
    assert "UserWarning" not in done.stderr and "LeafSpec" not in done.stderr, done.stderr


EVAL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import pytorch_lightning as pl
    from kantk.lightning import FunctionDataModule, KANModule

    out = sys.argv[1]
    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0, dtype="float64")
    trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_steps=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=out, num_sanity_val_steps=0)
    result = {}
    for batch in (16, -1):
        data = FunctionDataModule("x1*x2", 2, train_num=100, test_num=101, seed=0, dtype="float64",
                                  batch_size=batch)
        if batch == 16:
            trainer.fit(module, datamodule=data)
        val = trainer.validate(module, datamodule=data, verbose=False)[0]["val_loss"]
        result[f"val_{batch}"] = torch.tensor(val)
        rows = sum(p.shape[0] for p in trainer.predict(module, datamodule=data))
        result[f"rows_{batch}"] = torch.tensor(rows)
    x, y = data.dataset["test_input"], data.dataset["test_label"]
    with torch.no_grad():
        result["exact"] = (module.model(x) - y).square().mean()
    torch.save(result, os.path.join(out, f"eval_rank{trainer.global_rank}.pt"))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    """
)


def test_ddp_evaluation_counts_every_row_once_and_predict_serves_each_rank(tmp_path):
    """Lightning's DistributedSampler padded 101 test rows to 102 (row 0 twice in val_loss), and its
    unrepeated predict sampler gave the one-item full batch to rank 0 only (AssertionError)."""
    _launch(tmp_path, EVAL_SCRIPT, "ddp_eval.py")
    ranks = [torch.load(tmp_path / f"eval_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for batch in (16, -1):
        for rank in ranks:
            torch.testing.assert_close(rank[f"val_{batch}"], rank["exact"].float(), rtol=1e-6, atol=0)
        assert sorted(int(rank[f"rows_{batch}"]) for rank in ranks) == [50, 51]  # rows 0::2 and 1::2
