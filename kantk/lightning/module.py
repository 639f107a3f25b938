"""``KANModule``: the LightningModule that trains a :class:`kantk.KAN`; ``MLPModule``: the same
for the baseline :class:`kantk.MLP`.

The model stays a plain ``nn.Module`` (``KANModule.model``); this module adds the loss, the
regularisers, the optimizer and logging. Its constructor takes plain, YAML-friendly arguments and
saves them as hyperparameters, so ``KANModule.load_from_checkpoint(path)`` rebuilds the model
without the CLI. Both classes share one engine, :class:`_TrainingModule` (steps, LBFGS rescaling,
metrics, evaluation, optimizers, the NaN guard); only ``KANModule`` has regularisers and the grid
schedule, which act on KAN layers.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from kantk._validation import (
    check_choice,
    check_int,
    check_number,
    check_optional_int,
    is_int,
    is_number,
    short_repr,
)
from kantk.baselines import MLP
from kantk.data import check_labels
from kantk.lightning.datamodules import DTYPES
from kantk.model import (
    KAN,
    MAX_MODEL_NUMBERS,
    check_column_names,
    check_input_columns,
    default_dtype,
    planned_numbers,
    record_column_names,
)
from kantk.registry import Registry, UnknownComponentError
from kantk.regularisers import build_regularisers, regularisation

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "lbfgs": torch.optim.LBFGS,
}
#: LBFGS divides its objective afresh once it has fallen below this fraction of the last divisor.
LBFGS_RESCALE = 1e-3
#: An MSE objective at most mean(labels**2) * (LBFGS_ROUNDOFF * eps)**2 (eps of the model's dtype)
#: is round-off: LBFGS stops there instead of dividing by it. A divisor that small turns the line
#: search loose on noise, and its steps can leave the parameters' domain (NaN in a refit of
#: symbolic edges after it had reached test RMSE 4e-16: tests/integration/test_discover.py).
LBFGS_ROUNDOFF = 64
#: What LBFGS's line search is told at a trial point whose objective is not finite (its
#: objective is divided by the step's start, so about 1 there): far above, with no slope, so the
#: strong-Wolfe search backs off towards the start. Finite and moderate: its cubic interpolation
#: overflowed float32 on larger values, and a NaN ended the search in an IndexError.
LBFGS_REJECTED = 1e3
#: Learning rate used when ``lr`` is not given.
DEFAULT_LR = {"adam": 1e-2, "adamw": 1e-2, "lbfgs": 1.0}
#: pykan's LBFGS settings (full batch, strong Wolfe line search, no early stop on tolerances),
#: but 30 curvature pairs instead of 10: on the [2, 5, 1] toy fit (G=5, 100 steps, float64) test
#: RMSE over seeds 0-4 was 0.77/0.56/1.37/0.92/0.98e-3 with 30 against 1.03/0.89/1.86/1.27/1.00e-3
#: with 10, where round-off alone (summation order, thread count) moved a seed by +-15%. Memory:
#: 2 x 30 parameter-sized vectors.
LBFGS_DEFAULTS: dict[str, Any] = {
    "history_size": 30,
    "line_search_fn": "strong_wolfe",
    "tolerance_grad": 1e-32,
    "tolerance_change": 1e-32,
}
LOSSES = ("mse", "cross_entropy")
#: A custom objective: ``loss(model, batch) -> scalar tensor`` (see :class:`KANModule`); ``model``
#: is the module's :class:`kantk.KAN` or :class:`kantk.MLP`.
LossFn = Callable[[Any, Any], torch.Tensor]
#: How a custom objective is recorded in the hyperparameters (the callable itself is not saved).
CUSTOM_LOSS_PREFIX = "custom:"
#: pykan's grid-update schedule: every 5 steps until step 50.
DEFAULT_GRID_UPDATE_UNTIL = 50

# from_model hands an existing model to __init__ through this, so no throwaway model is built and
# the constructor keeps only plain (YAML-friendly, checkpointable) arguments.
_ADOPTED_MODEL: ContextVar[KAN | MLP | None] = ContextVar("kantk_adopted_model", default=None)
#: The registry :meth:`KANModule.from_model` was given (``registry=``): where the regularisers'
#: names are looked up; ``None``: the default one. Not a hyperparameter (it is not data).
_REGISTRY: ContextVar[Registry | None] = ContextVar("kantk_module_registry", default=None)
#: Set while :meth:`KANModule.load_from_checkpoint` rebuilds a module: its size is the checkpoint's
#: (a model wrapped with from_model may exceed MAX_MODEL_NUMBERS), not a config's to bound.
_FROM_CHECKPOINT: ContextVar[bool] = ContextVar("kantk_module_from_checkpoint", default=False)

#: True while ``load_from_checkpoint(path, dtype=...)`` builds a module: the caller's dtype wins
#: over the checkpoint tensors' (Lightning has merged it into the saved hyperparameters already).
_DTYPE_ASKED: ContextVar[bool] = ContextVar("kantk_module_dtype_asked", default=False)
#: KANModule's arguments that act on KAN layers: MLPModule has none of them.
KAN_ONLY = ("regularisers", "grid_update_every", "grid_update_until", "grid_eps")


class _TrainingModule(pl.LightningModule):
    """The engine :class:`KANModule` and :class:`MLPModule` share: batches, losses (built-in and
    custom), LBFGS with its objective rescaling, Adam/AdamW, metrics, evaluation, prediction and
    the NaN guard. A subclass builds (or adopts) ``self.model``, calls ``save_hyperparameters()``
    and then :meth:`_init_training`. The model has ``widths`` and ``dtype``; ``self.regularisers``
    is empty unless the model is a KAN.
    """

    #: Add a :class:`kantk.lightning.NaNGuard` to the Trainer's callbacks (``configure_callbacks``)
    #: unless it has one; set to False on the instance (``kantk.fit(nan_guard=False)``) to opt out.
    nan_guard: bool = True
    model: KAN | MLP
    optimizer_kwargs: dict[str, Any]

    def _init_training(
        self,
        loss: str,
        custom_loss: LossFn | None,
        optimizer: str,
        lr: float | None,
        regularisers: dict[str, float | dict[str, Any]] | None,
    ) -> None:
        """The training state, once the model is built; arguments already checked (``loss`` is the
        recorded name, ``custom_loss`` the callable or None)."""
        self.to(self.model_dtype)  # keeps LightningModule.dtype in step with the model
        self.loss_name: str = loss
        #: The custom objective ``loss(model, batch)``, or None for ``"mse"``/``"cross_entropy"``.
        self.custom_loss = custom_loss
        self.optimizer_name = optimizer
        self.lr = float(lr) if lr is not None else DEFAULT_LR[optimizer]
        self.regularisers = build_regularisers(regularisers, _REGISTRY.get())
        self._needs_layer_inputs = any(r.needs_layer_inputs for r in self.regularisers)
        self.automatic_optimization = optimizer != "lbfgs"
        self._lbfgs_scale: float | None = None  # LBFGS objective divisor, set on the first step
        self._lbfgs_last = 1.0  # the divided objective at the start of the last LBFGS step
        self._resumed_lbfgs: tuple[float, float] | None = None  # (scale, last) of a checkpoint
        self._checked: set[str] = set()
        self._sums: dict[tuple[str, int], torch.Tensor] = {}
        #: Latest training-step metrics (detached tensors), read by kantk.fit's history.
        self.last_train_metrics: dict[str, torch.Tensor] = {}
        #: Latest validation metrics (detached tensors).
        self.last_val_metrics: dict[str, torch.Tensor] = {}
        #: Each regulariser's penalty in the last training step, by name (:class:`NaNGuard` names
        #: one that was not finite).
        self.last_penalties: dict[str, torch.Tensor] = {}
        #: Send metrics through ``self.log``. kantk.fit switches it off when nothing reads them
        #: (no logger, no user callbacks): Lightning's logging costs milliseconds per step.
        self.log_metrics = True

    # -- model ----------------------------------------------------------------------------------

    @property
    def model_dtype(self) -> torch.dtype:
        """The dtype of the model's parameters."""
        return self.model.dtype

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the parameters' dtype as it is now: ``Trainer(precision="64-true")`` converts the
        model to float64 after it was built, and the checkpoint must rebuild it so (not as float32)."""
        hparams = checkpoint.get("hyper_parameters")
        name = str(self.model_dtype).removeprefix("torch.")
        if isinstance(hparams, dict) and name in DTYPES:
            hparams["dtype"] = name
        if self._lbfgs_scale is not None:  # LBFGS: the objective's divisor goes with its history
            checkpoint[LBFGS_KEY] = {"scale": float(self._lbfgs_scale), "last": float(self._lbfgs_last)}
        optimizers = list(getattr(self._trainer, "optimizers", None) or [])
        if len(optimizers) == 1:  # which parameter each optimizer state belongs to
            names = {id(p): name for name, p in self.named_parameters()}
            checkpoint[OPTIMIZER_PARAMS_KEY] = [
                [names.get(id(p)) for p in group["params"]] for group in optimizers[0].param_groups
            ]

    def _match_optimizer_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Line the checkpoint's optimizer state up with the parameters the resumed run's optimizer
        gets (:meth:`configure_optimizers`: ``self.model.parameters()``), by name. A run saved after
        :func:`kantk.fix_symbolic` holds ``symbolic_affine`` parameters its optimizer never had
        (the optimizer was made before them), and resuming it failed with "loaded state dict
        contains a parameter group that doesn't match the size of optimizer's group". Parameters
        new to the optimizer start without state; an LBFGS history (one vector over all the
        parameters) starts over. Nothing when the lists agree or the state is not kantk's one group.
        """
        if type(self).configure_optimizers is not _TrainingModule.configure_optimizers:
            return  # a subclass's optimizer may hold other parameters than self.model's
        trainer = self._trainer
        if trainer is not None and getattr(trainer.strategy, "restore_checkpoint_after_setup", False):
            return  # its optimizer was made before the symbolic parameters existed
        states = checkpoint.get("optimizer_states")
        if not isinstance(states, list) or len(states) != 1 or not isinstance(states[0], dict):
            return
        groups, old_state = states[0].get("param_groups"), states[0].get("state")
        if not isinstance(groups, list) or len(groups) != 1 or not isinstance(old_state, dict):
            return
        old_ids = groups[0].get("params")
        current = [f"model.{name}" for name, _ in self.model.named_parameters()]
        saved = checkpoint.get(OPTIMIZER_PARAMS_KEY)
        if isinstance(saved, list) and len(saved) == 1 and isinstance(saved[0], list):
            saved = saved[0]
        else:  # saved before the names were recorded: symbolic_affine is the one late parameter
            saved = [name for name in current if not name.endswith(".symbolic_affine")]
        if (
            not isinstance(old_ids, list)
            or len(saved) != len(old_ids)
            or saved == current
            or not set(saved) <= set(current)
        ):
            return
        position = {name: i for i, name in enumerate(saved)}
        state: dict[int, Any] = {}
        if self.optimizer_name != "lbfgs":
            for j, name in enumerate(current):
                i = position.get(name)
                if i is not None and old_ids[i] in old_state:
                    state[j] = old_state[old_ids[i]]
        groups[0]["params"] = list(range(len(current)))
        states[0]["state"] = state

    def _restore_lbfgs_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Keep the checkpoint's LBFGS scale for a resumed run (:meth:`on_train_start`): resuming
        cleared the restored curvature history and rescaled from the current loss, so the run
        went elsewhere than the uninterrupted one."""
        state = checkpoint.get(LBFGS_KEY)
        self._resumed_lbfgs = None
        if isinstance(state, Mapping):
            scale, last = state.get("scale"), state.get("last")
            if (
                is_number(scale)
                and is_number(last)
                and math.isfinite(scale)
                and scale > 0
                and math.isfinite(last)
            ):
                self._resumed_lbfgs = (float(scale), float(last))

    @property
    def classification(self) -> bool:
        """Whether the loss is cross-entropy over class indices."""
        return self.loss_name == "cross_entropy"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., widths[0]). Returns: (..., widths[-1])."""
        return self.model(x)

    def check_batch(self, batch: Any, split: str = "train") -> tuple[torch.Tensor, Any]:
        """Unpack ``(inputs, labels)``, cast floats to the model's dtype, check them (once per split).

        With a custom loss: ``(inputs, batch)``, the whole batch with its floating tensors cast, and
        its inputs for the regularisers (see :meth:`_custom_batch`).

        Raises:
            ValueError: The batch is not an (inputs, labels) pair, or a shape does not fit.
        """
        if self.custom_loss is not None:
            return self._custom_batch(batch, split)
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(f"KANModule expects batches of (inputs, labels), got {type(batch).__name__}")
        x, y = batch
        dtype = self.model_dtype
        if x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        if y.is_floating_point() and y.dtype != dtype and not self.classification:
            y = y.to(dtype)
        if split not in self._checked:
            widths = self.model.widths
            if x.dim() != 2 or x.shape[1] != widths[0]:
                raise ValueError(
                    f"{split} inputs have shape {tuple(x.shape)} but the model expects (batch, {widths[0]})"
                )
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{split} batch has {x.shape[0]} inputs but {y.shape[0]} labels")
            check_labels(y, widths[-1], self.classification, f"{split} labels")
            self._checked.add(split)
        if self.classification:
            y = y.reshape(-1).long()
        return x, y

    def _custom_batch(self, batch: Any, split: str) -> tuple[torch.Tensor, Any]:
        """A custom loss's batch: floating tensors cast to the model's dtype (in tuples, lists and
        dicts too); the inputs are the batch itself when it is a tensor, else its first element
        (an empty tensor when there is none). The inputs' shape is checked (once per split) only
        when regularisers need them.

        Raises:
            ValueError: Regularisers are active but the batch has no (B, widths[0]) inputs.
        """
        batch = _cast_floats(batch, self.model_dtype)
        if isinstance(batch, torch.Tensor):
            x = batch
        elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            x = batch[0]
        else:
            x = torch.empty(0, self.model.widths[0], dtype=self.model_dtype, device=self.device)
        if split not in self._checked:
            active = any(r.weight != 0 for r in self.regularisers)
            if active and (x.dim() != 2 or x.shape[1] != self.model.widths[0] or x.shape[0] == 0):
                raise ValueError(
                    f"regularisers need the {split} batch's inputs as a (batch, {self.model.widths[0]}) "
                    f"tensor: the batch itself or its first element; got {_describe(batch)}"
                )
            self._checked.add(split)
        return x, batch

    def _full_precision(self, pred: torch.Tensor) -> torch.Tensor:
        """``pred`` in the model's dtype: under autocast (bf16-mixed, 16-mixed) a layer may return
        bfloat16/float16; losses and metrics are taken in the parameters' precision."""
        if pred.is_floating_point() and pred.dtype != self.model_dtype:
            return pred.to(self.model_dtype)
        return pred

    # -- training -------------------------------------------------------------------------------

    def objective(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Data loss, weighted regularisation and predictions for one batch.

        The layer inputs are computed once and shared with the regularisers that need them.
        With a custom loss, ``y`` is the whole batch (:meth:`check_batch`), the loss is
        ``custom_loss(model, y)`` and ``pred`` is empty (the callable makes its own predictions).

        Returns:
            ``(loss, reg, pred)``: two scalars and (B, widths[-1]).

        Raises:
            TypeError: A custom loss returned something other than a one-element floating tensor.
        """
        if self.custom_loss is not None:
            loss = _check_loss_value(_call_loss(self.custom_loss, self.model, y), self.loss_name)
            loss = loss.to(self.model_dtype)
            active = any(r.weight != 0 for r in self.regularisers)
            reg = (
                regularisation(
                    self.regularisers, self.model, x, sync=self._distributed(), terms=self._terms()
                )
                if active
                else loss.new_zeros(())
            )
            return loss, reg, loss.new_zeros(0)
        if self._needs_layer_inputs:
            assert isinstance(self.model, KAN)  # only KANModule has regularisers
            layer_inputs = self.model.layer_inputs(x)
            pred = layer_inputs[-1]
        else:
            layer_inputs, pred = None, self.model(x)
        loss = self._loss(self._full_precision(pred), y)
        reg = regularisation(
            self.regularisers, self.model, x, layer_inputs, sync=self._distributed(), terms=self._terms()
        )
        return loss, reg, pred

    def _terms(self) -> dict[str, torch.Tensor] | None:
        """A new :attr:`last_penalties` for a training step's penalties (``None`` otherwise)."""
        if not self.training:
            return None
        self.last_penalties = {}
        return self.last_penalties

    def _loss(self, pred: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.classification:
            return F.cross_entropy(pred, y, reduction=reduction)
        return F.mse_loss(pred, y, reduction=reduction)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        x, y = self.check_batch(batch, "train")
        share = self._shard_weight(x.shape[0])
        if self.automatic_optimization:
            loss, reg, pred = self.objective(x, y)
            self._log_train(loss.detach(), reg.detach(), pred.detach(), y)
            return loss * share + reg

        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer  # one is configured
        last: dict[str, torch.Tensor] = {}
        if self._lbfgs_scale is not None and self._lbfgs_last < LBFGS_RESCALE:
            self._lbfgs_scale = None
        floor = 0.0
        if self._lbfgs_scale is None:
            # a fresh scale: drop the curvature pairs, which were measured on the old one
            getattr(optimizer, "optimizer", optimizer).state.clear()  # LightningOptimizer wraps it
            if self.loss_name == "mse" and isinstance(y, torch.Tensor) and y.is_floating_point():
                power = self.trainer.strategy.reduce(y.detach().double().square().mean(), reduce_op="mean")
                floor = float(power) * (LBFGS_ROUNDOFF * torch.finfo(self.model_dtype).eps) ** 2
        converged = False
        first = True
        trials = {"finite": 0, "rejected": 0}  # the closure's evaluations, the step's start included

        def closure() -> torch.Tensor:
            nonlocal converged, first
            optimizer.zero_grad()
            loss, reg, pred = self.objective(x, y)
            objective = loss * share + reg
            if first:  # the step's start, the same on every rank
                first = False
                start = float(self.trainer.strategy.reduce(objective.detach(), reduce_op="mean"))
                if not math.isfinite(start) or (self._lbfgs_scale is None and 0 <= start <= floor):
                    # a start that is not finite (the NaN guard stops the run; torch's line search
                    # failed on it with an IndexError), or converged to round-off: no gradient, so
                    # LBFGS ends the step where it is
                    converged = math.isfinite(start)
                    last.update(loss=loss.detach(), reg=reg.detach(), pred=pred.detach())
                    return objective.detach()
                if self._lbfgs_scale is None:  # a fresh scale: the objective at this start
                    self._lbfgs_scale = start if start > 0 else 1.0
            assert self._lbfgs_scale is not None
            objective = objective / self._lbfgs_scale
            self.manual_backward(objective)  # under DDP this also averages the gradients
            # Every rank must see the same objective, or their line searches would part ways.
            value = self.trainer.strategy.reduce(objective.detach(), reduce_op="mean")
            if not bool(torch.isfinite(value)):
                # a trial point of the line search where the loss or a penalty is not finite (a
                # barrier penalty past its wall, a symbolic edge outside its domain): torch's
                # search failed on it with an IndexError; told "far too high", it backs off
                optimizer.zero_grad(set_to_none=True)  # LBFGS reads no gradient as zeros
                trials["rejected"] += 1
                return torch.full_like(value, LBFGS_REJECTED)
            trials["finite"] += 1
            last.update(loss=loss.detach(), reg=reg.detach(), pred=pred.detach())
            return value

        self._lbfgs_last = float(optimizer.step(closure=closure))
        self._log_train(last["loss"], last["reg"], last["pred"], y)
        if trials["rejected"] and trials["finite"] <= 1:  # the step's start alone was finite
            # every point the search tried was not finite: the step stayed at its start, and so
            # would every later one (lr=1e300 ran its steps without a word); said once, by rank 0
            # (every rank saw the same reduced objective)
            from kantk._warnings import warn_at_user

            if self.trainer.is_global_zero:
                warn_at_user(
                    f"kantk: training stopped at step {self.trainer.global_step}: every point LBFGS's "
                    f"line search tried ({trials['rejected']}) gave a NaN or infinite loss or penalty (a "
                    "learning rate far too large, or a symbolic edge or penalty outside its domain all "
                    "along the step); the model is left at that step's start"
                )
            converged = True
        if converged:
            self.trainer.should_stop = True  # every rank saw the same reduced objective
        return None

    def _shard_weight(self, rows: int) -> float:
        """What this rank's mean data loss is weighted by so that DDP's average of the ranks'
        gradients is the gradient of the mean over all their rows: ``world * rows / total rows``
        (1 on one process and for equal shards). Full-batch shards of 101 and 100 rows weighed
        each rank's mean equally, another objective than one process's (9.6e-3 apart after 3 LBFGS
        steps in tests/integration/test_ddp.py's 201-row setup). A custom loss is taken as it
        is: its reduction is its own."""
        if self.custom_loss is not None or not self._distributed():
            return 1.0
        count = torch.tensor(float(rows), dtype=torch.float64, device=self.device)
        total = float(self.trainer.strategy.reduce(count, reduce_op="sum"))
        return rows * self.trainer.world_size / total

    def _distributed(self) -> bool:
        """Whether this module's Trainer trains on several processes (the regularisers then take
        whole-batch statistics and the ranks' losses are weighted). The Trainer decides, not a
        process group the program made for something else: a single-device Trainer in such a
        process weighted its loss by that group's size (2) and reduced over unrelated processes."""
        trainer = self._trainer
        return trainer is not None and int(getattr(trainer, "world_size", 1) or 1) > 1 and _distributed()

    def _log_train(self, loss: torch.Tensor, reg: torch.Tensor, pred: torch.Tensor, y: torch.Tensor) -> None:
        metrics = {"train_loss": loss, "reg": reg}
        if self.classification:
            # a share in the parameters' dtype: under bf16 autocast pred may be bfloat16 (0.9336
            # logged for 0.9328)
            metrics["train_acc"] = (pred.argmax(-1) == y).to(self.model_dtype).mean()
        elif self.custom_loss is None:  # a custom objective has no RMSE
            metrics["train_rmse"] = loss.sqrt()
        self.last_train_metrics = metrics
        if self.log_metrics:
            optimizer = self.optimizers()
            optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
            self.log_dict(
                {**metrics, "lr": float(optimizer.param_groups[0]["lr"])}, on_step=True, on_epoch=False
            )

    # -- evaluation -----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._sums = {}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._accumulate(batch, "val", dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        loaders = len(getattr(self.trainer, "num_val_batches", None) or [0])
        self.last_val_metrics = self._log_eval("val", loaders)

    def on_test_epoch_start(self) -> None:
        self._sums = {}

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._accumulate(batch, "test", dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test", len(getattr(self.trainer, "num_test_batches", None) or [0]))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Predictions (B, widths[-1]) for ``inputs`` or an ``(inputs, labels)`` batch.

        Raises:
            ValueError: Another batch (a dict of a custom loss's data loader, ...): which inputs
                to predict on is the data's to say (override ``predict_step``).
        """
        x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                "KANModule.predict_step takes a batch of inputs (a tensor) or a tuple or list whose first "
                f"element is the inputs, got {_describe(batch)}; for other batches override predict_step"
            )
        if x.is_floating_point() and x.dtype != self.model_dtype:
            x = x.to(self.model_dtype)
        return self._full_precision(self.model(x))

    def _accumulate(self, batch: Any, split: str, loader: int = 0) -> None:
        """Add the batch's loss sums to those of ``split``'s data loader number ``loader``."""
        if self.custom_loss is not None:
            self._accumulate_custom(batch, split, loader)
            return
        x, y = self.check_batch(batch, split)
        pred = self._full_precision(self.model(x))
        # sums over the whole split (all batches, all ranks), so the metric is exact, not a mean of means
        parts = [self._loss(pred, y, reduction="sum"), torch.tensor(float(y.numel()), device=pred.device)]
        if self.classification:
            parts.append((pred.argmax(-1) == y).sum().to(pred.dtype))
        self._add_sums(split, loader, torch.stack([p.to(pred.dtype) for p in parts]))

    def _add_sums(self, split: str, loader: int, sums: torch.Tensor) -> None:
        key = (split, loader)
        self._sums[key] = sums if key not in self._sums else self._sums[key] + sums

    def _accumulate_custom(self, batch: Any, split: str, loader: int) -> None:
        """A custom loss on an evaluation batch, weighted by the batch's size (its inputs' rows, else 1).

        Lightning evaluates under ``torch.inference_mode``; the loss runs with gradients enabled
        (a PDE residual differentiates the model) on copies of the batch made outside it.
        """
        with torch.inference_mode(False), torch.enable_grad():
            batch = _clone_tensors(batch)
            x, full = self.check_batch(batch, split)
            custom = self.custom_loss
            assert custom is not None  # only called with a custom loss
            loss = _check_loss_value(_call_loss(custom, self.model, full), self.loss_name)
            loss = loss.detach().to(self.model_dtype)
        rows = float(x.shape[0]) if x.dim() >= 1 and x.shape[0] > 0 else 1.0
        sums = torch.stack([loss * rows, torch.tensor(rows, dtype=loss.dtype, device=loss.device)])
        self._add_sums(split, loader, sums)

    def _log_eval(self, split: str, loaders: int = 1) -> dict[str, torch.Tensor]:
        """The metrics of ``split`` over its ``loaders`` data loaders (summed over the ranks), logged.

        One loader: ``val_loss``, ``val_rmse`` (or ``val_acc``); several (``val_dataloaders=[a,
        b]``, which ended in Lightning's "no ``dataloader_idx`` argument" error): one set per
        loader, named as Lightning names them, ``val_loss/dataloader_idx_1``."""
        found = {loader: sums for (name, loader), sums in self._sums.items() if name == split}
        for loader in found:
            del self._sums[(split, loader)]
        if not found:
            return {}
        loaders = max(loaders, 1 + max(found))
        like = next(iter(found.values()))
        metrics: dict[str, torch.Tensor] = {}
        for loader in range(loaders):  # every rank reduces every loader's sums, in the same order
            sums = found.get(loader, torch.zeros_like(like))
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            # a loader without rows (on every rank) has no metrics: NaN, not the 0 of empty sums
            n = torch.where(sums[1] > 0, sums[1], torch.full_like(sums[1], math.nan))
            suffix = f"/dataloader_idx_{loader}" if loaders > 1 else ""
            metrics[f"{split}_loss{suffix}"] = sums[0] / n
            if self.classification:
                metrics[f"{split}_acc{suffix}"] = sums[2] / n
            elif self.custom_loss is None:
                metrics[f"{split}_rmse{suffix}"] = (sums[0] / n).sqrt()
        if self.log_metrics:
            # already summed over the ranks, so every rank holds the same value; sync_dist keeps it so
            self.log_dict(metrics, prog_bar=True, sync_dist=True, add_dataloader_idx=False)
        return metrics

    # -- optimizer and callbacks ----------------------------------------------------------------

    def on_fit_start(self) -> None:
        # the data module's header names of the inputs (a CSV file's): the model records them, and
        # the kantk commands then take its inputs from a --data file's columns of those names
        if isinstance(self.model, KAN):
            names = getattr(getattr(self.trainer, "datamodule", None), "input_names", None)
            record_column_names(self.model, names)

    def on_train_start(self) -> None:
        resumed = self._resumed_lbfgs
        self._resumed_lbfgs = None
        if resumed is not None and getattr(self.trainer, "ckpt_path", None):
            # a resumed run goes on with the scale its curvature history was measured on
            self._lbfgs_scale, self._lbfgs_last = resumed
            return
        self._lbfgs_scale = None  # each fit divides by its own starting objective
        self._lbfgs_last = 1.0

    @property
    def step_start_loss(self) -> torch.Tensor | float | None:
        """The objective (loss + regularisation) at the parameters the last training step started
        from, read by :class:`kantk.lightning.NaNGuard` (LBFGS: divided by its scale, which is
        finite and positive, so it is finite exactly when the undivided objective is)."""
        if not self.automatic_optimization:
            return self._lbfgs_last
        metrics = self.last_train_metrics
        if "train_loss" not in metrics:
            return None
        return metrics["train_loss"] + metrics.get("reg", 0.0)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cls = OPTIMIZERS[self.optimizer_name]
        kwargs: dict[str, Any] = {"lr": self.lr}
        if self.optimizer_name == "lbfgs":
            kwargs.update(LBFGS_DEFAULTS)
        elif self.hparams["weight_decay"] is not None:  # None: the optimizer's own (AdamW: 0.01)
            kwargs["weight_decay"] = float(self.hparams["weight_decay"])
        kwargs.update(self.optimizer_kwargs)
        return cls(self.model.parameters(), **kwargs)

    def configure_callbacks(self) -> list[pl.Callback]:
        """A :class:`NaNGuard` (unless ``nan_guard`` is False or the Trainer already has one, which
        is then kept); none outside ``fit``."""
        from kantk.lightning.callbacks import NaNGuard

        self._check_manual_optimization()
        callbacks: list[pl.Callback] = []
        if self._evaluating():  # validate/test/predict: no training steps to guard or update
            return callbacks  # (fresh ones replaced the run's, and their state, after a fit)
        trainer_callbacks = list(getattr(self._trainer, "callbacks", None) or [])
        if self.nan_guard and not any(isinstance(c, NaNGuard) for c in trainer_callbacks):
            callbacks.append(NaNGuard())
        return callbacks

    def _stage(self) -> str | None:
        """What the Trainer runs: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"`` (a str
        enum), or ``None`` (no Trainer, or one that runs nothing yet)."""
        return getattr(getattr(self._trainer, "state", None), "fn", None)

    def _evaluating(self) -> bool:
        """Whether the Trainer runs ``validate``, ``test`` or ``predict``: no training steps."""
        return self._stage() in ("validate", "test", "predict")

    def _check_manual_optimization(self) -> None:
        """Refuse the Trainer options LBFGS cannot take, with kantk's words, before Lightning's
        check (which runs after ``configure_callbacks``) names "manual optimization", a mode the
        user never chose: LBFGS takes whole steps itself (``LBFGS.step(closure)``)."""
        trainer = self._trainer
        if self.automatic_optimization or trainer is None or self._stage() != "fit":
            return  # validate, test and predict take no optimizer steps
        clip = getattr(trainer, "gradient_clip_val", None)
        if clip:
            raise ValueError(
                f"optimizer='lbfgs' takes whole steps itself and cannot clip gradients (Trainer "
                f"gradient_clip_val={clip}); use optimizer='adam' or 'adamw' to clip, or drop "
                "gradient_clip_val"
            )
        accumulate = getattr(trainer, "accumulate_grad_batches", 1)
        if accumulate != 1:
            raise ValueError(
                f"optimizer='lbfgs' takes whole steps itself and does not accumulate gradients "
                f"(Trainer accumulate_grad_batches={accumulate}); give it full batches, or use "
                "optimizer='adam' or 'adamw' to accumulate"
            )

    @classmethod
    def load_from_checkpoint(cls, *args: Any, registry: Registry | None = None, **kwargs: Any) -> Any:
        """Lightning's loader, without :data:`MAX_MODEL_NUMBERS`: the model is the checkpoint's
        (``KANModule.from_model`` wraps larger ones), and ``kantk`` commands compare the declared
        sizes with the file first (:func:`check_checkpoint_sizes`). A ``dtype=`` among the
        overrides is the loaded model's (else the checkpoint tensors' dtype is). ``registry=``
        (``Registry.with_plugins(...)``) is where the bases, regularisers and symbolic functions
        are looked up, as in :meth:`from_model` (Lightning dropped it: an argument ``__init__``
        does not take); ``None``: the default registry."""
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(f"registry must be a kantk.Registry or None, got {type(registry).__name__}")
        token = _FROM_CHECKPOINT.set(True)
        asked = _DTYPE_ASKED.set("dtype" in kwargs)
        registry_token = _REGISTRY.set(registry)
        try:
            return super().load_from_checkpoint(*args, **kwargs)
        finally:
            _REGISTRY.reset(registry_token)
            _DTYPE_ASKED.reset(asked)
            _FROM_CHECKPOINT.reset(token)

    def _follow_checkpoint_dtype(self, checkpoint: Mapping[str, Any], key: str) -> None:
        """Convert the module to the dtype of the checkpoint's tensor ``key`` (a float dtype of
        :data:`DTYPES`) before the state is loaded (a ``"64-true"`` run saves float64 tensors under
        ``dtype: float32``); nothing when the tensor is missing, or when the caller asked for a
        dtype (``load_from_checkpoint(path, dtype="float64")``): the state is loaded into it."""
        if _DTYPE_ASKED.get():
            return
        tensor = checkpoint.get("state_dict", {}).get(key)
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.dtype in DTYPES.values()
            and tensor.dtype != self.model_dtype
        ):
            self.to(tensor.dtype)


#: The checkpoint entry that holds LBFGS's objective divisor and last divided objective.
LBFGS_KEY = "kantk_lbfgs"

#: The checkpoint entry that names the parameters of the optimizer's state, in its order.
OPTIMIZER_PARAMS_KEY = "kantk_optimizer_params"

#: The checkpoint entry that holds every layer's symbolic edges (``KANLayer.symbolic_config()``).
SYMBOLIC_KEY = "kantk_symbolic"

#: The checkpoint entry that holds the data columns of a model pruned with ``prune_inputs``
#: (``KAN.input_columns``), absent when its inputs are the first columns.
INPUT_COLUMNS_KEY = "kantk_input_columns"
#: Checkpoint key of the data's header names of the model's inputs (``KAN.column_names``), absent
#: when it has none.
COLUMN_NAMES_KEY = "kantk_column_names"


def _structure(config: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters that build a model of ``config``'s structure (``KAN.config()``): widths,
    bases and their options, base activations (product-node arities go in ``model_kwargs``)."""
    layers = config["layers"]
    return {
        "widths": list(config["widths"]),
        "basis": _collapse([layer["basis"] for layer in layers]),
        "basis_kwargs": _collapse([layer["basis_kwargs"] for layer in layers]),
        "base_activation": _collapse([layer["base_activation"] for layer in layers]),
    }


def _model_structure(model: KAN) -> dict[str, Any]:
    """:func:`_structure` of the model's config, with its ``mult_arity`` (``None``: the default)."""
    config = model.config()
    return {**_structure(config), "mult_arity": config.get("mult_arity")}


def _builds_widths(hparams: Mapping[str, Any], spelled: Any, registry: Registry | None = None) -> bool:
    """Whether the hyperparameters' ``widths`` (and ``mult_arity`` in ``model_kwargs``) build a
    model whose ``config()["widths"]`` is ``spelled`` (``[2, {"sum": 1, "mult": 1}, 1]`` builds
    ``[2, [1, 1], 1]``); also True when they cannot be read (the loader then says what is wrong)."""
    from kantk.nodes import DEFAULT_ARITY, parse_widths, widths_spelling

    model_kwargs = hparams.get("model_kwargs")
    arity = DEFAULT_ARITY
    if isinstance(model_kwargs, Mapping):
        arity = model_kwargs.get("mult_arity", DEFAULT_ARITY)
    try:
        return widths_spelling(*parse_widths(hparams.get("widths") or [], arity, registry)) == list(spelled)
    except (TypeError, ValueError, UnknownComponentError):
        return True


def _check_model_size(widths: Any, structure: Mapping[str, Any]) -> None:
    """Refuse a model larger than :data:`MAX_MODEL_NUMBERS` before it is built: it is built on the
    ``meta`` device first (shapes only, no memory), so a config's ``grid_size: 100000000`` or a
    width of a million is one line instead of gigabytes and a run that never ends.

    Raises:
        ValueError: The model would hold more numbers.
    """
    from kantk.io import MAX_NODES

    if torch.empty(0).device.type == "meta":
        return  # already the shapes-only build (check_checkpoint_sizes)
    spelled = list(widths) if isinstance(widths, (list, tuple)) else []
    counts = [v for w in spelled for v in (w if isinstance(w, (list, tuple)) else [w]) if is_int(v)]
    counts += [v for w in spelled if isinstance(w, Mapping) for v in w.values() if is_int(v)]
    if sum(counts) > MAX_NODES:  # bounded before any layout or layer is built, as kantk.load does
        raise ValueError(
            f"widths {short_repr(widths)} ask for {sum(counts):,} nodes, more than KANModule builds "
            f"from its arguments ({MAX_NODES:,}); build the KAN in Python and pass it to KANModule.from_model"
        )
    numbers = planned_numbers(widths, **structure)
    if numbers is not None and numbers > MAX_MODEL_NUMBERS:  # None: a plugin basis not built on meta
        raise ValueError(
            f"the model asked for holds {numbers:,} numbers (widths {short_repr(widths)}, basis_kwargs "
            f"{structure.get('basis_kwargs')!r}), more than KANModule builds from its arguments "
            f"({MAX_MODEL_NUMBERS:,}); check widths and grid_size/degree/num_centers, or build the KAN "
            "in Python and pass it to KANModule.from_model"
        )


class KANModule(_TrainingModule):
    """Train a KAN with Lightning: regression (MSE) or classification (cross-entropy).

    Batches are ``(inputs (B, widths[0]), labels)``, labels (B, widths[-1]) floats for ``"mse"``
    or (B,) class indices for ``"cross_entropy"``; floating batches are cast to the model's dtype.
    Logged: ``train_loss``, ``train_rmse`` or ``train_acc``, ``reg`` (the weighted
    regularisation), ``lr``, and from the validation split (a data module's test split)
    ``val_loss`` and ``val_rmse`` or ``val_acc``; :func:`kantk.fit`'s ``History`` records them as
    ``test_loss``, ``test_rmse``, ``test_accuracy`` (:data:`kantk.training.EVAL_FIELDS`).

    Args:
        widths: Nodes per layer, inputs first (``[2, 5, 1]``); a hidden entry ``[n_sum, n_mult]`` adds
            product nodes (``[2, [0, 1], 1]``, see :class:`kantk.KAN`; arity through ``model_kwargs``).
        basis: Basis registry name, or one per layer.
        basis_kwargs: Basis options, or one dict (or None) per layer.
        base_activation: ``"silu"``, ``"identity"`` or ``"zero"``, or one per layer.
        loss: ``"mse"``, ``"cross_entropy"``, or a callable ``loss(model, batch) -> scalar tensor``
            (a custom objective, e.g. a PDE residual): ``model`` is the :class:`kantk.KAN`,
            ``batch`` the data loader's batch with floating tensors cast to the model's dtype
            (for an ``(inputs, labels)`` pair the inputs are checked against ``widths[0]``). The
            regularisers are added to its value and evaluated on the batch's inputs (its first
            element, or the batch itself when it is a tensor). Logged: ``train_loss`` (its value)
            and ``reg``; validation and test evaluate the callable too (``val_loss``, with
            gradients enabled so that it may differentiate the model), no RMSE or accuracy. The
            callable is not saved: the hyperparameters record ``"custom:<module>.<qualname>"``,
            and :meth:`load_from_checkpoint` needs it again (``load_from_checkpoint(path,
            loss=fn)``).
        optimizer: ``"adam"``, ``"adamw"`` or ``"lbfgs"``. LBFGS uses pykan's settings (strong
            Wolfe line search) with a curvature history of 30 (pykan: 10; see ``LBFGS_DEFAULTS``),
            and one training step is one ``LBFGS.step(closure)``;
            give it full batches. LBFGS minimises the objective divided by its value at the
            start, and divides afresh (starting a new curvature history) whenever the objective
            has fallen 1000-fold since (the logged losses are not divided): torch's LBFGS keeps
            a curvature pair only when ``y.s > 1e-10``, an absolute threshold, and would stop
            learning once the loss is small (pykan patches its own copy of LBFGS instead).
        lr: Learning rate (default 1.0 for LBFGS, 1e-2 for Adam/AdamW).
        weight_decay: Adam/AdamW weight decay; ``None`` (default): the optimizer's own, 0 for Adam
            and 0.01 for AdamW (torch's defaults).
        optimizer_kwargs: More optimizer options (e.g. ``{"max_iter": 10}`` for LBFGS).
        regularisers: ``{name: weight}`` or ``{name: {"weight": w, **options}}`` from
            ``kantk.list_regularisers()``, e.g. ``{"l1_entropy": {"weight": 1e-3}}``.
        grid_update_every: Move the grids to the training inputs every this many steps
            (``None``: never). pykan's schedule is 5.
        grid_update_until: No grid updates from this step on (default 50, pykan's).
        grid_eps: Mix of uniform (1) and quantile (0) grid placement.
        init_seed: Seeds the model's initialisation (``KAN(seed=...)``; a distinct name so it does
            not clash with a data module's ``seed`` when Lightning merges hyperparameters).
        dtype: ``"float32"`` or ``"float64"`` (default: torch's default dtype).
        model_kwargs: More :class:`kantk.KAN` options (``noise_scale``, ``scale_base_mu``, ...).

    Raises:
        ValueError: An unknown loss or optimizer (the message lists the valid names), a bad
            option value; ``UnknownComponentError`` for an unknown basis or regulariser.
    """

    model: KAN

    def __init__(
        self,
        widths: list[int | list[int] | dict[str, int]],
        basis: str | list[str] = "bspline",
        basis_kwargs: dict[str, Any] | list[dict[str, Any] | None] | None = None,
        base_activation: str | list[str] = "silu",
        loss: str | LossFn = "mse",
        optimizer: str = "adam",
        lr: float | None = None,
        weight_decay: float | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        regularisers: dict[str, float | dict[str, Any]] | None = None,
        grid_update_every: int | None = None,
        grid_update_until: int | None = None,
        grid_eps: float = 0.02,
        init_seed: int | None = None,
        dtype: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        custom_loss = _check_loss(loss)
        if custom_loss is not None:
            # save_hyperparameters() reads the arguments from this frame: it records the name
            loss = custom_loss_name(custom_loss)
        if isinstance(optimizer, str):  # pykan's spelling: opt="LBFGS", "Adam"
            optimizer = optimizer.lower()
        _check_training_args(optimizer, lr, weight_decay, dtype)
        check_optional_int("grid_update_every", grid_update_every, 1)
        check_optional_int("grid_update_until", grid_update_until, 1)
        check_number("grid_eps", grid_eps, 0, maximum=1)
        self.optimizer_kwargs = _check_optimizer_kwargs(optimizer, optimizer_kwargs)
        self.save_hyperparameters()

        adopted = _ADOPTED_MODEL.get()
        if isinstance(adopted, KAN):
            self.model = adopted
        else:
            structure = {
                "basis": basis,
                "basis_kwargs": basis_kwargs,
                "base_activation": base_activation,
                "registry": _REGISTRY.get(),
                **dict(model_kwargs or {}),
            }
            if not _FROM_CHECKPOINT.get():
                _check_model_size(widths, structure)
            with default_dtype(DTYPES[dtype] if dtype else torch.get_default_dtype()):
                self.model = KAN(widths, seed=init_seed, **structure)
        self._recorded = _model_structure(self.model)  # what the hyperparameters build
        self._init_training(
            loss if isinstance(loss, str) else custom_loss_name(loss),
            custom_loss,
            optimizer,
            lr,
            regularisers,
        )

    @classmethod
    def from_model(cls, model: KAN, registry: Registry | None = None, **kwargs: Any) -> KANModule:
        """Wrap an existing :class:`kantk.KAN` (trained in place) instead of building a new one.

        The model's structure (widths, bases and their options, base activations, dtype) is
        recorded as hyperparameters, so a checkpoint still loads with :meth:`load_from_checkpoint`
        (which looks names up in the default registry: installed plugins).

        Args:
            model: The KAN to train.
            registry: Where the regularisers' names are looked up (``Registry.with_plugins(...)``
                for a plugin that is not installed); ``None``: the default registry.
            **kwargs: Training arguments of :class:`KANModule` (loss, optimizer, lr, ...).
        """
        if not isinstance(model, KAN):
            hint = "; train a kantk.MLP with MLPModule.from_model" if isinstance(model, MLP) else ""
            raise TypeError(f"KANModule.from_model expects a kantk.KAN, got {type(model).__name__}{hint}")
        config = model.config()
        structure = {**_structure(config), "dtype": _dtype_name(model.dtype)}
        clash = sorted(set(structure) & set(kwargs))
        if "mult_arity" in config:  # product nodes of another arity than 2: rebuilt through model_kwargs
            if "mult_arity" in (kwargs.get("model_kwargs") or {}):
                clash.append("model_kwargs['mult_arity']")
            kwargs["model_kwargs"] = {
                **(kwargs.get("model_kwargs") or {}),
                "mult_arity": config["mult_arity"],
            }
        if clash:
            raise TypeError(f"from_model takes the structure from the model; do not pass {', '.join(clash)}")
        token = _ADOPTED_MODEL.set(model)
        registry_token = _REGISTRY.set(registry)
        try:
            return cls(**structure, **kwargs)
        finally:
            _REGISTRY.reset(registry_token)
            _ADOPTED_MODEL.reset(token)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also record the symbolic edges (:func:`kantk.fix_symbolic`), under ``"kantk_symbolic"``:
        their functions are names, not tensors, and the hyperparameters hold the structure the
        module was built with, before any edge became symbolic. A model pruned with
        ``prune_inputs`` records its data columns under ``"kantk_input_columns"``, and the data's
        header names of its inputs (:attr:`KAN.column_names`) go under ``"kantk_column_names"``."""
        super().on_save_checkpoint(checkpoint)
        self._record_structure(checkpoint)
        for index, layer in enumerate(self.model.layers):
            problem = layer.functions_reload_problem()
            # a warning (an error here would end the training run), once: every rank saves
            if problem is not None and getattr(self._trainer, "is_global_zero", True):
                from kantk._warnings import warn_at_user

                warn_at_user(f"kantk: the checkpoint will not load as saved: layer {index}: {problem}")
        symbolic = [layer.symbolic_config() for layer in self.model.layers]
        if any(entry is not None for entry in symbolic):
            checkpoint[SYMBOLIC_KEY] = symbolic
        if self.model.input_columns is not None:
            checkpoint[INPUT_COLUMNS_KEY] = list(self.model.input_columns)
        if self.model.column_names is not None:
            checkpoint[COLUMN_NAMES_KEY] = list(self.model.column_names)

    def _record_structure(self, checkpoint: dict[str, Any]) -> None:
        """The model's structure as hyperparameters again when it is no longer the one they build:
        ``module.model = kantk.prune(module.model, x)`` (widths [2, 5, 1] to [2, 2, 1]), or
        ``kantk.refine(module.model, 10)``, saved checkpoints that neither loaded nor resumed
        ("size mismatch for model.layers.0.coef"). Compared as the model spells its structure
        (``KAN.config()``), so plugin node operations need no registry here."""
        hparams = checkpoint.get("hyper_parameters")
        now = _model_structure(self.model)
        if not isinstance(hparams, dict) or now == getattr(self, "_recorded", now):
            return
        structure = {key: now[key] for key in ("widths", "basis", "basis_kwargs", "base_activation")}
        model_kwargs = {k: v for k, v in dict(hparams.get("model_kwargs") or {}).items() if k != "mult_arity"}
        if now["mult_arity"] is not None:
            model_kwargs["mult_arity"] = now["mult_arity"]
        structure["model_kwargs"] = model_kwargs or None
        for target in (hparams, self.hparams):  # the next checkpoints, and hparams as the module shows them
            target.update(structure)
        self._recorded = now

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Bring the model to the checkpoint's dtype and give it the checkpoint's symbolic edges
        before its state is loaded (a checkpoint saved before the dtype was recorded, or a model
        built with another ``dtype``; symbolic edges fixed before or after the module was made).

        Raises:
            ValueError: The checkpoint holds an MLP (:class:`MLPModule`'s), or symbolic edges that
                do not fit the model.
            UnknownComponentError: A symbolic function nobody registered.
        """
        _check_checkpoint_kind(checkpoint, "KANModule")
        self._follow_checkpoint_structure(checkpoint)
        self._follow_checkpoint_dtype(checkpoint, "model.layers.0.coef")
        self._follow_checkpoint_bases(checkpoint)
        self._restore_lbfgs_state(checkpoint)
        self.model.input_columns = check_input_columns(
            checkpoint.get(INPUT_COLUMNS_KEY), self.model.widths[0]
        )
        self.model.column_names = check_column_names(checkpoint.get(COLUMN_NAMES_KEY), self.model.widths[0])
        symbolic = checkpoint.get(SYMBOLIC_KEY)
        if symbolic is not None:
            layers = self.model.layers
            if not isinstance(symbolic, list) or len(symbolic) != len(layers):
                raise ValueError(
                    f"the checkpoint's {SYMBOLIC_KEY!r} must list one entry per layer ({len(layers)}), "
                    f"got {type(symbolic).__name__}"
                )
            for layer, entry in zip(layers, symbolic):
                if entry is not None:
                    if not isinstance(entry, Mapping):
                        raise ValueError(f"an entry of the checkpoint's {SYMBOLIC_KEY!r} is not a mapping")
                    layer.load_symbolic_config(entry, registry=_REGISTRY.get())
        self._recorded = _model_structure(self.model)  # the checkpoint's hyperparameters build it
        self._match_optimizer_state(checkpoint)

    def _follow_checkpoint_structure(self, checkpoint: Mapping[str, Any]) -> None:
        """Rebuild the model with the checkpoint's widths when they are not the module's: a run
        resumed (``trainer.fit(ckpt_path=...)``, ``kantk fit --ckpt_path``) from a checkpoint of a
        pruned model (:meth:`_record_structure`) into a module built from the config's widths. The
        state loaded next sets every value; nothing when the widths agree."""
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(hparams, Mapping) or not isinstance(hparams.get("widths"), list):
            return
        if _builds_widths(hparams, self.model.config()["widths"], _REGISTRY.get()):
            return
        structure = {key: hparams.get(key) for key in ("widths", "basis", "basis_kwargs", "base_activation")}
        model_kwargs = hparams.get("model_kwargs") or {}
        if not isinstance(model_kwargs, Mapping):
            return  # a real mismatch is then load_state_dict's error
        with torch.random.fork_rng(devices=[]), default_dtype(self.model.dtype):
            rebuilt = KAN(
                list(hparams["widths"]),
                basis=structure["basis"] or "bspline",
                basis_kwargs=structure["basis_kwargs"],
                base_activation=structure["base_activation"] or "silu",
                registry=_REGISTRY.get(),
                **dict(model_kwargs),
            )
        from kantk._warnings import warn_at_user

        warn_at_user(
            f"kantk: the checkpoint's model has widths {structure['widths']} (pruned, or another model); "
            f"it replaces the module's {self.model.config()['widths']}"
        )
        self.model = rebuilt.to(device=self.model.device, dtype=self.model.dtype)
        self.hparams.update({**structure, "model_kwargs": dict(model_kwargs) or None})

    def _follow_checkpoint_bases(self, checkpoint: Mapping[str, Any]) -> None:
        """Rebuild the layers whose coefficients in the checkpoint have another shape than the
        model's, with the checkpoint's ``basis_kwargs``: a run that ``GridExtension`` refined is
        resumed (``trainer.fit(ckpt_path=...)``, ``kantk fit --ckpt_path``) from the config's
        coarser grids, and the state did not load ("size mismatch for model.layers.0.coef").
        The state loaded next sets every value; nothing when the shapes agree."""
        state = checkpoint.get("state_dict")
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(state, Mapping) or not isinstance(hparams, Mapping):
            return
        layers = self.model.layers
        changed = [
            i
            for i, layer in enumerate(layers)
            if isinstance(state.get(f"model.layers.{i}.coef"), torch.Tensor)
            and state[f"model.layers.{i}.coef"].shape != layer.coef.shape
        ]
        kwargs = hparams.get("basis_kwargs")
        if not changed or not isinstance(kwargs, (Mapping, list)):
            return  # a real mismatch is then load_state_dict's error
        config = self.model.config()
        for i in changed:
            entry = kwargs[i] if isinstance(kwargs, list) and i < len(kwargs) else kwargs
            if isinstance(entry, Mapping):
                config["layers"][i]["basis_kwargs"] = dict(entry)
            config["layers"][i].pop("symbolic", None)  # restored from the checkpoint below
        with torch.random.fork_rng(devices=[]), default_dtype(self.model.dtype):
            rebuilt = KAN.from_config(config, registry=_REGISTRY.get())
        rebuilt = rebuilt.to(device=self.model.device, dtype=self.model.dtype)
        for i in changed:
            layers[i] = rebuilt.layers[i]
        self.hparams["basis_kwargs"] = kwargs

    def configure_callbacks(self) -> list[pl.Callback]:
        """A :class:`NaNGuard` (as :class:`MLPModule`) and the grid-update schedule (when
        ``grid_update_every`` is set); none outside ``fit``."""
        from kantk.lightning.callbacks import GridUpdateCallback

        callbacks = super().configure_callbacks()
        every = self.hparams["grid_update_every"]
        if every is not None and not self._evaluating():
            until = self.hparams["grid_update_until"]
            callbacks.append(
                GridUpdateCallback(
                    every=every,
                    until=DEFAULT_GRID_UPDATE_UNTIL if until is None else until,
                    grid_eps=self.hparams["grid_eps"],
                )
            )
        return callbacks


class MLPModule(_TrainingModule):
    """Train a :class:`kantk.MLP` (the baseline) on :class:`KANModule`'s engine: the same batches,
    losses (custom ones too), optimizers (LBFGS with its rescaling), metrics, evaluation,
    prediction, NaN guard and checkpoints. There are no regularisers and no grid schedule: they act
    on KAN layers (:data:`KAN_ONLY`).

    Args:
        widths: Nodes per layer, inputs first (``[2, 64, 64, 1]``).
        activation: The activation between the layers (:data:`kantk.baselines.ACTIVATIONS`).
        loss: As :class:`KANModule` (a custom ``loss(model, batch)`` gets the :class:`kantk.MLP`).
        optimizer: As :class:`KANModule`.
        lr: As :class:`KANModule`.
        weight_decay: Adam/AdamW weight decay; ``None`` (default): the optimizer's own, 0 for Adam
            and 0.01 for AdamW (torch's defaults).
        optimizer_kwargs: As :class:`KANModule`.
        init_seed: Seeds the initialisation (``MLP(seed=...)``); ``None``: torch's global random
            state, as for ``KANModule``.
        dtype: ``"float32"`` or ``"float64"`` (default: torch's default dtype).

    Checkpoints: ``MLPModule.load_from_checkpoint(path)`` rebuilds the MLP, in the dtype it was
    saved in. ``KANModule.load_from_checkpoint`` refuses an MLP's checkpoint, and this class a
    KAN's, each naming the other. ``kantk.save``/``kantk.load`` (``.kantk`` files) are for KANs only.

    Raises:
        ValueError: Bad widths, an unknown activation, loss or optimizer (the message lists the
            valid ones), a bad option value.
    """

    model: MLP

    def __init__(
        self,
        widths: list[int],
        activation: str = "silu",
        loss: str | LossFn = "mse",
        optimizer: str = "adam",
        lr: float | None = None,
        weight_decay: float | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        init_seed: int | None = None,
        dtype: str | None = None,
    ):
        super().__init__()
        custom_loss = _check_loss(loss)
        if custom_loss is not None:
            # save_hyperparameters() reads the arguments from this frame: it records the name
            loss = custom_loss_name(custom_loss)
        if isinstance(optimizer, str):  # pykan's spelling: opt="LBFGS", "Adam"
            optimizer = optimizer.lower()
        _check_training_args(optimizer, lr, weight_decay, dtype)
        self.optimizer_kwargs = _check_optimizer_kwargs(optimizer, optimizer_kwargs)
        self.save_hyperparameters()

        adopted = _ADOPTED_MODEL.get()
        if isinstance(adopted, MLP):
            self.model = adopted
        else:
            self.model = MLP(widths, activation, seed=init_seed, dtype=DTYPES[dtype] if dtype else None)
        self._init_training(
            loss if isinstance(loss, str) else custom_loss_name(loss), custom_loss, optimizer, lr, None
        )

    @classmethod
    def from_model(cls, model: MLP, **kwargs: Any) -> MLPModule:
        """Wrap an existing :class:`kantk.MLP` (trained in place) instead of building a new one.

        Its structure (widths, activation, dtype) is recorded as hyperparameters, so a checkpoint
        still loads with :meth:`load_from_checkpoint`.

        Args:
            model: The MLP to train.
            **kwargs: Training arguments: ``loss``, ``optimizer``, ``lr``, ``weight_decay``,
                ``optimizer_kwargs``.

        Raises:
            TypeError: ``model`` is not an MLP, a structure argument or a KAN-only one is given.
        """
        if not isinstance(model, MLP):
            hint = "; train a kantk.KAN with KANModule.from_model" if isinstance(model, KAN) else ""
            raise TypeError(f"MLPModule.from_model expects a kantk.MLP, got {type(model).__name__}{hint}")
        kan_only = [name for name in KAN_ONLY if name in kwargs]
        if kan_only:
            raise TypeError(
                f"{', '.join(kan_only)}: KAN-only (they act on KAN layers); an MLP trains with "
                "loss, optimizer, lr, weight_decay and optimizer_kwargs"
            )
        structure: dict[str, Any] = {**model.config(), "dtype": _dtype_name(model.dtype)}
        clash = sorted(set(structure) & set(kwargs))
        if clash:
            raise TypeError(f"from_model takes the structure from the model; do not pass {', '.join(clash)}")
        token = _ADOPTED_MODEL.set(model)
        try:
            return cls(**structure, **kwargs)
        finally:
            _ADOPTED_MODEL.reset(token)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Bring the model to the checkpoint's dtype before its state is loaded.

        Raises:
            ValueError: The checkpoint holds a KAN (:class:`KANModule`'s).
        """
        _check_checkpoint_kind(checkpoint, "MLPModule")
        self._follow_checkpoint_dtype(checkpoint, "model.layers.0.weight")
        self._restore_lbfgs_state(checkpoint)


def _check_training_args(
    optimizer: str, lr: float | None, weight_decay: float | None, dtype: str | None
) -> None:
    """The optimizer, learning-rate, weight-decay and dtype arguments of both modules.

    Raises:
        ValueError: An unknown optimizer or dtype (the message lists the valid ones), a bad number.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if lr is not None:
        check_number("lr", lr, 0, strict=True, finite=True)
    if weight_decay is not None:
        check_number("weight_decay", weight_decay, 0, finite=True)
        # it was accepted and ignored (checkpoints of that time still load: 0.0 was the default)
        if optimizer == "lbfgs" and weight_decay != 0 and not _FROM_CHECKPOINT.get():
            raise ValueError("weight_decay applies to adam and adamw; lbfgs has none (leave it None)")
    if dtype is not None:
        check_choice("dtype", dtype, DTYPES)


def check_checkpoint_sizes(checkpoint: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose hyperparameters describe a larger model than its state dict
    holds, before any model is built (a 1 KB file could otherwise ask for widths
    ``[1, 30000, 30000, 1]`` and tens of gigabytes).

    First every layer's edge count from ``widths`` (and ``model_kwargs["mult_arity"]``) against
    its ``coef`` in the state dict; then, with the model's size bounded by the file's, the module
    is built on the ``meta`` device (no memory) and every tensor's shape compared.

    Args:
        checkpoint: A ``KANModule`` checkpoint as ``torch.load(path, weights_only=True)`` reads it.

    Raises:
        ValueError: Not a ``KANModule`` checkpoint, or hyperparameters that do not fit its
            state dict (the message names the first tensor or layer that differs).
    """
    from kantk.io import read_widths
    from kantk.model import _subnodes

    _check_checkpoint_kind(checkpoint, "KANModule")
    hparams, state = checkpoint.get("hyper_parameters"), checkpoint.get("state_dict")
    if not isinstance(hparams, Mapping) or not isinstance(state, Mapping):
        raise ValueError("not a KANModule checkpoint: it has no hyper_parameters and state_dict")
    # the spelling, read with kantk.load's bounds (layers, node counts) before any layout is built
    model_kwargs = hparams.get("model_kwargs")
    declared = hparams.get("widths")
    spelling = {"widths": list(declared) if isinstance(declared, tuple) else declared}
    if isinstance(model_kwargs, Mapping) and "mult_arity" in model_kwargs:
        spelling["mult_arity"] = model_kwargs["mult_arity"]

    def bad(field: str, message: str) -> ValueError:
        return ValueError(f"hyper_parameters {field} {message}")

    widths, layouts = read_widths(spelling, bad)
    n_layers = len(widths) - 1
    for i in range(n_layers):
        want = (_subnodes(widths[i + 1], layouts[i + 1]), widths[i])
        coef = state.get(f"model.layers.{i}.coef")
        got = tuple(coef.shape[:2]) if isinstance(coef, torch.Tensor) and coef.dim() == 3 else None
        if got != want:
            found = "no coefficients" if got is None else f"{got[0]} x {got[1]}"
            raise ValueError(
                f"hyper_parameters widths give layer {i} {want[0]} x {want[1]} edges, but the "
                f"state_dict holds {found} for it"
            )
    if f"model.layers.{n_layers}.coef" in state:
        raise ValueError(f"the state_dict holds more layers than the {n_layers} of hyper_parameters widths")
    _check_stored_values(state)
    # as Lightning's loader: keys __init__ does not take are left out (LightningCLI's _instantiator)
    accepted = inspect.signature(KANModule.__init__).parameters
    try:
        with torch.device("meta"):
            built = KANModule(**{k: v for k, v in hparams.items() if k in accepted and k != "self"})
    except (RuntimeError, NotImplementedError):
        return  # a plugin that cannot be built on meta: load_state_dict compares the shapes
    except TypeError as exc:
        raise ValueError(f"hyper_parameters: {exc}") from None
    for key, value in built.state_dict().items():
        held = state.get(key)
        if not isinstance(held, torch.Tensor):
            raise ValueError(f"the state_dict has no tensor {key!r}, which the hyper_parameters imply")
        if held.shape != value.shape:
            raise ValueError(
                f"hyper_parameters give tensor {key!r} the shape {tuple(value.shape)}, but the "
                f"state_dict holds {tuple(held.shape)}"
            )


def _check_stored_values(state: Mapping[str, Any]) -> None:
    """Refuse a state dict whose tensors hold more values than the file stores: ``torch.save``
    keeps views, so ``torch.zeros(1).expand(6000, 6000, 6)`` is one stored number, and a 5.8 KB
    checkpoint of widths ``[2, 6000, 6000, 1]`` passed the shape checks and took 3.2 GB.

    Raises:
        ValueError: The tensors' values outnumber the bytes of their distinct storages.
    """
    needed = 0
    stored: dict[tuple[int, int], int] = {}
    for value in state.values():
        if isinstance(value, torch.Tensor):
            needed += value.numel() * value.element_size()
            storage = value.untyped_storage()
            stored[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
    if needed > sum(stored.values()):
        raise ValueError(
            f"the state_dict's tensors hold {needed:,} bytes of values but the file stores "
            f"{sum(stored.values()):,} (views that repeat stored values, as expand makes); a "
            "checkpoint must store every value of its model"
        )


def _check_checkpoint_kind(checkpoint: Mapping[str, Any], loader: str) -> None:
    """Refuse the other module's checkpoint before its state is loaded: ``MLPModule``'s
    hyperparameters have ``activation`` and no ``basis``; ``KANModule``'s always have ``basis``.

    Raises:
        ValueError: ``loader`` (``"KANModule"`` or ``"MLPModule"``) is the wrong class for it.
    """
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return
    if loader == "KANModule" and "activation" in hparams and "basis" not in hparams:
        raise ValueError(
            "this checkpoint holds a kantk.MLP, not a KAN: load it with "
            "kantk.lightning.MLPModule.load_from_checkpoint(path)"
        )
    if loader == "MLPModule" and "basis" in hparams:
        raise ValueError(
            "this checkpoint holds a kantk.KAN, not an MLP: load it with "
            "kantk.lightning.KANModule.load_from_checkpoint(path)"
        )


#: Largest LBFGS ``history_size`` (and ``max_iter``, ``max_eval``) an ``optimizer_kwargs`` may
#: give: each pair of the history is two parameter-sized vectors (``history_size: 1000000`` grew
#: one step to 5 GB), and a bad value failed only at the first step, after the sanity check.
MAX_LBFGS_HISTORY = 1000
MAX_LBFGS_ITERATIONS = 100_000


def _check_optimizer_kwargs(name: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``kwargs`` when the optimizer ``name`` takes them: known names, and values the optimizer
    accepts (it is built once on a dummy parameter: Adam's ``betas: [0.9]`` raised an IndexError
    at the first step), LBFGS's also in bounds (:data:`MAX_LBFGS_HISTORY`)."""
    kwargs = dict(kwargs or {})
    if "lr" in kwargs:
        raise ValueError("pass the learning rate as lr=..., not inside optimizer_kwargs")
    params = inspect.signature(OPTIMIZERS[name]).parameters
    accepted = sorted(p for p in params if p not in ("self", "params", "lr"))
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} does not accept {', '.join(map(repr, unknown))}; "
            f"accepted optimizer_kwargs: {', '.join(accepted)}"
        )
    if name == "lbfgs":
        for key, most in (
            ("history_size", MAX_LBFGS_HISTORY),
            ("max_iter", MAX_LBFGS_ITERATIONS),
            ("max_eval", MAX_LBFGS_ITERATIONS),
        ):
            if key in kwargs and not (key == "max_eval" and kwargs[key] is None):
                value = check_int(f"optimizer_kwargs {key}", kwargs[key], 1)
                if value > most:
                    raise ValueError(f"optimizer_kwargs {key} must be at most {most:,}, got {value:,}")
        for key in ("tolerance_grad", "tolerance_change"):
            if key in kwargs:
                check_number(f"optimizer_kwargs {key}", kwargs[key], 0, finite=True)
        if kwargs.get("line_search_fn", "strong_wolfe") not in (None, "strong_wolfe"):
            search = kwargs["line_search_fn"]
            raise ValueError(
                f"optimizer_kwargs line_search_fn must be 'strong_wolfe' or None, got {search!r}"
            )
    try:
        OPTIMIZERS[name]([torch.zeros(1, requires_grad=True)], **kwargs)
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        # a flag about the parameters' device is the real optimizer's to judge (fused wants CUDA
        # tensors on older torch): refused on the CPU dummy for that alone, the rest is tried
        # without it ("fused and foreach cannot be True together" is refused as it is)
        device_flags = ("fused", "capturable")
        about_device = any(w in str(exc).lower() for w in ("cuda", "device", "tensor type", "supported"))
        rest = {k: v for k, v in kwargs.items() if k not in device_flags}
        if not (about_device and len(rest) < len(kwargs) and _accepts(name, rest)):
            raise ValueError(f"optimizer {name!r} refuses optimizer_kwargs {kwargs}: {exc}") from None
    return kwargs


def _accepts(name: str, kwargs: dict[str, Any]) -> bool:
    """Whether the optimizer ``name`` builds with ``kwargs`` on a CPU dummy parameter."""
    try:
        OPTIMIZERS[name]([torch.zeros(1, requires_grad=True)], **kwargs)
    except (TypeError, ValueError, IndexError, RuntimeError):
        return False
    return True


def _check_loss(loss: Any) -> LossFn | None:
    """The custom objective, or None for a built-in loss name.

    Raises:
        ValueError: An unknown name (a recorded custom loss name gets a hint on how to pass it).
    """
    if isinstance(loss, torch.nn.modules.loss._Loss):  # pykan's loss_fn(pred, target)
        raise ValueError(
            f"loss={type(loss).__name__}() is a loss of (pred, target); kantk calls a custom loss as "
            "loss(model, batch): pass loss=lambda model, batch: fn(model(batch[0]), batch[1]), or "
            f"one of {', '.join(LOSSES)}"
        )
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return None
    if isinstance(loss, str) and loss.startswith(CUSTOM_LOSS_PREFIX):
        raise ValueError(
            f"this model was trained with the custom loss {loss[len(CUSTOM_LOSS_PREFIX) :]!r}, which is not "
            "saved in checkpoints; pass it again: KANModule.load_from_checkpoint(path, loss=the_function)"
        )
    raise ValueError(
        f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)} or a callable loss(model, batch) -> scalar"
    )


