"""Lightning callbacks: the grid-update schedule, the NaN guard and a step-counting progress bar."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_only

from kantk._validation import check_int, check_number, check_optional_int
from kantk._warnings import warn_at_user
from kantk.model import KAN


class GridUpdateCallback(pl.Callback):
    """Move the KAN's grids to the training inputs on a schedule (pykan's ``update_grid`` in ``fit``).

    Before training steps ``0, every, 2*every, ...`` below ``until`` it calls
    ``pl_module.model.update_grid(x, grid_eps=grid_eps)`` with that step's training inputs. Under
    DDP the inputs of every process are gathered first (in rank order), so every rank computes the
    same grids and refitted coefficients and the replicas stay identical. A due update whose batch
    has fewer rows than the largest batch seen in this run (an epoch's last, partial batch: one row
    put every knot within 0.002 of it) waits for the next full batch below ``until``. The largest
    batch seen and a waiting update are kept in checkpoints, so a resumed run updates where the
    uninterrupted one does.

    Args:
        every: Steps between updates (pykan: 5).
        until: No updates from this step on (pykan: 50).
        grid_eps: Mix of uniform (1) and data-quantile (0) grid placement (pykan: 0.02).

    Raises:
        ValueError: A bad argument.
        TypeError: At setup, when ``pl_module.model`` is not a :class:`kantk.KAN`.
    """

    def __init__(self, every: int = 5, until: int = 50, grid_eps: float = 0.02):
        super().__init__()
        self.every = check_int("GridUpdateCallback every", every, 1)
        self.until = check_int("GridUpdateCallback until", until, 1)
        self.grid_eps = check_number("GridUpdateCallback grid_eps", grid_eps, 0, maximum=1)
        #: Steps at which the grids were updated (on this process).
        self.updated_at: list[int] = []
        self._largest = 0  # rows of the largest batch seen
        self._waiting = False  # a due update waits for a full batch
        self._restored = False  # load_state_dict ran: on_train_start keeps what it loaded

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, KAN):
            raise TypeError(
                "GridUpdateCallback updates the grids of pl_module.model, which must be a kantk.KAN; "
                f"{type(pl_module).__name__} has {type(model).__name__}"
            )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every=self.every, until=self.until, grid_eps=self.grid_eps)

    def state_dict(self) -> dict[str, Any]:
        return {"largest": self._largest, "waiting": self._waiting}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # a resumed run goes on as the uninterrupted one: after a reset, the first due update took
        # an epoch's 1-row tail for a full batch (Lightning restores callbacks before on_train_start)
        self._largest = int(state_dict.get("largest", 0))
        self._waiting = bool(state_dict.get("waiting", False))
        self._restored = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._restored:  # a callback reused for another run starts afresh
            self._largest, self._waiting = 0, False
        self._restored = False

    def due(self, step: int) -> bool:
        """Whether the grids are updated before training step ``step``."""
        return step < self.until and step % self.every == 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not (self.due(step) or (self._waiting and step < self.until)) or batch_idx % max(
            1, int(getattr(trainer, "accumulate_grad_batches", 1))
        ):
            return  # with gradient accumulation: once per optimizer step, before its first micro-batch
        model = pl_module.model
        assert isinstance(model, KAN)  # setup() refused anything else
        check_batch = getattr(pl_module, "check_batch", None)
        if check_batch is not None:  # shape errors before the model changes
            x, _ = check_batch(batch, "train")
        else:
            x = batch[0]
        x = gather_rows(x.detach(), trainer, pl_module)
        self._largest = max(self._largest, x.shape[0])
        self._waiting = x.shape[0] < self._largest
        if self._waiting:
            return
        with torch.no_grad():
            model.update_grid(x, grid_eps=self.grid_eps)
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


def _copy_state(module: torch.nn.Module, reuse: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s state, written into ``reuse`` (an older copy) when it still matches in
    names, shapes, dtypes and devices: no new memory per snapshot."""
    state = module.state_dict()
    if (
        reuse is not None
        and reuse.keys() == state.keys()
        and all(
            reuse[k].shape == v.shape and reuse[k].dtype == v.dtype and reuse[k].device == v.device
            for k, v in state.items()
        )
    ):
        with torch.no_grad():
            for k, v in state.items():
                reuse[k].copy_(v)
        return reuse
    return {k: v.detach().clone() for k, v in state.items()}


