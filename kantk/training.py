"""``kantk.fit``: pykan-style one-line training, as a thin convenience over a Lightning ``Trainer``.

There is one training engine: ``fit`` wraps the given model in a
:class:`kantk.lightning.KANModule` (a :class:`kantk.MLP` baseline in an ``MLPModule``, the same
engine without the KAN-only options), the data in a :class:`kantk.lightning.TensorDataModule`,
and runs ``pl.Trainer.fit`` for ``steps`` optimizer steps. The model is trained in place.

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
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from kantk._pykan import FIT_NAMES, pykan_names
from kantk._validation import check_int, check_optional_int, check_seed
from kantk._warnings import LIGHTNING_TREESPEC_WARNING, warn_at_user
from kantk.baselines import MLP
from kantk.bases import BSplineBasis
from kantk.bases.base import column_quantiles
from kantk.data import check_dataset
from kantk.lightning.compat import kantk_classes, lightning_package
from kantk.model import KAN, select_inputs_hint
from kantk.registry import Registry

logger = logging.getLogger(__name__)

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


#: ``kantk.fit``'s default ``eval_every``: every step for LBFGS (as pykan: a step is up to 20
#: evaluations of the full-batch objective, so one test evaluation costs little beside it), every
#: 10 steps for Adam/AdamW (a step is one cheap batch; evaluating the test split after each would
#: cost as much as training).
DEFAULT_EVAL_EVERY = {"lbfgs": 1, "adam": 10, "adamw": 10}
#: The evaluations before the last use at most this many test rows (a fixed random subset, seed 0);
#: the last evaluation uses the whole test split.
EVAL_ROWS = 4096

#: The :class:`History` field each metric logged by ``KANModule`` fills. The evaluations during
#: training are Lightning's validation loop, which logs ``val_*``, run on the dataset's test split
#: (``test_input``/``test_label``); the History names them after that split, as the dataset dict
#: and pykan's results do. Attribute names are spelled out; logged names are Lightning's short ones.
TRAIN_FIELDS = {"train_loss": "train_loss", "train_rmse": "train_rmse", "train_acc": "train_accuracy"}
TRAIN_FIELDS["reg"] = "regularisation"
EVAL_FIELDS = {"val_loss": "test_loss", "val_rmse": "test_rmse", "val_acc": "test_accuracy"}


@dataclass
class History:
    """The metrics of a :func:`fit` run: training metrics once per optimizer step, test metrics once
    per evaluation (every ``eval_every`` steps and after the last step; ``eval_step`` says after
    which step each was taken).

    Each field is a metric that :class:`kantk.lightning.KANModule` logs (given in brackets; the
    names in a ``log_dir``'s ``metrics.csv``). The test metrics come from Lightning's validation
    loop, run on the dataset's test split, hence ``val_*`` there (:data:`EVAL_FIELDS`).

    Attributes:
        train_loss: Training loss (MSE or cross-entropy) of the batch, without regularisation
            [``train_loss``].
        train_rmse: sqrt(train_loss) for MSE training (pykan's ``train_loss``); empty otherwise
            [``train_rmse``].
        train_accuracy: Share of correctly classified training samples (cross-entropy only)
            [``train_acc``].
        regularisation: The weighted regularisation added to the loss (0 without regularisers)
            [``reg``].
        test_loss: Loss on the test split at each evaluation (empty without test data); on a fixed
            subset of at most ``EVAL_ROWS`` rows except the last, which uses the whole split
            [``val_loss``].
        test_rmse: sqrt(test_loss) for MSE training (pykan's ``test_loss``) [``val_rmse``].
        test_accuracy: Test accuracy (cross-entropy only) [``val_acc``].
        eval_step: The optimizer step (1-based count of steps taken) after which each test row was
            measured.
    """

    train_loss: list[float] = field(default_factory=list)
    train_rmse: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    regularisation: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_rmse: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[Any]]:
        """The non-empty metrics as ``{name: values}``."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}

    def __len__(self) -> int:
        return len(self.train_loss)


class _HistoryRecorder:
    """Collects each step's metrics as tensors (no host sync during training) and writes them into a
    :class:`History` as floats once, in :meth:`flush` (a Callback of either package, see
    :func:`_fit_callback`)."""

    def __init__(self, history: History):
        self.history = history
        self._pending: dict[str, list[torch.Tensor]] = {}

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._pending.setdefault(name, []).append(value.detach())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for key, value in getattr(pl_module, "last_train_metrics", {}).items():
            if key in TRAIN_FIELDS:
                self._add(TRAIN_FIELDS[key], value)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        recorded = False
        for key, value in getattr(pl_module, "last_val_metrics", {}).items():
            # several validation loaders: the history holds the first one's (val_loss/dataloader_idx_0)
            key = key.removesuffix("/dataloader_idx_0")
            if key in EVAL_FIELDS:
                self._add(EVAL_FIELDS[key], value)
                recorded = True
        if recorded:
            self.history.eval_step.append(int(trainer.global_step))

    def flush(self) -> None:
        """Move the collected metrics into the history (one device-to-host copy per metric)."""
        for name, values in self._pending.items():
            column = torch.stack([v.reshape(()).to(values[0].device) for v in values])
            getattr(self.history, name).extend(column.double().tolist())
        self._pending = {}


class _FitSchedule:
    """kantk.fit's evaluation schedule: ask Lightning to stop (and so to validate) after the last
    step, whatever ``val_check_interval`` says; not when kantk.fit evaluates the whole test split
    itself afterwards (``final=False``). A Callback of either package (:func:`_fit_callback`)."""

    def __init__(self, final: bool = True):
        self.final = final

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.final and trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class _Interrupted:
    """Notes a ``KeyboardInterrupt`` and, with ``log_dir``, writes a checkpoint of the state the
    NaN guard left (before Lightning tears the run down and turns the interrupt into ``SystemExit``)
    into the folder of fit's own ``ModelCheckpoint`` (``callback``; not a user's, whose folder and
    file names are theirs). Inside a step the guard puts the parameters back at the step's start,
    and LBFGS's state (its curvature pairs, iteration counts) goes back there too: the state of
    the interrupted step resumed 0.085 away from the uninterrupted run, this resumes on it."""

    def __init__(self, checkpoint: bool):
        self.checkpoint = checkpoint
        self.interrupted = False
        self.path: str | None = None
        self.callback: Any = None  # fit's own ModelCheckpoint, set when there is one
        self._at_start: list[Any] | None = None  # LBFGS's states at the step's start (inside one)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.checkpoint:
            self._at_start = [_lbfgs_state(o) for o in trainer.optimizers]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._at_start = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        self.interrupted = True
        if not self.checkpoint:
            return
        if self._at_start is not None:  # inside a step: LBFGS's state back to the step's start
            for optimizer, state in zip(trainer.optimizers, self._at_start):
                if state is not None:
                    first = optimizer.param_groups[0]["params"][0]
                    optimizer.state.pop(first, None)
                    if state:
                        optimizer.state[first] = state
        callback = self.callback or trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
        self.path = os.path.join(folder, f"interrupted-step={trainer.global_step}.ckpt")
        trainer.save_checkpoint(self.path)


def _lbfgs_state(optimizer: Any) -> dict[str, Any] | None:
    """A copy of an LBFGS optimizer's state that its next step leaves as it is (None for another
    optimizer): the step replaces the entries, appends to and pops from the lists, assigns into
    ``al`` and copies into ``prev_flat_grad``; so the lists are copied and that tensor cloned (one
    vector of the parameters' size), the rest shared."""
    if not isinstance(optimizer, torch.optim.LBFGS):
        return None
    state = optimizer.state.get(optimizer.param_groups[0]["params"][0], {})
    return {
        k: list(v) if isinstance(v, list) else v.clone() if k == "prev_flat_grad" and v is not None else v
        for k, v in state.items()
    }


class _FinalCheckpoint:
    """With ``log_dir``: a checkpoint of the last step when training ends before ``steps`` (LBFGS
    converged to round-off, the NaN guard, an ``EarlyStopping``); the ``ModelCheckpoint`` beside
    it (``callback``, fit's own) saves only at step ``steps``. Named as that callback names its
    files (a user's ModelCheckpoint(monitor=...) came first, and its "best" name was given to the
    last step's state, with val_loss=0.0000)."""

    def __init__(self, callback: Any):
        self.callback = callback

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        callback = self.callback
        if callback is None or not hasattr(callback, "format_checkpoint_name"):
            return
        if getattr(callback, "_last_global_step_saved", None) == trainer.global_step:
            return  # it saved this step (training ran to steps)
        name = callback.format_checkpoint_name({"epoch": trainer.current_epoch, "step": trainer.global_step})
        if not os.path.exists(name):
            trainer.save_checkpoint(name)


@functools.cache
def _fit_callback(base: type, package: str) -> type:
    """``base`` (one of kantk.fit's helpers) as a Callback of the Lightning ``package``."""
    return type(base.__name__.lstrip("_") + "Callback", (base, importlib.import_module(package).Callback), {})


def _lightning_package(data: Any, callbacks: Sequence[Any] | None) -> str:
    """The Lightning package of the data module and callbacks given to :func:`fit` (default
    ``pytorch_lightning``).

    Raises:
        TypeError: They come from both packages.
    """
    found = {p for p in (lightning_package(x) for x in [data, *(callbacks or [])]) if p is not None}
    if len(found) > 1:
        raise TypeError(
            "kantk.fit got a data module and callbacks from both pytorch_lightning and lightning.pytorch; "
            "use one package (kantk.lightning for pytorch_lightning, kantk.lightning.unified for lightning)"
        )
    return found.pop() if found else "pytorch_lightning"


@pykan_names(FIT_NAMES)
def fit(
    model: KAN | MLP,
    data: Mapping[str, Any] | pl.LightningDataModule,
    steps: int = 100,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    batch: int = -1,
    regularisers: Mapping[str, float | Mapping[str, Any]] | None = None,
    grid_update_every: int | None = None,
    grid_update_until: int | None = None,
    grid_eps: float = 0.02,
    loss: str | Callable[[Any, Any], torch.Tensor] = "mse",
    log_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    seed: int | None = None,
    *,
    eval_every: int | None = None,
    nan_guard: bool = True,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[pl.Callback] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> History:
    """Train ``model`` in place for ``steps`` optimizer steps (pykan's ``model.fit``).

    Example::

        data = kantk.create_dataset("exp(sin(pi*x1) + x2**2)", n_vars=2)
        model = kantk.KAN([2, 5, 1], seed=0)
        history = kantk.fit(model, data, steps=100)            # LBFGS, full batch
        history.test_rmse[-1]

    The baseline :class:`kantk.MLP` trains the same way (pykan's ``MLP.fit``), with every
    argument but the KAN-only ones (``regularisers``, ``grid_update_every``,
    ``grid_update_until``, ``grid_eps`` and the ``GridExtension``/``GridUpdateCallback``
    callbacks), which are refused.

    Args:
        model: The KAN (or :class:`kantk.MLP`) to train (on CPU or a GPU; it stays where it is).
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
            one output per class), or a callable ``loss(model, batch) -> scalar tensor`` (a custom
            objective such as a PDE residual; see :class:`kantk.lightning.KANModule`). With dict
            data its batches are ``(inputs, labels)``; labels are then optional (missing ones
            are empty (N, 0) tensors) and may have any width. The history records its value as
            ``train_loss``/``test_loss`` (no RMSE or accuracy).
        log_dir: Where to write CSV metrics and a final checkpoint; ``None`` (default): nothing
            is written anywhere.
        progress: Show a progress bar (it appears after about two seconds).
        seed: Makes the run reproducible: same seed, same data and model -> bit-identical
            parameters on CPU. Python's, numpy's and torch's random states are restored afterwards.
        eval_every: Evaluate on the test split every this many steps, and always after the last
            step. ``None`` (default): every step for LBFGS (as pykan), every 10 steps for
            Adam/AdamW (``DEFAULT_EVAL_EVERY``). With dict data, evaluations before the last use a
            fixed random subset of at most ``EVAL_ROWS`` (4096) test rows when the test split is
            larger; the last uses the whole split.
        nan_guard: Stop and go back to the last parameters whose loss was finite when the loss
            or the parameters turn NaN/inf (:class:`kantk.lightning.NaNGuard`, with a warning).
        optimizer_kwargs: More optimizer options (``{"max_iter": 10}`` for LBFGS, ...).
        callbacks: More Lightning callbacks.
        trainer_kwargs: More ``pl.Trainer`` arguments (e.g. ``{"precision": "64-true"}``).
        registry: Where a KAN's regularisers are looked up (``Registry.with_plugins(...)`` for a
            plugin that is not installed); ``None``: the default registry.

    Returns:
        A :class:`History`: training metrics per step, test metrics per evaluation.

    Raises:
        KeyboardInterrupt: Ctrl-C (SIGINT) during training, raised after the model is left at
            the parameters of its last completed step (or the NaN guard's last finite ones) and,
            with ``log_dir``, a checkpoint ``interrupted-step=N.ckpt`` is written beside the
            final one's folder.
        ValueError: NaN/Inf or badly shaped data (raised before the model changes), an unknown
            optimizer or loss (the message lists the valid ones), a bad argument.
        UnknownComponentError: An unknown regulariser name (the message lists the known ones).
        TypeError: ``model`` is neither a KAN nor an MLP; a KAN-only option for an MLP.
    """
    if not isinstance(model, (KAN, MLP)):
        raise TypeError(f"kantk.fit trains a kantk.KAN or a kantk.MLP, got {type(model).__name__}")
    check_int("steps", steps, 1)
    check_optional_int("eval_every", eval_every, 1)
    if isinstance(optimizer, str):  # pykan's spelling: opt="LBFGS", "Adam"
        optimizer = optimizer.lower()
    seed = None if seed is None else check_seed("seed", seed)
    if log_dir is not None and not os.fspath(log_dir):
        raise ValueError("log_dir is empty; give a folder, or None to write nothing")
    _check_trainer_kwargs(trainer_kwargs)
    classification = loss == "cross_entropy"
    param: torch.Tensor = model.layers[0].coef if isinstance(model, KAN) else next(model.parameters())
    package = _lightning_package(data, callbacks)
    lightning = importlib.import_module(package)
    classes = kantk_classes(package)
    if isinstance(model, MLP):
        _refuse_kan_only(regularisers, grid_update_every, grid_update_until, grid_eps, callbacks, classes)
    watched: torch.Tensor | None = None
    if isinstance(data, lightning.LightningDataModule):
        if batch != -1:
            raise ValueError("batch applies to dict data; a DataModule brings its own batch size")
        datamodule = data
    elif isinstance(data, Mapping):
        custom = callable(loss)
        if custom:  # labels are the objective's business: optional, any width
            data = _with_empty_labels(data)
        dataset = check_dataset(
            data,
            n_inputs=model.widths[0],
            width_hint=functools.partial(select_inputs_hint, model),
            n_outputs=None if custom else model.widths[-1],
            classification=None if custom else classification,
        )
        dataset = {k: v.to(param.dtype) if v.is_floating_point() else v for k, v in dataset.items()}
        rows = dataset["train_input"].shape[0]
        if optimizer == "lbfgs" and batch != -1 and batch < rows:
            # each step's line search and curvature pairs would fit another batch's objective
            warn_at_user(
                f"LBFGS on mini-batches (batch={batch} of {rows} training rows): each step's line "
                "search fits another batch, so the losses jump and the history mixes objectives; "
                "LBFGS needs batch=-1 (full batch), or use optimizer='adam' for mini-batches"
            )
        if isinstance(model, KAN) and grid_update_every is None and GRID_WARNINGS.get():
            _warn_of_inputs_the_basis_misses(model, dataset["train_input"])
            watched = dataset["train_input"]  # after training: the hidden layers' values
        datamodule = classes.TensorDataModule(
            dataset, batch_size=batch, shuffle=True, val_rows=EVAL_ROWS, check=False
        )
        datamodule.input_names = getattr(data, "input_names", None)  # kantk.load_csv's header names
    else:
        raise TypeError(
            "data must be a dict with train_input/train_label (and optionally test_input/test_label) "
            f"or a LightningDataModule, got {type(data).__name__}"
        )
    # Validates optimizer, loss and regularisers before anything runs.
    module: Any
    if isinstance(model, MLP):
        module = classes.MLPModule.from_model(
            model, loss=loss, optimizer=optimizer, lr=lr, optimizer_kwargs=dict(optimizer_kwargs or {})
        )
    else:
        module = classes.KANModule.from_model(
            model,
            registry=registry,
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
    module.nan_guard = False  # added below, first, so that it acts before the interrupt checkpoint
    history = History()
    recorder = _fit_callback(_HistoryRecorder, package)(history)
    interrupt = _fit_callback(_Interrupted, package)(checkpoint=log_dir is not None)
    user = list(callbacks or [])
    # the NaN guard first, so that it acts before the interrupt checkpoint: the user's (kept, as
    # KANModule keeps a Trainer's; two crashed as "more than one stateful callback") or fit's own
    guards = [c for c in user if isinstance(c, classes.NaNGuard)]
    user = [c for c in user if not isinstance(c, classes.NaNGuard)]
    all_callbacks: list[pl.Callback] = guards or ([classes.NaNGuard()] if nan_guard else [])
    subset = isinstance(datamodule, classes.TensorDataModule) and _evaluates_subset(datamodule)
    schedule = _fit_callback(_FitSchedule, package)(final=not subset)
    all_callbacks += [recorder, schedule, interrupt, *user]
    if eval_every is None:
        eval_every = DEFAULT_EVAL_EVERY.get(str(optimizer), 1)
    callback_types = importlib.import_module(package + ".callbacks")
    own_bar = any(isinstance(c, callback_types.ProgressBar) for c in user)
    for c in user:  # its default folder is under log_dir: without one, a folder removed at the end
        if isinstance(c, callback_types.ModelCheckpoint) and c.dirpath is None and log_dir is None:
            raise ValueError(
                "a ModelCheckpoint without dirpath writes under log_dir: pass log_dir= or dirpath="
            )
    if progress and not own_bar:
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
            # a ModelCheckpoint among the callbacks needs it on ("configured with
            # enable_checkpointing=False but found ModelCheckpoint")
            "enable_checkpointing": any(isinstance(c, callback_types.ModelCheckpoint) for c in user),
            "enable_progress_bar": progress or own_bar,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "check_val_every_n_epoch": None,
            "val_check_interval": eval_every,  # and after the last step (_FitSchedule)
            "log_every_n_steps": 1,
            "callbacks": all_callbacks,
            **_accelerator(device),
        }
        if log_dir is not None:
            loggers = importlib.import_module(package + ".loggers")
            settings["logger"] = loggers.CSVLogger(root, name="kantk")
            settings["enable_checkpointing"] = True
            own = callback_types.ModelCheckpoint(every_n_train_steps=steps, save_top_k=1)
            interrupt.callback = own
            all_callbacks.append(own)
            all_callbacks.append(_fit_callback(_FinalCheckpoint, package)(own))
        if seed is not None:
            settings["deterministic"] = True if device.type == "cpu" else "warn"
            stack.enter_context(_seeded(seed, device))
        settings.update(trainer_kwargs or {})
        stack.enter_context(_quiet_lightning())
        stack.enter_context(_restore_deterministic_flags())
        trainer = lightning.Trainer(**settings)
        _check_one_process_one_batch(trainer)
        sigint = _sigint_handler()
        try:
            trainer.fit(module, datamodule=datamodule)
        except SystemExit:
            # Lightning answers Ctrl-C with on_exception hooks, a teardown and sys.exit(1)
            if not interrupt.interrupted:
                raise
            where = f"; checkpoint {interrupt.path}" if interrupt.path else ""
            raise KeyboardInterrupt(
                f"kantk.fit interrupted after step {trainer.global_step}{where}"
            ) from None
        finally:
            _restore_sigint(sigint)  # Lightning ignores SIGINT from its first Ctrl-C on
            model.to(device)  # Lightning moves the module to the CPU when it tears down
            model.train(was_training)
            recorder.flush()
        # trainer_kwargs' max_epochs or max_time ended training before steps: the last evaluation
        # was some steps earlier, or there was none yet (a History without test rows)
        last = history.eval_step[-1] if history.eval_step else None
        ended_early = 0 < trainer.global_step < steps and last != trainer.global_step
        if subset or (ended_early and trainer.limit_val_batches != 0):
            batches = _final_eval_batches(datamodule, classes, lightning.LightningDataModule)
            if batches is not None:
                _evaluate_whole_test_split(module, batches, history, trainer.global_step, trainer.logger)
    if watched is not None and trainer.global_step > 0:
        _warn_of_hidden_values_the_basis_misses(model, watched)  # type: ignore[arg-type]
    return history


#: Trainer arguments kantk.fit sets from its own arguments: they were replaced silently by
#: ``trainer_kwargs`` (``callbacks`` dropped the History recorder and the NaN guard).
FIT_OWNS = {
    "callbacks": "callbacks=[...]",
    "max_steps": "steps=",
    "default_root_dir": "log_dir=",
    "logger": "log_dir= (a CSV logger), or a Trainer with KANModule for another logger",
    "enable_checkpointing": "log_dir=, or a ModelCheckpoint in callbacks=",
    "val_check_interval": "eval_every=",
    "check_val_every_n_epoch": "eval_every=",
    "enable_progress_bar": "progress=",
}


def _check_trainer_kwargs(trainer_kwargs: Mapping[str, Any] | None) -> None:
    """Refuse ``trainer_kwargs`` that are not a mapping, or that name a :data:`FIT_OWNS` key."""
    if trainer_kwargs is None:
        return
    if not isinstance(trainer_kwargs, Mapping):
        raise TypeError(
            f"trainer_kwargs must be a dict of Trainer arguments, got {type(trainer_kwargs).__name__}"
        )
    for key in trainer_kwargs:
        if key in FIT_OWNS:
            raise ValueError(
                f"trainer_kwargs[{key!r}]: kantk.fit sets this Trainer argument itself; use "
                f"fit's {FIT_OWNS[key]}"
            )


#: Basis values that vary less than this over an input's training values and a small step beyond
#: each: the basis is constant there (a B-spline or RBF beyond its grid, a saturated Chebyshev);
#: inside the grid a step of 1e-3 moves them by 1e-3 or more.
MISSED_SPREAD = 1e-4
#: Quantiles of an input's training values (of at most MISSED_ROWS rows spread over the data) at
#: which :func:`_warn_of_inputs_the_basis_misses` evaluates the basis, with a step of 1e-3
#: (relative above 1) beyond each: rows alone misjudged a constant, a binary or a narrow column,
#: an even spread from min to max one with outliers.
MISSED_POINTS = 64
MISSED_ROWS = 100_000


#: What the grid warnings advise: in Python (``kantk.fit``), and on the command line (``kantk fit``).
GRID_ADVICE = {
    "python": (
        "call model.update_grid(data['train_input']) first or pass grid_update_every",
        "pass grid_update_every=5 (pykan's default: grids follow the data) or call "
        "model.update_grid(data['train_input']) and fit again",
    ),
    "cli": (
        "pass --model.grid_update_every 5 (grids follow the data, pykan's schedule)",
        "pass --model.grid_update_every 5 (grids follow the data, pykan's schedule) and fit again",
    ),
}


def _warn_of_inputs_the_basis_misses(model: KAN, x: torch.Tensor, advice: str = "python") -> None:
    """Warn when the first layer's basis is constant over an input's training values: inputs in
    [1000, 2000] on the default grid [-1, 1] trained without a word, the edge fitted by its SiLU
    branch alone, which ``auto_symbolic`` then read as a confident linear law (r^2 = 1).
    ``model.update_grid(x)`` or ``grid_update_every`` moves the grids to the data. A column of one
    value (a constant, a border pixel) says nothing about the grid and is skipped."""
    layer = model.layers[0]
    rows = x[:: max(1, x.shape[0] // MISSED_ROWS)].to(layer.coef)
    levels = torch.linspace(0, 1, MISSED_POINTS, dtype=rows.dtype, device=rows.device)
    points = column_quantiles(rows, levels)  # (points, in); torch.quantile refuses > 2**24 values
    step = 1e-3 * points.abs().clamp(min=1.0)
    lo, hi = rows.amin(0), rows.amax(0)
    varies = (hi - lo) > 1e-6 * torch.maximum(lo.abs(), hi.abs()).clamp(min=1.0)
    with torch.no_grad():
        feats = layer.basis(torch.cat([points, points + step]))  # (2 points, in, functions)
    spread = (feats.amax(0) - feats.amin(0)).amax(-1)  # (in,)
    numeric = (layer.mask != 0).any(0)  # (in,): an input whose edges are all symbolic reads no spline
    missed = [
        p
        for p in range(spread.shape[0])
        if bool(varies[p]) and bool(numeric[p]) and not float(spread[p]) >= MISSED_SPREAD
    ]
    if missed:
        p = missed[0]
        more = f" (and {len(missed) - 1} more inputs)" if len(missed) > 1 else ""
        warn_at_user(
            f"input {p + 1}'s training values, {float(lo[p]):.6g} to {float(hi[p]):.6g}{more}, lie where the "
            f"first layer's {layer.basis_name} basis is constant (outside its grid): only the base branch "
            f"can fit them; {GRID_ADVICE[advice][0]}"
        )


#: False while kantk's own recipes train (:func:`kantk.discover` moves the grids itself): the
#: warnings about grids speak to a user's ``kantk.fit``.
GRID_WARNINGS: ContextVar[bool] = ContextVar("kantk_grid_warnings", default=True)


@contextlib.contextmanager
def grid_warnings_off() -> Iterator[None]:
    """Within it, :func:`fit` gives none of its warnings about grids (see :data:`GRID_WARNINGS`)."""
    token = GRID_WARNINGS.set(False)
    try:
        yield
    finally:
        GRID_WARNINGS.reset(token)


#: Share of a hidden node's training values outside its layer's grid past which
#: :func:`_warn_of_hidden_values_the_basis_misses` warns (most of them: a [2, 5, 1] that fitted
#: exp(sin(pi x1) + x2^2) to test MSE 2.5e-6 had 41% outside), and the rows it looks at.
MISSED_SHARE, MISSED_HIDDEN_ROWS = 0.5, 4096


def _warn_of_hidden_values_the_basis_misses(model: KAN, x: torch.Tensor, advice: str = "python") -> None:
    """After a fit without grid updates: warn when most of a hidden node's values lie outside its
    layer's grid (for other bases than B-splines: where the basis is constant). pykan moves the
    grids to the data by default; kantk.fit does not, and the paper's [2, 1, 1] on G = 3 stalled
    at test RMSE 0.54 (0.018 with ``grid_update_every=5``): its hidden values spanned [-1.9, 4.9]
    on the grid [-1, 1]."""
    n = x.shape[0]
    count = min(n, MISSED_HIDDEN_ROWS)
    picked = torch.arange(count, device=x.device) * (n - 1) // max(count - 1, 1)  # integers: exact at any n
    rows = x[picked].to(model.layers[0].coef)
    with torch.no_grad():
        values = model.layer_inputs(rows)
        for l in range(1, len(model.layers)):
            v = values[l]
            if not bool(torch.isfinite(v).all()):
                return
            layer = model.layers[l]
            basis = layer.basis
            if isinstance(basis, BSplineBasis):  # the fading outer intervals resolve little
                if basis.extrapolate != "zero":  # clamp or extend: the user's choice for them
                    continue
                lo, hi = basis.range_ends(v.dtype)
                missed = (v < lo) | (v > hi)  # (rows, in)
            else:  # any basis: where its values are constant
                step = 1e-3 * v.abs().clamp(min=1.0)
                feats = basis(torch.cat([v, v + step]))  # (2 rows, in, functions)
                half = v.shape[0]
                missed = (feats[:half] - feats[half:]).abs().amax(-1) < MISSED_SPREAD  # (rows, in)
            # a node whose outgoing edges are all symbolic reads no spline (the refit after
            # auto_symbolic was told to update grids that nothing uses)
            share = missed.to(v.dtype).mean(0) * (layer.mask != 0).any(0).to(v.dtype)
            worst = int(share.argmax())
            if float(share[worst]) > MISSED_SHARE:
                column = v[:, worst]
                warn_at_user(
                    f"after training, {float(share[worst]):.0%} of the values of node {worst} (counting "
                    f"from 0) of node layer {l} (they span {float(column.min()):.3g} to "
                    f"{float(column.max()):.3g}) lie "
                    f"outside layer {l}'s grid, where its {layer.basis_name} basis fades or is constant and "
                    f"fits little; {GRID_ADVICE[advice][1]}"
                )
                return


def _check_one_process_one_batch(trainer: Any) -> None:
    """kantk.fit's History, evaluation schedule and returned model assume one process and one
    batch per optimizer step: refuse ``trainer_kwargs`` that ask for several processes (DDP,
    ``ddp_spawn``: the History would stay empty and the callbacks cannot be pickled) or gradient
    accumulation (every micro-batch counted as a step).

    Raises:
        ValueError: With what to use instead.
    """
    if trainer.world_size > 1:
        raise ValueError(
            f"kantk.fit trains in this one process (got {trainer.world_size} processes from "
            "trainer_kwargs); for DDP use kantk.lightning.KANModule with a Lightning Trainer "
            "(docs/training.md, 'Several processes (DDP) and GPUs')"
        )
    accumulate = getattr(trainer, "accumulate_grad_batches", 1)
    if accumulate != 1:
        raise ValueError(
            f"kantk.fit takes one batch per optimizer step (trainer_kwargs accumulate_grad_batches="
            f"{accumulate}); give a larger batch= instead, or use kantk.lightning.KANModule with a "
            "Lightning Trainer"
        )


#: What kantk.fit takes for an MLP, named when it refuses a KAN-only option.
_MLP_ACCEPTS = (
    "an MLP trains with steps, optimizer, lr, batch, loss, log_dir, progress, seed, eval_every, "
    "nan_guard, optimizer_kwargs (e.g. weight_decay), callbacks and trainer_kwargs"
)


def _refuse_kan_only(
    regularisers: Mapping[str, Any] | None,
    grid_update_every: int | None,
    grid_update_until: int | None,
    grid_eps: float,
    callbacks: Sequence[Any] | None,
    classes: Any,
) -> None:
    """Refuse kantk.fit's KAN-only options for an MLP, before anything runs.

    Raises:
        TypeError: One is set (``grid_eps`` other than its default 0.02, ``regularisers`` other
            than None or empty), or a grid callback is among ``callbacks``.
    """
    given = []
    if regularisers:
        given.append("regularisers")
    if grid_update_every is not None:
        given.append("grid_update_every")
    if grid_update_until is not None:
        given.append("grid_update_until")
    if grid_eps != 0.02:
        given.append("grid_eps")
    grid_callbacks = (classes.GridExtension, classes.GridUpdateCallback)
    given += sorted({type(c).__name__ for c in callbacks or [] if isinstance(c, grid_callbacks)})
    if given:
        verb = "is" if len(given) == 1 else "are"
        raise TypeError(f"kantk.fit: {', '.join(given)} {verb} KAN-only; {_MLP_ACCEPTS}")


def _evaluates_subset(datamodule: Any) -> bool:
    """Whether the data module validates on a subset of its test split (``val_rows``)."""
    data, rows = datamodule.dataset, datamodule.val_rows
    return "test_input" in data and rows is not None and data["test_input"].shape[0] > rows


def _final_eval_batches(datamodule: Any, classes: Any, base: Any) -> Iterator[Any] | None:
    """The batches of kantk.fit's last evaluation: the whole test split of a kantk data module (in
    chunks), a user's data module's validation batches (``base``: Lightning's
    ``LightningDataModule``, whose ``val_dataloader`` means none); None when there is no
    validation."""
    if isinstance(datamodule, classes.TensorDataModule):
        if "test_input" not in datamodule.dataset or datamodule.dataset["test_input"].shape[0] == 0:
            return None
        x, y = datamodule.dataset["test_input"], datamodule.dataset["test_label"]
        chunk = 2 * EVAL_ROWS
        return ((x[i : i + chunk], y[i : i + chunk]) for i in range(0, x.shape[0], chunk))
    if type(datamodule).val_dataloader is base.val_dataloader:
        return None  # it has no validation
    loaders = datamodule.val_dataloader()
    loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
    # several: the first, whose metrics the history holds (the others' are in the logs)
    return (batch for batch in loaders[0]) if loaders else None


def _evaluate_whole_test_split(
    module: Any, batches: Iterator[Any], history: History, step: int, logger: Any = None
) -> None:
    """kantk.fit's last evaluation, on ``batches`` (:func:`_final_eval_batches`: the whole test
    split): a new test row for ``step``, or in place of the row already measured there on the
    subset (the NaN guard's stop validates). With a ``logger`` (``log_dir``), also its last
    ``val_*`` row of ``metrics.csv``."""
    from lightning_fabric.utilities.apply_func import move_data_to_device

    device = module.model.device
    log_metrics, was_training = module.log_metrics, module.training
    module.log_metrics = False
    module.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                module._accumulate(move_data_to_device(batch, device), "val")
            metrics = module._log_eval("val")
    finally:
        module.log_metrics = log_metrics
        module.train(was_training)
    if logger is not None:  # Lightning's step column counts from 0: the step before
        logger.log_metrics({k: float(v) for k, v in metrics.items() if k in EVAL_FIELDS}, step=step - 1)
        logger.save()
    replace = bool(history.eval_step) and history.eval_step[-1] == step
    if not replace:
        history.eval_step.append(int(step))
    for key, value in metrics.items():
        if key in EVAL_FIELDS:
            column = getattr(history, EVAL_FIELDS[key])
            if replace and column:
                column[-1] = float(value)
            else:
                column.append(float(value))


def _sigint_handler() -> Any:
    """The current SIGINT handler, or None where it cannot be read back (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


def _restore_sigint(handler: Any) -> None:
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def _with_empty_labels(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with (N, 0) labels for each split that has inputs but no labels."""
    filled = dict(data)
    for split in ("train", "test"):
        inputs = filled.get(f"{split}_input")
        if filled.get(f"{split}_label") is None and inputs is not None and hasattr(inputs, "shape"):
            filled[f"{split}_label"] = torch.zeros(len(inputs), 0)
    return filled


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
        warnings.filterwarnings("ignore", message=LIGHTNING_TREESPEC_WARNING)  # nothing to act on
        # data without a test split: no evaluation, as documented (the data module returns [])
        warnings.filterwarnings("ignore", message=r"Total length of .* across ranks is zero")
        # fit checkpoints once, after the last step: the state after optimisation is the point
        warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