def _call_loss(fn: LossFn, model: Any, batch: Any) -> Any:
    """``fn(model, batch)``; when it fails on the arguments' types (a pykan-style
    ``loss_fn(pred, target)`` ended as "unsupported operand type(s) for -: 'KAN' and 'list'"),
    the error gets a note on what kantk passes. The error itself is kept: a loss's own bug reads
    as it is."""
    try:
        return fn(model, batch)
    except (TypeError, AttributeError) as exc:
        text = str(exc)
        if re.search(rf"\b({type(model).__name__}|list|tuple)\b", text):
            note = (
                f"kantk calls a custom loss as loss(model, batch), model the {type(model).__name__} and "
                "batch as the data module gives it (kantk.fit's: [inputs, labels]), not as pykan's "
                "loss_fn(pred, target): wrap one as "
                "loss=lambda model, batch: loss_fn(model(batch[0]), batch[1])"
            )
            if not hasattr(exc, "add_note"):  # Python 3.10
                raise TypeError(f"{text}; {note}") from exc
            exc.add_note(note)
        raise


def custom_loss_name(fn: Callable[..., Any]) -> str:
    """How a custom loss is recorded in the hyperparameters: ``"custom:<module>.<qualname>"``."""
    owner = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn)
    module = getattr(owner, "__module__", None) or "?"
    qualname = getattr(owner, "__qualname__", None) or type(fn).__name__
    return f"{CUSTOM_LOSS_PREFIX}{module}.{qualname}"


