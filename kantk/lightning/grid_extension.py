"""``GridExtension``: refine the KAN's grids on a schedule inside one Lightning run."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from kantk._validation import check_int, is_int
from kantk.bases.base import SupportsRefine
from kantk.grids import per_layer_sizes, refine, refined_basis
from kantk.model import KAN, MAX_MODEL_NUMBERS

Size = int | Sequence[int]


class GridExtension(pl.Callback):
    """Move the model to finer grids at set steps of one run (pykan's grid extension).

    pykan trains on a coarse grid, refines (G = 3 -> 5 -> 10 -> 20 -> 50, ...) and trains on from
    the same function. Before training step ``steps[i]`` this callback:

    1. refines ``pl_module.model`` to ``grid_sizes[i]`` with :func:`kantk.refine` (the function is
       kept: exactly for B-splines on nested grids and Chebyshev, by least squares otherwise) and
       puts the refined layers into the same :class:`kantk.KAN` object, so the model handed to
       the LightningModule (or to :func:`kantk.fit`) ends up refined;
    2. rebuilds the optimizer (and any schedulers) from ``configure_optimizers``, as the
       parameters changed shape: its state (Adam moments, LBFGS history) starts afresh;
    3. updates the module's ``basis_kwargs`` hyperparameter (when it has one, as
       :class:`kantk.lightning.KANModule` does), so a later checkpoint loads with
       ``load_from_checkpoint``.

    Example::

        model = kantk.KAN([2, 1, 1], basis_kwargs={"grid_size": 3})
        kantk.fit(model, data, steps=1000,
                  callbacks=[GridExtension(grid_sizes=(5, 10, 20, 50), every=200)])
        model.layers[0].basis.grid_size   # 50

    Runs on one process; under DDP it raises (the DDP wrapper would keep the old parameters).

    Args:
        grid_sizes: The resolutions to refine to, in order (B-spline ``grid_size``, Chebyshev
            ``degree``, RBF ``num_centers``), each an int or a list with one per layer.
        every: Refine to ``grid_sizes[i]`` before step ``(i + 1) * every``.
        steps: Or the steps themselves, increasing, one per size (give ``every`` or ``steps``).
        **refine_options: Passed to :func:`kantk.refine` (e.g. ``uniform=False``).

    Attributes:
        refined_at: ``(step, size)`` of every refinement done so far, of the model refined last
            (a fit of another model starts the schedule again).
    """

    def __init__(
        self,
        grid_sizes: Sequence[Size],
        every: int | None = None,
        steps: Sequence[int] | None = None,
        **refine_options: Any,
    ):
        super().__init__()
        if isinstance(grid_sizes, (str, bytes)) or not isinstance(grid_sizes, Sequence) or not grid_sizes:
            raise ValueError(
                f"GridExtension grid_sizes must be a non-empty list such as (5, 10, 20), got {grid_sizes!r}"
            )
        for size in grid_sizes:
            flat: Sequence[Any] = [size]
            if isinstance(size, Sequence) and not isinstance(size, (str, bytes)):
                flat = size
            if not all(is_int(s) and s >= 1 for s in flat):
                raise ValueError(
                    "GridExtension grid_sizes entries must be ints >= 1 or lists of them (one per layer), "
                    f"got {size!r}"
                )
        if (every is None) == (steps is None):
            raise ValueError(
                "GridExtension needs exactly one of every= (steps between refinements) or steps="
            )
        if every is not None:
            check_int("GridExtension every", every, 1)
            schedule = [(i + 1) * every for i in range(len(grid_sizes))]
        else:
            schedule = list(steps)  # type: ignore[arg-type]
            if len(schedule) != len(grid_sizes):
                raise ValueError(f"GridExtension got {len(schedule)} steps for {len(grid_sizes)} grid_sizes")
            if not all(is_int(s) and s >= 1 for s in schedule) or any(
                b <= a for a, b in zip(schedule, schedule[1:])
            ):
                raise ValueError(f"GridExtension steps must be increasing ints >= 1, got {steps!r}")
        self.grid_sizes: list[Size] = list(grid_sizes)
        self.steps: list[int] = schedule
        self.refine_options = dict(refine_options)
        self.refined_at: list[tuple[int, Size]] = []
        self._refined_model: weakref.ref[Any] | None = None  # the model refined_at belongs to

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_refined_model": None}  # a weak reference does not pickle

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # another model starts the schedule again (a resumed run gets its state back after setup):
        # one used for a second fit refined nothing; the model it refined keeps its record (a
        # second fit of it refined to a coarser grid again and failed)
        last = self._refined_model() if self._refined_model is not None else None
        if stage == "fit" and last is not getattr(pl_module, "model", None):
            self.refined_at = []
        if trainer.world_size > 1:  # a ValueError: the command line's refusal, not an "internal error"
            raise ValueError(
                "GridExtension runs on one process only: under DDP the wrapped model would keep training "
                "the old parameters. Train each grid in its own run (kantk.refine between runs) or use "
                "one device"
            )
        model = getattr(pl_module, "model", None)
        if not isinstance(model, KAN):
            raise TypeError(
                f"GridExtension refines pl_module.model, which must be a kantk.KAN; "
                f"{type(pl_module).__name__} has {type(model).__name__}"
            )
        self._check_sizes(model)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after a resumed run's state is back (setup comes before it), before the first step
        model = pl_module.model
        assert isinstance(model, KAN)  # setup() refused anything else
        self._check_schedule(model)

    def _check_sizes(self, model: KAN) -> None:
        """Refuse, before training, a schedule whose finest grids the model's coefficients cannot
        hold within :data:`kantk.model.MAX_MODEL_NUMBERS` (the bound of a config's model): a
        config's ``grid_sizes: [100000000]`` was accepted and asked for 3.5 GB once training ran.
        Each layer's coefficients hold at least ``out * in * size`` numbers (a B-spline's
        ``size + order``, a Chebyshev's ``size + 1``, an RBF's ``size`` functions per edge)."""
        for size in self.grid_sizes:
            sizes = per_layer_sizes(size, len(model.layers))
            numbers = sum(
                layer.out_features * layer.in_features * int(s)
                for layer, s in zip(model.layers, sizes)
                if isinstance(layer.basis, SupportsRefine)
            )
            if numbers > MAX_MODEL_NUMBERS:
                raise ValueError(
                    f"GridExtension grid_sizes entry {size!r} asks for at least {numbers:,} coefficients, "
                    f"more than a KANModule builds (kantk.model.MAX_MODEL_NUMBERS, {MAX_MODEL_NUMBERS:,})"
                )

    def _check_schedule(self, model: KAN) -> None:
        """Refuse, before the first step, a schedule that a basis cannot follow (a grid coarser
        than the model's or the entry before: ``grid_size: 5`` with ``grid_sizes: [3]`` ended the
        run with that error at the refinement's step, after the steps before it). The entries not
        yet applied (a resumed run, or a second fit of the model, has done some) are refined
        through, layer by layer, on one output node's coefficients (cheap), as kantk.refine does."""
        for index, layer in enumerate(model.layers):
            basis, coef = layer.basis, layer.coef.detach()[:1]
            for size in self.grid_sizes[len(self.refined_at) :]:
                if not isinstance(basis, SupportsRefine):
                    break  # kantk.refine copies such a layer unchanged, with a warning
                entry = per_layer_sizes(size, len(model.layers))[index]
                try:
                    basis, coef = refined_basis(
                        basis, coef, entry, self.refine_options, index, layer.basis_name
                    )
                except ValueError as exc:
                    raise ValueError(f"GridExtension grid_sizes entry {size!r}: {exc}") from None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self._due(step) and not all(bool(torch.isfinite(p).all()) for p in pl_module.parameters()):
            # not refined into the new grids: the NaN guard's next check restores the (coarse)
            # state it confirmed; the refinement waits for finite parameters
            return
        while self._due(step):
            size = self.grid_sizes[len(self.refined_at)]
            self._refine(trainer, pl_module, size)
            self.refined_at.append((step, size))
            self._refined_model = weakref.ref(pl_module.model)

    def _due(self, step: int) -> bool:
        """Whether a refinement not yet made is scheduled at or before ``step``."""
        return len(self.refined_at) < len(self.steps) and self.steps[len(self.refined_at)] <= step

    def _refine(self, trainer: pl.Trainer, pl_module: pl.LightningModule, size: Size) -> None:
        model = pl_module.model
        assert isinstance(model, KAN)  # setup() refused anything else
        finer = refine(model, size, **self.refine_options)
        for index, layer in enumerate(finer.layers):  # in place: whoever holds `model` sees the new grids
            model.layers[index] = layer
        _setup_optimizers_keeping_schedules(trainer)  # the old optimizer holds the old parameters
        from kantk.lightning.callbacks import NaNGuard

        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, NaNGuard):  # its snapshots have the old shapes
                callback.restart(trainer, pl_module)
        hparams = getattr(pl_module, "hparams", None)
        if hparams is not None and "basis_kwargs" in hparams:
            configs = [layer.basis.config() for layer in model.layers]
            hparams["basis_kwargs"] = configs[0] if all(c == configs[0] for c in configs) else configs

    def state_dict(self) -> dict[str, Any]:
        return {"refined_at": [list(item) for item in self.refined_at]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.refined_at = [(int(step), size) for step, size in state_dict.get("refined_at", [])]


def _setup_optimizers_keeping_schedules(trainer: pl.Trainer) -> None:
    """New optimizers for the new parameters (``configure_optimizers``), at the learning rates the
    old ones had reached, and the learning-rate schedulers where the old ones were: a StepLR
    halving every epoch went back to its first rate at each refinement (0.01, 0.005, 0.0025,
    then 0.005 again). The optimizers' own state (Adam's moments, LBFGS's history) starts afresh."""
    old_rates = [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers]
    old_schedules = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
    trainer.strategy.setup_optimizers(trainer)
    new_rates = [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers]
    if [len(r) for r in new_rates] != [len(r) for r in old_rates]:
        return  # another set of optimizers: nothing to carry over
    for opt, rates in zip(trainer.optimizers, old_rates):
        for group, rate in zip(opt.param_groups, rates):
            group["lr"] = rate
    if len(trainer.lr_scheduler_configs) == len(old_schedules):
        for config, state in zip(trainer.lr_scheduler_configs, old_schedules):
            config.scheduler.load_state_dict(state)
