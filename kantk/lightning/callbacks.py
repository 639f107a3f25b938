"""Lightning callbacks: the grid-update schedule and a step-counting progress bar."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar


class GridUpdateCallback(pl.Callback):
    """Move the KAN's grids to the training inputs on a schedule (pykan's ``update_grid`` in ``fit``).

    Before training steps ``0, every, 2*every, ...`` below ``until`` it calls
    ``pl_module.model.update_grid(x, grid_eps=grid_eps)`` with that step's training inputs. Under
    DDP the inputs of every process are gathered first (in rank order), so every rank computes the
    same grids and refitted coefficients and the replicas stay identical.

    Args:
        every: Steps between updates (pykan: 5).
        until: No updates from this step on (pykan: 50).
        grid_eps: Mix of uniform (1) and data-quantile (0) grid placement (pykan: 0.02).
    """

    def __init__(self, every: int = 5, until: int = 50, grid_eps: float = 0.02):
        super().__init__()
        for name, value in (("every", every), ("until", until)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GridUpdateCallback {name} must be an int >= 1, got {value!r}")
        self.every = every
        self.until = until
        self.grid_eps = float(grid_eps)
        #: Steps at which the grids were updated (on this process).
        self.updated_at: list[int] = []

    def due(self, step: int) -> bool:
        """Whether the grids are updated before training step ``step``."""
        return step < self.until and step % self.every == 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not self.due(step):
            return
        model = pl_module.model
        update = getattr(model, "update_grid", None)
        if update is None:
            raise RuntimeError(
                f"grid updates need {type(model).__name__}.update_grid, which this kantk version does not "
                "provide; train without them (grid_update_every=None)"
            )
        if hasattr(pl_module, "check_batch"):  # shape errors before the model changes
            x, _ = pl_module.check_batch(batch, "train")
        else:
            x = batch[0]
        x = gather_rows(x.detach(), trainer, pl_module)
        with torch.no_grad():
            update(x, grid_eps=self.grid_eps)
        self.updated_at.append(step)


def gather_rows(
    x: torch.Tensor, trainer: pl.Trainer, pl_module: pl.LightningModule | None = None
) -> torch.Tensor:
    """All processes' rows of ``x`` (n_rank, d) concatenated in rank order; ``x`` itself on one process."""
    import torch.distributed as dist

    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return x
    world = dist.get_world_size()
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(int(s) for s in sizes))
    padded = x.new_zeros(longest, *x.shape[1:])  # all_gather needs equal shapes
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)])


class StepProgressBar(ProgressBar):
    """One tqdm bar over training steps (``max_steps``) with the latest metrics.

    Lightning's default bar counts batches per epoch, which in full-batch training means a bar of
    length one per step. This one appears only after ``delay`` seconds, so short runs stay quiet.

    Args:
        delay: Seconds before the bar is first shown.
        metrics: Logged metric names to show, in order (those not logged are left out).
    """

    def __init__(
        self,
        delay: float = 2.0,
        metrics: tuple[str, ...] = ("train_rmse", "val_rmse", "train_acc", "val_acc", "reg"),
    ):
        super().__init__()
        self.delay = float(delay)
        self.metrics = tuple(metrics)
        self._enabled = True
        self._bar: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._bar is not None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self._bar = tqdm(
            total=total,
            initial=trainer.global_step,
            desc="kantk",
            unit="step",
            delay=self.delay,
            dynamic_ncols=True,
            leave=True,
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._bar is None:
            return
        self._bar.update(trainer.global_step - self._bar.n)
        self._show(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None and not trainer.sanity_checking:
            self._show(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()

    def _show(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # KANModule keeps its latest metrics even when it does not log them
        latest = {
            **getattr(pl_module, "last_train_metrics", {}),
            **getattr(pl_module, "last_val_metrics", {}),
        }
        shown = {}
        for name in self.metrics:
            value = trainer.callback_metrics.get(name, latest.get(name))
            if value is not None:
                v = float(value)
                shown[name] = f"{v:.2e}" if math.isfinite(v) else str(v)
        self._bar.set_postfix(shown, refresh=False)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