def _check_loss_value(value: Any, name: str) -> torch.Tensor:
    """``value`` as a 0-d tensor.

    Raises:
        TypeError: It is not a one-element floating tensor.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return value.reshape(())
    if isinstance(value, torch.Tensor):
        shown = f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    else:
        shown = type(value).__name__
    raise TypeError(
        f"the loss {name.removeprefix(CUSTOM_LOSS_PREFIX)!r} must return a floating scalar tensor "
        f"(one element), got {shown}"
    )


def _cast_floats(batch: Any, dtype: torch.dtype) -> Any:
    """``batch`` with its floating tensors cast to ``dtype`` (through tuples, lists and dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() and batch.dtype != dtype else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_cast_floats(b, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: _cast_floats(v, dtype) for k, v in batch.items()}
    return batch


def _clone_tensors(batch: Any) -> Any:
    """``batch`` with every tensor cloned (through tuples, lists and dicts)."""
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, (tuple, list)):
        return type(batch)(_clone_tensors(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _clone_tensors(v) for k, v in batch.items()}
    return batch


def _describe(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {', '.join(_describe(b) for b in batch) or 'nothing'}"
    if isinstance(batch, Mapping):
        keys = ", ".join(repr(k) for k in list(batch)[:10])
        return f"a {type(batch).__name__} with keys {keys or 'none'}"
    return type(batch).__name__


def _distributed() -> bool:
    """Whether several ranks train together (the regularisers then take whole-batch statistics)."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def _collapse(values: list[Any]) -> Any:
    """One value when every layer has the same, else the per-layer list."""
    return values[0] if all(v == values[0] for v in values) else values


def _dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"kantk trains float32 or float64 models, got {dtype}")
    return name
