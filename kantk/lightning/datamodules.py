"""Lightning data modules over pykan-layout datasets: from a formula, from tensors, from a CSV file.

Splits: ``train`` trains, ``test`` validates and tests, and ``predict_dataloader`` yields inputs
only (no labels): those of an optional ``predict`` split (``predict_input`` in the dataset dict,
``predict_path`` of :class:`CSVDataModule`), else those of the test split, else (no test split)
those of the training split, in their stored order (never shuffled).

Full-batch mode (``batch_size=-1``, pykan's default and what LBFGS needs) hands the whole split
over as one batch without per-sample collation. Under DDP each process keeps every
``world_size``-th row (a disjoint shard), so the ranks together still see the whole split once per
step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from kantk._validation import check_choice, check_int, check_optional_int, is_int
from kantk.data import check_dataset, create_dataset, load_csv, split_dataset

#: The dtypes a ``dtype=`` argument names (data modules and ``KANModule``).
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else DTYPES[check_choice("dtype", name, DTYPES)]


class _WholeInputs(Dataset):
    """A dataset of one item: all inputs of a split (N, in), for ``predict`` in full-batch mode."""

    def __init__(self, inputs: torch.Tensor):
        self.inputs = inputs

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.inputs


class _Rows(Dataset):
    """The rows of one tensor (mini-batch ``predict``: batches of inputs, no labels)."""

    def __init__(self, inputs: torch.Tensor):
        self.inputs = inputs

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.inputs[index]


def _batch_of_rows(batch: Any) -> Any:
    """``collate_fn`` for :class:`_TensorRows`: its ``__getitems__`` already made the batch."""
    return batch


class _TensorRows(TensorDataset):
    """A ``TensorDataset`` that serves a whole mini-batch by indexing each tensor once
    (``__getitems__``) instead of collating ``batch_size`` single rows: the same batches in the same
    order, without a Python loop over the samples (which cost more than the model's step)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


class _WholeSplit(Dataset):
    """A dataset of one item: the whole split ``(inputs (N, in), labels (N, ...))``."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs, self.labels


class _OwnShard(DistributedSampler):
    """Every one of ``n`` items, in order: the process's own shard, which the data module cut
    itself (rows ``rank::world``). A ``DistributedSampler`` only so that Lightning leaves it in
    place: Lightning's own samplers pad the rows to equal counts (a padded row counted twice in
    ``val_loss``, which is summed over the whole split) or, for ``predict``, handed a one-item
    full batch to rank 0 only (an AssertionError on the others)."""

    def __init__(self, n: int):
        super().__init__(cast(Dataset, range(n)), num_replicas=1, rank=0, shuffle=False)
        self._n = n

    def __iter__(self) -> Any:
        return iter(range(self._n))

    def __len__(self) -> int:
        return self._n


class _ShuffleState:
    """What the shuffled training loaders of one fit share (a reload builds a new loader): the
    seed, the offset of the order's epochs to Lightning's, and the place a checkpoint restores."""

    def __init__(self) -> None:
        self.seed = int(torch.randint(0, 2**62, (1,)))  # seed_everything fixes it
        self.lightning_epoch = 0  # set_epoch's number for the epoch about to start
        self.offset = 0  # the order's epoch minus Lightning's
        self.epoch, self.start, self.counted = 0, 0, 0  # order's epoch, its first batch, Trainer's count then
        self.next: tuple[int, int] | None = None  # (epoch, batch) the next iteration starts at
        self.numbered = True  # set_epoch was called since a restore
        self.align: int | None = None  # a restored epoch waiting for set_epoch to give the offset


class _EpochShuffle(Sampler[int]):
    """A new order of ``n`` rows every epoch, drawn from a seed and the epoch alone, that a run
    resumed from a checkpoint continues: the same batches as the uninterrupted run, in order.

    A ``RandomSampler`` draws each epoch's order from torch's global generator, which checkpoints do
    not keep, so a resumed run shuffled differently from the run it continued (Adam mini-batches:
    0.008 apart one epoch later). The order's epoch is Lightning's (``set_epoch``) plus an offset
    that a restore sets: after a restart in mid-epoch Lightning numbers the epochs one higher than
    the run it continues, and a run stopped by ``max_steps`` on an epoch's last batch restarts
    that epoch and takes one more batch in it (the next epoch's first; its next epoch then goes on
    from the second). With worker processes the first iteration after a restore starts before
    Lightning numbers its epoch; the offset then waits for ``set_epoch``.

    Args:
        n: Rows.
        batch_size: Rows per batch.
        progress: The Trainer's count of batches done in its current epoch and its batches per
            epoch (``(0, batches in n rows)`` outside a Trainer).
        state: The state the data module's shuffled loaders share.
        shuffle: False keeps the rows' stored order every epoch (the place in it is resumed the
            same way).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        progress: Callable[[], tuple[int, int]],
        state: _ShuffleState,
        shuffle: bool = True,
    ):
        self._n, self._batch_size, self._progress, self._state = n, batch_size, progress, state
        self._shuffle = shuffle

    def set_epoch(self, epoch: int) -> None:
        st = self._state
        st.lightning_epoch, st.numbered = epoch, True
        if st.align is not None:
            st.offset, st.align = st.align - epoch, None

    def state_dict(self) -> dict[str, int]:
        st = self._state
        done, per_epoch = self._progress()
        batch = st.start + done - st.counted
        epoch, batch = (st.epoch + 1, 0) if batch >= per_epoch else (st.epoch, batch)
        return {"seed": st.seed, "epoch": epoch, "batches": batch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        values = [state.get(k) if isinstance(state, Mapping) else None for k in ("seed", "epoch", "batches")]
        if all(is_int(v) and 0 <= v < 2**62 for v in values):  # else (another kantk's state): start afresh
            st = self._state
            st.seed, epoch, batch = (int(v) for v in cast(list[int], values))
            st.next, st.numbered = (epoch, batch), False

    def __iter__(self) -> Any:
        st = self._state
        done, per_epoch = self._progress()
        if st.next is None:
            st.epoch, st.start = st.lightning_epoch + st.offset, 0
        else:
            (st.epoch, st.start), st.next = st.next, None
            if st.numbered:
                st.offset = st.epoch - st.lightning_epoch
            else:
                st.align = st.epoch
            takes = max(1, per_epoch - done)  # what Lightning takes before it ends this epoch
            if done and st.start + takes < per_epoch:
                st.next = (st.epoch, st.start + takes)  # its next epoch goes on with this order
        st.counted = done
        if self._shuffle:
            generator = torch.Generator().manual_seed((st.seed * 1_000_003 + st.epoch) % 2**63)
            rows = torch.randperm(self._n, generator=generator)
        else:  # the stored order, kept resumable: a resumed run repeated batches 0 and 1 and skipped 2, 3
            rows = torch.arange(self._n)
        return iter(rows[st.start * self._batch_size : per_epoch * self._batch_size].tolist())

    def __len__(self) -> int:
        return self._n


class _TrainLoader(DataLoader):
    """The training loader, whose place in the epoch Lightning saves in checkpoints and restores
    (the ``state_dict``/``load_state_dict`` interface of its resumable loaders). Only a
    mini-batch loader on one process, shuffled or not, has a place to keep
    (:class:`_EpochShuffle`); the others save nothing
    and ignore a checkpoint's, so a run saved with one setting resumes with another (more
    processes, no shuffle, full batch): Lightning refuses a checkpoint whose number of loader
    states differs from the number of resumable loaders."""

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        return sampler.state_dict() if isinstance(sampler, _EpochShuffle) else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        sampler = self.sampler
        if isinstance(sampler, _EpochShuffle):
            sampler.load_state_dict(state)


#: ``num_workers`` up to this many are taken on any machine (a config written for a larger one
#: runs on a laptop; PyTorch only warns above the cores).
MIN_MAX_WORKERS = 16


def max_workers() -> int:
    """The most DataLoader workers a data module starts: the CPU cores this process may run on
    (its affinity where the system tells it), at least :data:`MIN_MAX_WORKERS`."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(MIN_MAX_WORKERS, cores)


class TensorDataModule(pl.LightningDataModule):
    """Serve a pykan-layout dataset dict to a Lightning ``Trainer``.

    Training batches are ``(inputs (B, n_in), labels (B, n_out) or (B,))``; the test split (when
    present) is used for validation and testing. Prediction batches are inputs (B, n_in) only:
    the ``predict_input`` rows when given, else the test inputs, else the training inputs.

    Args:
        dataset: ``{"train_input", "train_label"[, "test_input", "test_label"][, "predict_input"]}``
            tensors; checked (NaN/Inf, shapes) when the module is built. ``predict_input``
            (M, n_in) needs no labels.
        batch_size: Samples per training step; ``-1`` (or anything >= the number of samples) means
            full batch.
        shuffle: Reshuffle the training samples every epoch (mini-batch mode only). Each epoch's
            order follows from the epoch and a seed drawn from torch's generator when training
            starts (``seed_everything`` fixes it); checkpoints keep the seed and the place in the
            epoch (without shuffling too), so a run resumed from one, at an epoch's end or in its
            middle, takes the batches the uninterrupted run takes. Under DDP Lightning's
            ``DistributedSampler`` shuffles (by the epoch too; a resume in mid-epoch starts that epoch over).
        num_workers: DataLoader worker processes (mini-batch mode only; 0 is fastest for
            in-memory tensors), at most the CPU cores this process may use or 16, whichever is more.
        val_rows: Validate on at most this many test rows: when the test split is larger, a fixed
            random subset of it (seed 0, the same rows at every validation, kept in their order);
            ``None`` (default): the whole split. ``test_dataloader`` always serves the whole split.
        check: False skips the dataset checks (for a dataset already checked, as ``kantk.fit``
            does before it builds this module).

    Raises:
        ValueError: The dataset has NaN/Inf values or inconsistent shapes, or batch_size is bad.
    """

    def __init__(
        self,
        dataset: Mapping[str, torch.Tensor],
        batch_size: int = -1,
        shuffle: bool = True,
        num_workers: int = 0,
        val_rows: int | None = None,
        check: bool = True,
    ):
        super().__init__()
        self._check_loader_args(batch_size, num_workers)
        self.val_rows = check_optional_int("val_rows", val_rows, 1)
        predict = dataset.get("predict_input") if isinstance(dataset, Mapping) else None
        #: The header names of the input columns (a :func:`kantk.load_csv` dataset's), or None;
        #: ``KANModule`` records them on the model it fits (``KAN.column_names``).
        self.input_names: list[str] | None = getattr(dataset, "input_names", None)
        self.dataset = check_dataset(dataset) if check else dict(dataset)
        if predict is not None:
            self.dataset["predict_input"] = self._check_predict_input(predict, self.dataset["train_input"])
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_workers = num_workers
        self._shards: dict[str, torch.Tensor] | None = None
        self._world, self._rank = 1, 0  # processes and this one's rank, from the Trainer at setup
        self._shuffle_state: _ShuffleState | None = None  # shared by the shuffled training loaders

    @staticmethod
    def _check_loader_args(batch_size: int, num_workers: int) -> None:
        if not is_int(batch_size) or (batch_size < 1 and batch_size != -1):
            raise ValueError(f"batch_size must be a positive int or -1 (full batch), got {batch_size!r}")
        check_int("num_workers", num_workers, 0)
        most = max_workers()
        if batch_size != -1 and num_workers > most:  # full batch: no workers are started
            # a config is input: num_workers 1000000 forked over 1,300 processes
            raise ValueError(
                f"num_workers must be at most {most} (the larger of {MIN_MAX_WORKERS} and the CPU cores "
                f"this process may use), got {num_workers}"
            )

    @staticmethod
    def _check_predict_input(inputs: Any, train_input: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(inputs).to(train_input.dtype)
        if x.dim() != 2 or x.shape[1] != train_input.shape[1]:
            raise ValueError(
                f"predict_input has shape {tuple(x.shape)}; expected (N, {train_input.shape[1]}) like "
                "train_input"
            )
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"predict_input has {bad} NaN or infinite values")
        return x

    @classmethod
    def from_tensors(
        cls,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        test_fraction: float = 0.2,
        seed: int = 0,
        **kwargs: Any,
    ) -> TensorDataModule:
        """Split ``inputs`` (N, n_in) and ``labels`` into train/test.

        See :func:`kantk.data.split_dataset`."""
        return cls(split_dataset(inputs, labels, test_fraction, seed), **kwargs)

    # -- Lightning hooks ------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if stage == "fit" or self._shuffle_state is None:
            self._shuffle_state = _ShuffleState()  # a fit's seed; a checkpoint's replaces it
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        self._world, self._rank = world, rank
        if world > 1:
            # Under DDP each rank keeps a disjoint shard of the evaluation and prediction rows (and
            # in full-batch mode of the training rows: gradients are averaged), served whole and
            # unpadded (_OwnShard); training mini-batches are sharded by Lightning's
            # DistributedSampler, which pads them so that every rank takes the same steps.
            # A split with fewer rows than processes is not cut: every rank takes all of it (the
            # summed metrics count each row once per rank, in their totals too: still exact).
            self._shards = {
                k: v
                if (k.startswith("train_") and not self._full_batch()) or len(v) < world
                else v[rank::world]
                for k, v in self.dataset.items()
            }
        else:
            self._shards = dict(self.dataset)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader | list:
        if "test_input" not in self.dataset or self.dataset["test_input"].shape[0] == 0:
            return []  # no test split: Lightning skips validation
        return self._loader("test", shuffle=False, max_rows=self.val_rows)

    def test_dataloader(self) -> DataLoader | list:
        if "test_input" not in self.dataset or self.dataset["test_input"].shape[0] == 0:
            return []
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Inputs (B, n_in) without labels, in order: the predict split, else test, else train."""
        if self._shards is None:
            self.setup()
        assert self._shards is not None
        x = self._shards[self.predict_split + "_input"]
        if self.batch_size == -1 or self.batch_size >= x.shape[0]:
            return DataLoader(_WholeInputs(x), batch_size=None, sampler=self._own_shard(1))
        return DataLoader(
            _Rows(x),
            batch_size=self.batch_size,
            sampler=self._own_shard(len(x)),
            num_workers=self.num_workers,
        )

    def _own_shard(self, n: int) -> _OwnShard | None:
        """Under DDP the sampler of a rank's own shard (:class:`_OwnShard`); else None."""
        return _OwnShard(n) if self._world > 1 else None

    # -- helpers --------------------------------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        """Number of input features."""
        return int(self.dataset["train_input"].shape[1])

    @property
    def predict_split(self) -> str:
        """The split ``predict_dataloader`` serves: ``"predict"``, ``"test"`` or ``"train"``."""
        if "predict_input" in self.dataset:
            return "predict"
        if "test_input" in self.dataset and self.dataset["test_input"].shape[0] > 0:
            return "test"
        return "train"

    def _full_batch(self) -> bool:
        return self.batch_size == -1 or self.batch_size >= self.dataset["train_input"].shape[0]

    def _loader(self, split: str, shuffle: bool, max_rows: int | None = None) -> DataLoader:
        if self._shards is None:
            self.setup()
        assert self._shards is not None
        x, y = self._shards[f"{split}_input"], self._shards[f"{split}_label"]
        whole = self.dataset[f"{split}_input"]
        if max_rows is not None and whole.shape[0] > max_rows:
            # the same rows as on one process: chosen from the whole split, then cut per rank
            rows = torch.randperm(whole.shape[0], generator=torch.Generator().manual_seed(0))[:max_rows]
            rows = rows.sort().values.to(whole.device)
            if self._world > 1 and len(rows) >= self._world:
                rows = rows[self._rank :: self._world]
            x, y = whole[rows], self.dataset[f"{split}_label"][rows]
        kind = _TrainLoader if split == "train" else DataLoader  # the training loader is resumable
        if self._full_batch() or (split == "test" and self.batch_size >= x.shape[0]):
            # batch_size=None: the single item is the batch, no per-sample collation
            return kind(_WholeSplit(x, y), batch_size=None, sampler=self._own_shard(1))
        sampler: Sampler[int] | None = self._own_shard(len(x)) if split != "train" else None
        if split == "train" and self._world == 1:  # resumable in mid-epoch, shuffled or not
            assert self._shuffle_state is not None  # made by setup
            sampler = _EpochShuffle(
                len(x), self.batch_size, self._training_progress, self._shuffle_state, shuffle=shuffle
            )
        # under DDP training mini-batches take Lightning's DistributedSampler (shuffle=True)
        return kind(
            _TensorRows(x, y),
            batch_size=self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_batch_of_rows,
        )

    def _training_progress(self) -> tuple[int, int]:
        """Training batches done in the Trainer's current epoch, and its batches per epoch."""
        batches = -(-self._shards["train_input"].shape[0] // self.batch_size) if self._shards else 0
        trainer = self.trainer
        if trainer is None or not isinstance(trainer.num_training_batches, int):
            return 0, batches
        progress: Any = trainer.fit_loop.epoch_loop.batch_progress.current  # a _ProcessedTracker
        done = int(progress.processed)
        return done, min(batches, trainer.num_training_batches)

    @property
    def hparams_initial(self) -> Any:
        """Lightning's, with a data module's ``dtype`` (the samples') logged as ``data_dtype``: a
        ``KANModule``'s ``dtype`` is the model's, and a logger refused the two different values of
        one key ("Error while merging hparams: the keys ['dtype'] ..."). Checkpoints keep the
        argument's own name (``datamodule_hyper_parameters``)."""
        initial = super().hparams_initial
        if "dtype" not in initial:
            return initial
        return type(initial)({("data_dtype" if k == "dtype" else k): v for k, v in initial.items()})


class FunctionDataModule(TensorDataModule):
    """Samples labelled by a formula (wraps :func:`kantk.create_dataset`); YAML-friendly.

    Args:
        f: Formula string in ``x1 .. x{n_vars}`` (sympy syntax, scipy.special names allowed), a
            list of them (one output each), or a callable (N, n_vars) -> (N,) or (N, n_out).
        n_vars: Number of input variables.
        ranges: ``[low, high]`` for every variable, or one pair per variable.
        train_num, test_num: Samples per split.
        seed: Seeds the sampling.
        normalize_input, normalize_label: Standardise with training statistics.
        task: ``"regression"`` or ``"classification"`` (class-index labels).
        dtype: ``"float32"`` or ``"float64"`` for the samples (default: torch's default dtype);
            a float64 model gets its full precision only from float64 data.
        batch_size, shuffle, num_workers: As in :class:`TensorDataModule`.
    """

    def __init__(
        self,
        f: str | list[str] | Callable[[torch.Tensor], torch.Tensor],
        n_vars: int,
        ranges: Sequence[float] | Sequence[Sequence[float]] = (-1.0, 1.0),
        train_num: int = 1000,
        test_num: int = 1000,
        seed: int = 0,
        normalize_input: bool = False,
        normalize_label: bool = False,
        task: str = "regression",
        dtype: str | None = None,
        batch_size: int = -1,
        shuffle: bool = True,
        num_workers: int = 0,
    ):
        dataset = create_dataset(
            f,
            n_vars,
            ranges,
            train_num,
            test_num,
            seed,
            normalize_input,
            normalize_label,
            task=task,
            dtype=_dtype(dtype),
        )
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
        if isinstance(f, str) or (isinstance(f, (list, tuple)) and all(isinstance(s, str) for s in f)):
            self.save_hyperparameters()
        else:  # a callable is not a hyperparameter
            self.save_hyperparameters(ignore=["f"])


class CSVDataModule(TensorDataModule):
    """A numeric CSV file split into train/test (wraps :func:`kantk.data.load_csv`); YAML-friendly.

    Args:
        path: The CSV file (an optional header row gives column names).
        label_columns: Index, name, or list of them, of the label columns; the rest are inputs.
        test_fraction: Share of rows held out for validation.
        seed: Seeds the split.
        classification: The label column holds class indices.
        delimiter: Field separator.
        dtype: ``"float32"`` or ``"float64"`` (default: torch's default dtype).
        batch_size, shuffle, num_workers: As in :class:`TensorDataModule`.
        predict_path: A CSV file of inputs only (one column per input, in the order of the
            training file's input columns; header optional) for ``predict_dataloader``; default:
            predict on the test split.
    """

    def __init__(
        self,
        path: str,
        label_columns: int | str | list[int | str] = -1,
        test_fraction: float = 0.2,
        seed: int = 0,
        classification: bool = False,
        delimiter: str = ",",
        dtype: str | None = None,
        batch_size: int = -1,
        shuffle: bool = True,
        num_workers: int = 0,
        predict_path: str | None = None,
    ):
        dataset = load_csv(
            os.fspath(path),
            label_columns,
            delimiter=delimiter,
            test_fraction=test_fraction,
            seed=seed,
            classification=classification,
            dtype=_dtype(dtype),
        )
        if predict_path is not None:
            dataset["predict_input"] = read_inputs(os.fspath(predict_path), delimiter)
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
        self.save_hyperparameters()


def read_inputs(path: str, delimiter: str = ",") -> torch.Tensor:
    """A CSV file of numbers (one optional header row) as a float64 tensor (rows, columns).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a numeric CSV file, or no rows.
    """
    from kantk.data import read_csv

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CSV file at {path!r}")
    # kantk's one CSV reader (a BOM, quotes, CRLF; errors name the line): np.loadtxt dropped the
    # first row of a file with a BOM and refused quoted fields
    return torch.from_numpy(read_csv(path, delimiter=delimiter).values)
