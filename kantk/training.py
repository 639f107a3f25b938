"""``kantk.fit``: pykan-style one-line training, as a thin convenience over a Lightning ``Trainer``.

There is one training engine: ``fit`` wraps the given model in a
:class:`kantk.lightning.KANModule`, the data in a :class:`kantk.lightning.TensorDataModule`, and
runs ``pl.Trainer.fit`` for ``steps`` optimizer steps. The model is trained in place.

The Trainer is ``pytorch_lightning``'s, or the unified ``lightning`` package's when the data module
or a callback passed in comes from ``lightning.pytorch`` (:mod:`kantk.lightning.compat`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import random
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from kantk.data import check_dataset
from kantk.lightning.compat import kantk_classes, lightning_package
from kantk.model import KAN

logger = logging.getLogger(__name__)

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


@dataclass
class History:
    """Per-step metrics of a :func:`fit` run (one entry per optimizer step unless noted).

    Attributes:
        train_loss: Training loss (MSE or cross-entropy) of the batch, without regularisation.
        train_rmse: sqrt(train_loss) for MSE training (pykan's ``train_loss``); empty otherwise.
        train_accuracy: Share of correctly classified training samples (cross-entropy only).
        regularisation: The weighted regularisation added to the loss (0 without regularisers).
        test_loss: Loss on the whole test split after each step (empty without test data).
        test_rmse: sqrt(test_loss) for MSE training (pykan's ``test_loss``).
        test_accuracy: Test accuracy (cross-entropy only).
    """

    train_loss: list[float] = field(default_factory=list)
    train_rmse: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    regularisation: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_rmse: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        """The non-empty metrics as ``{name: values}``."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}

    def __len__(self) -> int:
        return len(self.train_loss)


class _HistoryRecorder:
    """Records each step's metrics into a :class:`History` (a Callback of either package, see
    :func:`_history_callback`)."""

    def __init__(self, history: History):
        self.history = history

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        m = pl_module.last_train_metrics
        self.history.train_loss.append(float(m["train_loss"]))
        self.history.regularisation.append(float(m["reg"]))
        if "train_rmse" in m:
            self.history.train_rmse.append(float(m["train_rmse"]))
        if "train_acc" in m:
            self.history.train_accuracy.append(float(m["train_acc"]))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = pl_module.last_val_metrics
        if "val_loss" in m:
            self.history.test_loss.append(float(m["val_loss"]))
        if "val_rmse" in m:
            self.history.test_rmse.append(float(m["val_rmse"]))
        if "val_acc" in m:
            self.history.test_accuracy.append(float(m["val_acc"]))


@functools.cache
def _history_callback(package: str) -> type:
    """``_HistoryRecorder`` as a Callback of the Lightning ``package``."""
    return type("_HistoryCallback", (_HistoryRecorder, importlib.import_module(package).Callback), {})


def _lightning_package(data: Any, callbacks: Sequence[Any] | None) -> str:
    """The Lightning package of the data module and callbacks given to :func:`fit` (default
    ``pytorch_lightning``).

    Raises:
        TypeError: They come from both packages.
    """
    found = {lightning_package(x) for x in [data, *(callbacks or [])]} - {None}
    if len(found) > 1:
        raise TypeError(
            "kantk.fit got a data module and callbacks from both pytorch_lightning and lightning.pytorch; "
            "use one package (kantk.lightning for pytorch_lightning, kantk.lightning.unified for lightning)"
        )
    return found.pop() if found else "pytorch_lightning"


def fit(
    model: KAN,
    data: Mapping[str, Any] | pl.LightningDataModule,
    steps: int = 100,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    batch: int = -1,
    regularisers: Mapping[str, float | Mapping[str, Any]] | None = None,
    grid_update_every: int | None = None,
    grid_update_until: int | None = None,
    grid_eps: float = 0.02,
    loss: str = "mse",
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    seed: int | None = None,
    *,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[pl.Callback] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> History:
    """Train ``model`` in place for ``steps`` optimizer steps (pykan's ``model.fit``).

    Example::

        data = kantk.create_dataset("exp(sin(pi*x1) + x2**2)", n_vars=2)
        model = kantk.KAN([2, 5, 1], seed=0)
        history = kantk.fit(model, data, steps=100)            # LBFGS, full batch
        history.test_rmse[-1]

    Args:
        model: The KAN to train (on CPU or a GPU; it stays where it is).
        data: pykan's dict (``train_input`` (N, widths[0]), ``train_label`` (N, widths[-1]) or
            (N,) class indices, optional ``test_input``/``test_label``; floats are cast to the
            model's dtype) or any ``LightningDataModule`` yielding ``(inputs, labels)`` batches.
        steps: Optimizer steps (one LBFGS step runs up to 20 function evaluations).
        optimizer: ``"lbfgs"`` (pykan's settings, history 30), ``"adam"`` or ``"adamw"``.
        lr: Learning rate (default 1.0 for LBFGS, 1e-2 for Adam/AdamW).
        batch: Training samples per step; -1 means the full training set (needed by LBFGS).
            Only for dict data (a DataModule has its own batch size).
        regularisers: ``{name: weight}`` or ``{name: {"weight": w, **options}}``, e.g.
            ``{"l1_entropy": {"weight": 1e-3}}``; names from ``kantk.list_regularisers()``.
        grid_update_every: Move the grids to the training inputs every this many steps (pykan
            uses 5); ``None`` (default): never.
        grid_update_until: Last step (exclusive) for grid updates (default 50, pykan's).
        grid_eps: Uniform (1) versus quantile (0) grid placement in grid updates.
        loss: ``"mse"`` or ``"cross_entropy"`` (then labels are class indices and the model has
            one output per class).
        log_dir: Where to write CSV metrics and a final checkpoint; ``None`` (default): nothing
            is written anywhere.
        progress: Show a progress bar (it appears after about two seconds).
        seed: Makes the run reproducible: same seed, same data and model -> bit-identical
            parameters on CPU. Python's, numpy's and torch's random states are restored afterwards.
        optimizer_kwargs: More optimizer options (``{"max_iter": 10}`` for LBFGS, ...).
        callbacks: More Lightning callbacks.
        trainer_kwargs: More ``pl.Trainer`` arguments (e.g. ``{"precision": "64-true"}``).

    Returns:
        A :class:`History` of per-step training and test metrics.

    Raises:
        ValueError: NaN/Inf or badly shaped data (raised before the model changes), an unknown
            optimizer or loss (the message lists the valid ones), a bad argument.
        UnknownComponentError: An unknown regulariser name (the message lists the known ones).
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.fit trains a kantk.KAN, got {type(model).__name__}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    classification = loss == "cross_entropy"
    param = model.layers[0].coef
    package = _lightning_package(data, callbacks)
    lightning = importlib.import_module(package)
    classes = kantk_classes(package)
    if isinstance(data, lightning.LightningDataModule):
        if batch != -1:
            raise ValueError("batch applies to dict data; a DataModule brings its own batch size")
        datamodule = data
    elif isinstance(data, Mapping):
        dataset = check_dataset(
            data, n_inputs=model.widths[0], n_outputs=model.widths[-1], classification=classification
        )
        dataset = {k: v.to(param.dtype) if v.is_floating_point() else v for k, v in dataset.items()}
        datamodule = classes.TensorDataModule(dataset, batch_size=batch, shuffle=True)
    else:
        raise TypeError(
            "data must be a dict with train_input/train_label (and optionally test_input/test_label) "
            f"or a LightningDataModule, got {type(data).__name__}"
        )
    # Validates optimizer, loss and regularisers before anything runs.
    module = classes.KANModule.from_model(
        model,
        loss=loss,
        optimizer=optimizer,
        lr=lr,
        optimizer_kwargs=dict(optimizer_kwargs or {}),
        regularisers=dict(regularisers) if regularisers else None,
        grid_update_every=grid_update_every,
        grid_update_until=grid_update_until,
        grid_eps=grid_eps,
    )

    # Nothing reads Lightning's logged metrics without a logger or user callbacks: skip the cost.
    module.log_metrics = log_dir is not None or bool(callbacks)
    history = History()
    all_callbacks: list[pl.Callback] = [_history_callback(package)(history), *(callbacks or [])]
    if progress:
        all_callbacks.append(classes.StepProgressBar())
    device = param.device
    was_training = model.training
    with contextlib.ExitStack() as stack:
        root = (
            os.fspath(log_dir)
            if log_dir is not None
            else stack.enter_context(tempfile.TemporaryDirectory(prefix="kantk-fit-"))
        )
        settings: dict[str, Any] = {
            "max_steps": steps,
            "max_epochs": -1,
            "default_root_dir": root,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": progress,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "check_val_every_n_epoch": None,
            "val_check_interval": 1,  # test metrics after every step, like pykan
            "log_every_n_steps": 1,
            "callbacks": all_callbacks,
            **_accelerator(device),
        }
        if log_dir is not None:
            loggers = importlib.import_module(package + ".loggers")
            checkpoint = importlib.import_module(package + ".callbacks").ModelCheckpoint
            settings["logger"] = loggers.CSVLogger(root, name="kantk")
            settings["enable_checkpointing"] = True
            all_callbacks.append(checkpoint(every_n_train_steps=steps, save_top_k=1))
        if seed is not None:
            settings["deterministic"] = True if device.type == "cpu" else "warn"
            stack.enter_context(_seeded(int(seed), device))
        settings.update(trainer_kwargs or {})
        stack.enter_context(_quiet_lightning())
        stack.enter_context(_restore_deterministic_flags())
        trainer = lightning.Trainer(**settings)
        try:
            trainer.fit(module, datamodule=datamodule)
        finally:
            model.to(device)  # Lightning moves the module to the CPU when it tears down
            model.train(was_training)
    return history


def _accelerator(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {
            "accelerator": "gpu",
            "devices": [device.index if device.index is not None else torch.cuda.current_device()],
        }
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    return {"accelerator": "cpu", "devices": 1}


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed Python, numpy and torch for the block, then restore their previous states."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def _restore_deterministic_flags() -> Iterator[None]:
    """``Trainer(deterministic=True)`` switches torch's global flags on; switch them back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banners ("GPU available ...") and its small-dataset hints for one call."""
    import sys

    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for fabric in ("lightning_fabric", "lightning.fabric"):  # one class per Lightning package
            if fabric in sys.modules:
                category = importlib.import_module(fabric + ".utilities.warnings").PossibleUserWarning
                warnings.filterwarnings("ignore", category=category)
        # torch deprecation inside Lightning's own code; nothing a kantk user can act on
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        # fit checkpoints once, after the last step: the state after optimisation is the point
        warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