def _all_finite(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """One boolean tensor (on the tensors' device, no host sync): every value of every tensor is finite."""
    flags = [torch.isfinite(t).all() for t in tensors if isinstance(t, torch.Tensor)]
    if not flags:
        return None
    device = flags[0].device
    return torch.stack([f.to(device) for f in flags]).all()


class NaNGuard(pl.Callback):
    """Stop training when the loss or the parameters turn NaN or infinite, and put the model back at
    the last parameters whose loss was seen finite.

    It keeps two snapshots of the model's state (``pl_module.model`` when there is one, else the
    LightningModule), taken only at its checks, every ``every`` steps and after the last step:
    *confirmed* (its loss was seen finite) and *candidate* (the state at the last check, whose loss
    the next step computes). Between checks it only accumulates, on the device, whether every
    step's losses were finite: no host sync and no copy. At a check it reads that flag and whether
    the parameters are finite (one host sync) and then either

    - moves on (the candidate is confirmed, the current state becomes the candidate), or
    - restores the newest state whose loss was seen finite, sets ``trainer.should_stop`` and warns
      once, saying which step it went back to (steps after that state are lost; with ``every > 1``
      that can be up to ``every`` steps). If even the starting parameters gave a non-finite loss,
      there is nothing finite to go back to: the model is left at its starting parameters and the
      warning says so.

    When training ends with an exception (``KeyboardInterrupt`` included) in the middle of a step,
    and the candidate holds the state at the start of that step, the model goes back to it (an
    interrupted LBFGS step would otherwise leave a line-search trial point); otherwise non-finite
    parameters are handled as at a check. The loss read is ``pl_module.step_start_loss`` (the
    objective at the parameters the step started from; :class:`KANModule` has it), else the
    ``loss`` that ``training_step`` returned, else the values of ``pl_module.last_train_metrics``.

    Args:
        every: Steps between checks. ``None`` (default): every step on the CPU or under manual
            optimisation (LBFGS, whose step synchronises anyway), every 10 steps otherwise (a check
            is a host sync, which stalls an accelerator's queue).

    Raises:
        ValueError: ``every`` is not an int >= 1 or None.
    """

    def __init__(self, every: int | None = None):
        super().__init__()
        self.every = check_optional_int("NaNGuard every", every, 1)
        #: The step at which the guard restored parameters (``None``: it never did).
        self.restored_at: int | None = None
        #: The step whose parameters it went back to (``None``: none, or the starting parameters
        #: when the loss was never finite).
        self.restored_to: int | None = None
        self._restarted = False  # restart() since on_train_start: the model was restructured
        self._every = every or 1
        self._confirmed: tuple[int, dict[str, torch.Tensor]] | None = None
        self._candidate: tuple[int, dict[str, torch.Tensor]] | None = None
        self._window_ok: torch.Tensor | None = None  # every loss since the last check was finite
        self._first_ok: torch.Tensor | None = None  # the first step after the check: the candidate's loss
        self._window_steps = 0
        self._in_step = False

    @property
    def state_key(self) -> str:
        return f"NaNGuard{{'every': {self.every}}}"

    def state_dict(self) -> dict[str, Any]:
        return {"every": self.every, "restored_at": self.restored_at, "restored_to": self.restored_to}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored_at = state_dict.get("restored_at")
        self.restored_to = state_dict.get("restored_to")

    @staticmethod
    def _target(pl_module: pl.LightningModule) -> torch.nn.Module:
        model = getattr(pl_module, "model", None)
        return model if isinstance(model, torch.nn.Module) else pl_module

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every is None:
            cheap = pl_module.device.type == "cpu" or not pl_module.automatic_optimization
            self._every = 1 if cheap else 10
        else:
            self._every = self.every
        self._start(trainer, pl_module, restarted=False)

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, restarted: bool) -> None:
        """Snapshot the model as it is now, with no state confirmed yet."""
        self._confirmed = None
        self._restarted = restarted
        self._candidate = (trainer.global_step, _copy_state(self._target(pl_module), None))
        self._reset_window()

    def restart(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start over from the model as it is now, whose parameters no longer match the snapshots
        (``GridExtension`` refined its grids: a restore loaded coarse tensors into the refined
        model and failed with a size mismatch). A later failure goes back to this state at the
        latest."""
        if self._candidate is None:
            return  # not started (no on_train_start yet): it snapshots then
        in_step = self._in_step
        self._start(trainer, pl_module, restarted=True)
        self._in_step = in_step

    def _reset_window(self) -> None:
        self._window_ok = self._first_ok = None
        self._window_steps = 0
        self._in_step = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._in_step = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._in_step = False
        if self._candidate is None:  # not started through on_train_start (e.g. a bare hook call)
            return
        start = getattr(pl_module, "step_start_loss", None)
        if isinstance(start, (int, float)):
            start = torch.tensor(float(start))
        if start is None:
            returned = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            start = returned.detach() if isinstance(returned, torch.Tensor) else None
        # The start objective, when the module gives one, is what says whether the parameters the
        # step started from were good. The module's other metrics may come from elsewhere: LBFGS
        # records its last closure evaluation, often a line-search trial point whose loss can be
        # inf while the accepted step is fine (that made the old guard stop successful refits).
        losses = [start] if start is not None else list(getattr(pl_module, "last_train_metrics", {}).values())
        ok = _all_finite(losses)
        if self._window_steps == 0 and start is not None:
            self._first_ok = _all_finite([start])
        if ok is not None:
            self._window_ok = (
                ok if self._window_ok is None else self._window_ok & ok.to(self._window_ok.device)
            )
        self._window_steps += 1
        last = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if last or trainer.global_step % self._every == 0:
            self._check(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._window_steps:  # stopped between checks (another callback set should_stop)
            self._check(trainer, pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._candidate is None:
            return
        target = self._target(pl_module)
        if self._in_step and self._candidate[0] == trainer.global_step:
            # stopped inside a step: back to the state at its start (a completed step's parameters)
            target.load_state_dict(self._candidate[1])
            self._window_steps = 0
            return
        if self._window_steps or not self._params_finite(target):
            self._check(trainer, pl_module)

    @staticmethod
    def _params_finite(target: torch.nn.Module) -> bool:
        flag = _all_finite([p.detach() for p in target.parameters()])
        return flag is None or bool(flag)

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        target = self._target(pl_module)
        flags = [p.detach() for p in target.parameters()]
        params_ok = _all_finite(flags)
        ok = self._window_ok
        if params_ok is not None:
            ok = params_ok if ok is None else ok & params_ok.to(ok.device)
        first_ok = self._first_ok
        fine = ok is None or bool(ok)  # the one host sync of a check
        step = trainer.global_step
        assert self._candidate is not None
        if fine:
            # the candidate's loss was the first of the window: confirmed; the current state is next
            old = self._confirmed[1] if self._confirmed is not None else None
            if old is self._candidate[1]:  # shared after a restore: do not overwrite it
                old = None
            self._confirmed = self._candidate
            self._candidate = (step, _copy_state(target, old))
            self._reset_window()
            return
        if first_ok is None or bool(first_ok):
            self._confirmed = self._candidate
        self._reset_window()
        self.restored_at = step
        trainer.should_stop = True
        # a regulariser is named only when the data loss was finite: from NaN parameters every
        # penalty is NaN too, and the cause is elsewhere (a learning rate too large)
        penalties = getattr(pl_module, "last_penalties", None) or {}
        loss = (getattr(pl_module, "last_train_metrics", None) or {}).get("train_loss")
        loss_finite = isinstance(loss, torch.Tensor) and bool(torch.isfinite(loss).all())
        bad = [n for n, v in penalties.items() if loss_finite and not bool(torch.isfinite(v).all())]
        cause = (
            f"regulariser {', '.join(map(repr, bad))} returned a NaN or infinite penalty"
            if bad
            else "the loss or the parameters became NaN or infinite (e.g. a learning rate too large, "
            "or a symbolic edge evaluated outside its domain)"
        )
        if self._confirmed is None:  # back to the snapshot taken at the start (or restructuring)
            target.load_state_dict(self._candidate[1])
            self.restored_to = self._candidate[0] if self._restarted else None
            _warn_on_rank_zero(
                f"kantk: training stopped at step {step}: {cause}; the model is back at the "
                f"parameters of step {self._candidate[0]}, when it was last restructured (grid "
                "extension)"
                if self._restarted
                else f"kantk: training stopped at step {step}: the loss was not finite from the first step "
                f"(step {self._candidate[0] + 1}){': ' + cause if bad else ''}; parameters left as they "
                "were at the start"
            )
            return
        good_step, state = self._confirmed
        target.load_state_dict(state)
        self.restored_to = good_step
        where = "the starting parameters" if good_step == 0 else f"the parameters after step {good_step}"
        _warn_on_rank_zero(
            f"kantk: training stopped at step {step}: {cause}; the model is back at {where}, the last "
            "whose loss was finite"
        )
        self._candidate = self._confirmed


def _warn_on_rank_zero(message: str) -> None:
    """The warning once (the process of rank 0), at the user's line (:func:`warn_at_user`)."""
    if getattr(rank_zero_only, "rank", 0) == 0:
        warn_at_user(message)


class StepProgressBar(ProgressBar):
    """One tqdm bar over training steps (``max_steps``) with the latest metrics.

    Lightning's default bar counts batches per epoch, which in full-batch training means a bar of
    length one per step. This one appears only after ``delay`` seconds, so short runs stay quiet.

    Args:
        delay: Seconds before the bar is first shown.
        metrics: Logged metric names to show, in order (those not logged are left out).
        refresh: Seconds between updates of the metrics shown (reading them waits for the
            device); the step count moves every step.
    """

    def __init__(
        self,
        delay: float = 2.0,
        metrics: tuple[str, ...] = ("train_rmse", "val_rmse", "train_acc", "val_acc", "reg"),
        refresh: float = 0.5,
    ):
        super().__init__()
        self.delay = float(delay)
        self.refresh = float(refresh)
        self._shown_at = -math.inf
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
        now = time.monotonic()
        if now - self._shown_at >= self.refresh:  # reading the metrics is a host sync: not every step
            self._shown_at = now
            self._show(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None and not trainer.sanity_checking:
            self._show(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._show(trainer, pl_module)
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
