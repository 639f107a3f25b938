"""Lightning data modules over pykan-layout datasets: from a formula, from tensors, from a CSV file.

Full-batch mode (``batch_size=-1``, pykan's default and what LBFGS needs) hands the whole split
over as one batch without per-sample collation. Under DDP each process keeps every
``world_size``-th row (a disjoint shard), so the ranks together still see the whole split once per
step.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kantk.data import check_dataset, create_dataset, load_csv

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype(name: str | None) -> torch.dtype | None:
    if name is not None and name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid dtypes: {', '.join(DTYPES)}")
    return DTYPES[name] if name else None


class _WholeSplit(Dataset):
    """A dataset of one item: the whole split ``(inputs (N, in), labels (N, ...))``."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs, self.labels


class TensorDataModule(pl.LightningDataModule):
    """Serve a pykan-layout dataset dict to a Lightning ``Trainer``.

    Training batches are ``(inputs (B, n_in), labels (B, n_out) or (B,))``; the test split (when
    present) is used for validation and testing.

    Args:
        dataset: ``{"train_input", "train_label"[, "test_input", "test_label"]}`` tensors;
            checked (NaN/Inf, shapes) when the module is built.
        batch_size: Samples per training step; ``-1`` (or anything >= the number of samples) means
            full batch.
        shuffle: Reshuffle the training samples every epoch (mini-batch mode only).
        num_workers: DataLoader worker processes (mini-batch mode only; 0 is fastest for
            in-memory tensors).

    Raises:
        ValueError: The dataset has NaN/Inf values or inconsistent shapes, or batch_size is bad.
    """

    def __init__(
        self,
        dataset: Mapping[str, torch.Tensor],
        batch_size: int = -1,
        shuffle: bool = True,
        num_workers: int = 0,
    ):
        super().__init__()
        self._check_loader_args(batch_size, num_workers)
        self.dataset = check_dataset(dataset)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.num_workers = num_workers
        self._shards: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _check_loader_args(batch_size: int, num_workers: int) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or (batch_size < 1 and batch_size != -1):
            raise ValueError(f"batch_size must be a positive int or -1 (full batch), got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")

    @classmethod
    def from_tensors(
        cls,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        test_fraction: float = 0.2,
        seed: int = 0,
        **kwargs: Any,
    ) -> TensorDataModule:
        """Split ``inputs`` (N, n_in) and ``labels`` into train/test (see :func:`kantk.data.split_dataset`)."""
        from kantk.data import split_dataset

        return cls(split_dataset(inputs, labels, test_fraction, seed), **kwargs)

    # -- Lightning hooks ------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        if world > 1 and self._full_batch():
            # Full batch under DDP: each rank keeps a disjoint shard; gradients are averaged.
            self._shards = {k: v[rank::world] for k, v in self.dataset.items()}
        else:  # mini-batches are sharded by Lightning's DistributedSampler
            self._shards = dict(self.dataset)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader | list:
        if "test_input" not in self.dataset or self.dataset["test_input"].shape[0] == 0:
            return []  # no test split: Lightning skips validation
        return self._loader("test", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self.val_dataloader()

    # -- helpers --------------------------------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        """Number of input features."""
        return int(self.dataset["train_input"].shape[1])

    def _full_batch(self) -> bool:
        return self.batch_size == -1 or self.batch_size >= self.dataset["train_input"].shape[0]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self._shards is None:
            self.setup()
        assert self._shards is not None
        x, y = self._shards[f"{split}_input"], self._shards[f"{split}_label"]
        if self._full_batch() or (split == "test" and self.batch_size >= x.shape[0]):
            # batch_size=None: the single item is the batch, no per-sample collation
            return DataLoader(_WholeSplit(x, y), batch_size=None, shuffle=False)
        return DataLoader(
            TensorDataset(x, y),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


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
            f, n_vars, ranges, train_num, test_num, seed, normalize_input, normalize_label, task=task,
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
    ):
        dataset = load_csv(
            os.fspath(path), label_columns, delimiter=delimiter, test_fraction=test_fraction,
            seed=seed, classification=classification, dtype=_dtype(dtype),
        )
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
        self.save_hyperparameters()
