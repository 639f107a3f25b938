"""Datasets in pykan's dict layout: build them from formulas, arrays or CSV files, and check them.

A dataset is a dict of tensors::

    {"train_input": (N, n_in), "train_label": (N, n_out) or (N,),
     "test_input": (M, n_in), "test_label": (M, n_out) or (M,)}

Regression labels are floating (N, n_out); classification labels are integer class indices (N,).
Nothing here imports Lightning, so building data stays cheap.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
import re
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from kantk._pykan import CREATE_DATASET_NAMES, pykan_names
from kantk._validation import check_choice, check_int, check_seed, is_number
from kantk.formula_parser import (
    LAMBDIFY_ERRORS,
    FormulaError,
    bound_parameters,
    lambdify_namespace,
    parse_formula,
)
from kantk.model import MAX_COLUMN_NAME_LENGTH

TRAIN_KEYS = ("train_input", "train_label")
TEST_KEYS = ("test_input", "test_label")
DATASET_KEYS = TRAIN_KEYS + TEST_KEYS
TASKS = ("regression", "classification")

Formula = str | Sequence[str] | Callable[[torch.Tensor], torch.Tensor]
Ranges = Sequence[float] | Sequence[Sequence[float]]


#: Most input values (``n_vars * (train_num + test_num)``) :func:`create_dataset` draws: a config's
#: ``n_vars: 1000000000`` asked for terabytes and the process was killed.
MAX_DATASET_VALUES = 2**28


@pykan_names(CREATE_DATASET_NAMES)
def create_dataset(
    f: Formula,
    n_vars: int,
    ranges: Ranges = (-1.0, 1.0),
    train_num: int = 1000,
    test_num: int = 1000,
    seed: int = 0,
    normalize_input: bool = False,
    normalize_label: bool = False,
    *,
    task: str = "regression",
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Sample inputs uniformly and label them with a formula (pykan's ``create_dataset``).

    Args:
        f: A formula string in the variables ``x1 .. x{n_vars}``, e.g. ``"exp(sin(pi*x1) + x2**2)"``,
            read by :func:`kantk.parse_formula` (a whitelist: numbers, the variables, ``pi``, ``E``,
            arithmetic, bounded powers, known functions; it never runs code). Names of
            :mod:`scipy.special` functions work too (``"jv(0, 20*x1)"``, ``"ellipkm1(x1**2)"``); a
            list of strings gives one output column each. Or a callable taking inputs (N, n_vars)
            and returning (N,) or (N, n_out). For ``task="classification"`` the values are class
            indices (a comparison such as ``"x2 > sin(pi*x1)/2"`` gives classes 0 and 1).
        n_vars: Number of input variables.
        ranges: ``(low, high)`` for every variable, or one such pair per variable.
        train_num, test_num: Number of training and test samples (test may be 0).
        seed: Seeds the sampling (torch's global random state is left alone).
        normalize_input, normalize_label: Standardise with the training set's mean and std
            (applied to both splits; labels only for regression).
        task: ``"regression"`` (float labels (N, n_out)) or ``"classification"`` (int64 (N,)).
        dtype: Floating dtype of inputs and regression labels (default: torch's default dtype).
        device: Where the tensors live (default: CPU).

    Returns:
        ``{"train_input", "train_label", "test_input", "test_label"}``.

    Raises:
        ValueError: A bad argument, a formula that cannot be parsed, is not accepted or uses
            unknown names (a :class:`kantk.formula_parser.FormulaError`), or a formula that
            produces NaN, infinite or complex values on the sampled inputs.
    """
    n_vars = check_int("n_vars", n_vars, 1, integral=True)
    train_num = check_int("train_num", train_num, 1, integral=True)
    test_num = check_int("test_num", test_num, 0, integral=True)
    check_choice("task", task, TASKS)
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    evaluate = _compile(f, n_vars)  # formulas are checked before anything is allocated
    if n_vars * (train_num + test_num) > MAX_DATASET_VALUES:
        raise ValueError(
            f"n_vars * (train_num + test_num) = {n_vars * (train_num + test_num):,} input values, more than "
            f"create_dataset draws ({MAX_DATASET_VALUES:,}, 2 GB in float64); sample fewer, or build the "
            "tensors yourself"
        )
    bounds = _check_ranges(ranges, n_vars)

    gen = torch.Generator().manual_seed(check_seed("seed", seed))
    lo = torch.tensor([b[0] for b in bounds], dtype=dtype)
    width = torch.tensor([b[1] - b[0] for b in bounds], dtype=dtype)
    if not bool(torch.isfinite(lo).all() & torch.isfinite(width).all() & (width > 0).all()):
        raise ValueError(
            f"ranges {bounds} do not fit {dtype}: each low, high and high - low must be a finite "
            f"{dtype} number (within +-{torch.finfo(dtype).max:.3g}) and high > low in it"
        )
    x_train = torch.rand(train_num, n_vars, generator=gen, dtype=dtype) * width + lo  # (N, n_vars)
    x_test = torch.rand(test_num, n_vars, generator=gen, dtype=dtype) * width + lo  # (M, n_vars)
    y_train = _labels(evaluate(x_train), train_num, task, dtype, "train")
    y_test = _labels(evaluate(x_test), test_num, task, dtype, "test")

    if normalize_input:
        mean, std = x_train.mean(0, keepdim=True), _safe_std(x_train)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if normalize_label:
        if task == "classification":
            raise ValueError("normalize_label=True is only for regression; class labels are indices")
        mean, std = y_train.mean(0, keepdim=True), _safe_std(y_train)
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std

    data = {"train_input": x_train, "train_label": y_train, "test_input": x_test, "test_label": y_test}
    return {k: v.to(device) for k, v in data.items()} if device is not None else data


def split_dataset(
    inputs: Any,
    labels: Any,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Shuffle the user's own arrays and split them into pykan's dict layout.

    Args:
        inputs: (N, n_in) array-like (tensor, numpy array, nested lists).
        labels: (N, n_out) floats, (N,) floats (become (N, 1)), or (N,) integer class indices.
        test_fraction: Share of rows held out for testing, in [0, 1).
        seed: Seeds the shuffle.
        dtype: Floating dtype for inputs and float labels (default: torch's default dtype).

    Returns:
        The four-tensor dict, checked by :func:`check_dataset`.
    """
    if not (is_number(test_fraction) and 0 <= test_fraction < 1):
        raise ValueError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    dtype = dtype or torch.get_default_dtype()
    x = _as_tensor(inputs, "inputs", dtype)
    y = _as_tensor(labels, "labels", dtype)
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if y.dim() == 1 and y.dtype.is_floating_point:
        y = y.unsqueeze(-1)  # (N,) float targets -> (N, 1), the shape a KAN outputs
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"inputs have {x.shape[0]} rows but labels have {y.shape[0]}")
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(check_seed("seed", seed)))
    n_test = round(n * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    if train.numel() == 0:
        raise ValueError(f"no training rows left: {n} rows with test_fraction={test_fraction}")
    data = {"train_input": x[train], "train_label": y[train], "test_input": x[test], "test_label": y[test]}
    return check_dataset(data)


class CsvTable(NamedTuple):
    """A numeric CSV file as read by :func:`read_csv`.

    Attributes:
        values: (rows, columns) float64 array, every value finite.
        names: The header row's names (stripped), or ``None`` when the file has no header.
        path: The file it was read from.
    """

    values: np.ndarray
    names: list[str] | None
    path: str

    def variable_names(self, columns: Sequence[int]) -> list[str] | None:
        """The header names of ``columns`` when they can name variables, else ``None``.

        Names must be non-empty, at most :data:`MAX_NAME_LENGTH` printable characters, and
        different from each other; otherwise the default names (``x1``, ``x2``, ...) apply.
        """
        if self.names is None:
            return None
        chosen = [self.names[c] for c in columns]
        usable = all(0 < len(n) <= MAX_NAME_LENGTH and n.isprintable() for n in chosen)
        return chosen if usable and len(set(chosen)) == len(chosen) else None


class CsvDataset(dict[str, Any]):
    """The dict :func:`load_csv` returns, with the header names of its columns.

    Attributes:
        input_names: Header names of the input columns (``None`` without a usable header).
        label_names: Header names of the label columns (``None`` without a usable header).
    """

    input_names: list[str] | None = None
    label_names: list[str] | None = None


#: Longest header name used as a variable name (longer ones fall back to x1, x2, ...).
MAX_NAME_LENGTH = MAX_COLUMN_NAME_LENGTH


def read_csv(path: str | os.PathLike[str], *, delimiter: str = ",") -> CsvTable:
    """Read a numeric CSV file, with or without one header row: the one CSV reader of kantk.

    :func:`load_csv`, the ``kantk`` commands' ``--data`` and :class:`kantk.lightning.CSVDataModule`
    all read files with it. A first row without any number is the header (a first row that
    mixes numbers with text or empty cells is data with a bad cell, not a header: ``0.1,`` or
    ``0.3,x``; so is one of NaN and infinities only, ``nan,inf``); every other non-blank row must
    hold as many numbers as the first row. Text only: the file is never evaluated. Rows are
    converted as they are read, so memory grows with the numbers (8 bytes each; a 60 MB file of
    a million rows took 48 MB, 438 MB before). A number is ASCII decimal or scientific notation
    (``1_000`` and other scripts' digits are not).

    Args:
        path: The file.
        delimiter: Field separator (one character, not a quote or a newline).

    Returns:
        A :class:`CsvTable` (values, header names or None, path).

    Raises:
        FileNotFoundError: No such file.
        ValueError: A file that is not numeric text CSV (binary, not UTF-8, non-numeric cells, NaN
            or infinite values, rows of different lengths, no rows, a header but no data rows), or
            not a regular file (a folder; a FIFO, a pipe or a device such as ``/dev/stdin``, whose
            reading blocked); the one-line message names the file, and the line and column when
            one is at fault.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no CSV file at {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a CSV file")
    if not os.path.isfile(path):  # a FIFO or a device: open() blocked (a config's data path)
        raise ValueError(f"{path!r} is not a regular file (a CSV file is needed)")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(f"delimiter must be one character (not a quote or a newline), got {delimiter!r}")
    header: list[str] | None = None
    values = array("d")  # the numbers, row after row: memory grows with the file's numbers only
    n_cols = 0
    n_rows = 0
    for line, row in _read_rows(path, delimiter):  # (first line number, cells)
        if n_rows == 0 and header is None and not n_cols and _is_header(row):
            header = [c.strip() for c in row]
            n_cols = len(header)
            continue
        if not n_cols:
            n_cols = len(row)
        if len(row) != n_cols:
            first = "the header" if header is not None else "the first row"
            raise ValueError(f"{path!r} line {line} has {len(row)} fields but {first} has {n_cols}")
        for c, cell in enumerate(row):
            values.append(_cell_value(cell, path, line, c, delimiter))
        n_rows += 1
    if header is None and not n_rows:
        raise ValueError(f"{path!r} holds no rows")
    if not n_rows:
        names = _one_line(", ".join(header or []))
        hint = next((h for h in (_separator_hint(c, delimiter) for c in header or []) if h), "")
        raise ValueError(f"{path!r} has a header row ({names}) but no data rows{hint}")
    table = np.frombuffer(values, dtype=np.float64).reshape(n_rows, n_cols).copy()
    return CsvTable(table, header, path)


def load_csv(
    path: str | os.PathLike[str],
    label_columns: int | str | Sequence[int | str] = -1,
    *,
    delimiter: str = ",",
    test_fraction: float = 0.2,
    seed: int = 0,
    classification: bool = False,
    dtype: torch.dtype | None = None,
) -> CsvDataset:
    """Read a numeric CSV file (with or without a header row) into pykan's dict layout.

    The file is read by :func:`read_csv`. With a header, the returned dict's ``input_names`` and
    ``label_names`` hold the names of the columns (for ``var_names`` of
    :func:`kantk.symbolic_formula`, :func:`kantk.plot_activations`, ...).

    Args:
        path: The file.
        label_columns: Column index, header name, or a list of them, holding the labels; every
            other column is an input.
        delimiter: Field separator.
        test_fraction, seed: As in :func:`split_dataset`.
        classification: The (single) label column holds class indices; labels become int64 (N,).
        dtype: Floating dtype of the tensors (default: torch's default dtype).

    Returns:
        The four-tensor dict (a :class:`CsvDataset`, with ``input_names`` and ``label_names``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: A file that is not numeric text CSV (see :func:`read_csv`), or bad
            ``label_columns`` (not an int, a name or a list of them; ``True``; unknown, ambiguous or
            repeated columns; no input column left). Every message names the file and says what is
            wrong.
    """
    path = os.fspath(path)
    wanted = _label_spec(label_columns)
    csv_table = read_csv(path, delimiter=delimiter)
    table, header = csv_table.values, csv_table.names
    n_cols = table.shape[1]
    label_idx = [_column_index(c, header, n_cols, path) for c in wanted]
    repeated = sorted({i for i in label_idx if label_idx.count(i) > 1})
    if repeated:
        raise ValueError(
            f"{path!r}: label_columns {wanted!r} name column {repeated[0]} more than once; give each column "
            "once"
        )
    input_idx = [i for i in range(n_cols) if i not in label_idx]
    if not input_idx:
        raise ValueError(
            f"{path!r}: need at least one input and one label column, got labels {wanted!r} of {n_cols} "
            "columns"
        )
    labels: Any = table[:, label_idx]
    if classification:
        if len(label_idx) != 1:
            raise ValueError("classification needs exactly one label column of class indices")
        labels = _class_indices(labels[:, 0], f"{path!r} label column")
    data = CsvDataset(split_dataset(table[:, input_idx], labels, test_fraction, seed, dtype=dtype))
    data.input_names = csv_table.variable_names(input_idx)
    data.label_names = csv_table.variable_names(label_idx)
    return data


def check_dataset(
    data: Mapping[str, Any],
    *,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
    classification: bool | None = None,
    width_hint: Callable[[int], str] | None = None,
) -> dict[str, torch.Tensor]:
    """Validate a dataset before any training touches the model.

    Args:
        data: ``train_input`` and ``train_label`` (required), ``test_input`` and ``test_label``
            (both or neither). Array-likes are converted to tensors.
        n_inputs: The model's input width; checked against the inputs when given.
        n_outputs: The model's output width; regression labels must be (N, n_outputs),
            class indices must lie in [0, n_outputs).
        classification: Labels are class indices (``None``: inferred from their dtype).
        width_hint: Given the inputs' column count when it is not ``n_inputs``, text that ends the
            error (:func:`kantk.model.select_inputs_hint`: a model pruned to some columns).

    Returns:
        A new dict holding the tensors (the caller's dict is not changed).

    Other keys are ignored, except a near miss of an absent key (``test_inputs`` without
    ``test_input``), which is refused.

    Raises:
        ValueError: Missing keys, a misspelt key, NaN or infinite values (naming the tensor and
            the count), or inconsistent shapes.
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            f"a dataset must be a dict with keys {', '.join(DATASET_KEYS)} (test keys optional), "
            f"got {type(data).__name__}"
        )
    known = (*DATASET_KEYS, "predict_input")
    for key in data:  # a near miss of an absent key was ignored: "test_inputs" dropped the test split
        near = difflib.get_close_matches(str(key), [k for k in known if k not in data], n=1, cutoff=0.88)
        if key not in known and near:
            raise ValueError(
                f"dataset key {key!r} is not one kantk reads; did you mean {near[0]!r}? expected keys "
                f"{', '.join(DATASET_KEYS)} (test keys optional)"
            )
    missing = [k for k in TRAIN_KEYS if k not in data]
    if missing:
        raise ValueError(
            f"dataset is missing {', '.join(missing)}; expected keys {', '.join(DATASET_KEYS)} "
            f"(test keys optional), got {', '.join(map(str, data)) or 'none'}"
        )
    has_test = [k in data and data[k] is not None for k in TEST_KEYS]
    if any(has_test) and not all(has_test):
        raise ValueError("give both test_input and test_label, or neither")
    keys = DATASET_KEYS if all(has_test) else TRAIN_KEYS
    out = {k: _as_tensor(data[k], k, None) for k in keys}

    for k, t in out.items():
        if t.dtype.is_floating_point or t.dtype.is_complex:
            if bool(torch.isfinite(t.sum())):  # fast pass: any NaN/inf makes the sum NaN/inf
                continue  # (a finite sum that overflows only falls through to the exact count)
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                n_nan = int(torch.isnan(t).sum())
                n_inf = int(bad.sum()) - n_nan
                raise ValueError(
                    f"{k} contains {n_nan} NaN and {n_inf} infinite value(s) out of {t.numel()}; "
                    "remove or fix those rows before training"
                )

    for split in ("train", "test"):
        if f"{split}_input" not in out:
            continue
        x, y = out[f"{split}_input"], out[f"{split}_label"]
        if x.dim() != 2:
            raise ValueError(f"{split}_input must be 2-D (samples, features), got shape {tuple(x.shape)}")
        if not x.dtype.is_floating_point:
            raise ValueError(f"{split}_input must be floating point, got {x.dtype}")
        if y.dim() not in (1, 2):
            raise ValueError(f"{split}_label must be (samples, outputs) or (samples,), got {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{split}_input has {x.shape[0]} samples but {split}_label has {y.shape[0]}; "
                "they must have the same number of rows"
            )
    if "test_input" in out:
        if out["test_input"].shape[1] != out["train_input"].shape[1]:
            raise ValueError(
                f"train_input has {out['train_input'].shape[1]} features but test_input has "
                f"{out['test_input'].shape[1]}"
            )
        if out["test_label"].shape[1:] != out["train_label"].shape[1:]:
            raise ValueError(
                f"train_label has shape {tuple(out['train_label'].shape)} but test_label has "
                f"{tuple(out['test_label'].shape)}; the label shapes must agree"
            )
    if out["train_input"].shape[0] == 0:
        raise ValueError("train_input holds no samples")

    if n_inputs is not None and out["train_input"].shape[1] != n_inputs:
        raise ValueError(
            f"train_input has {out['train_input'].shape[1]} features but the model expects "
            f"{n_inputs} (its widths[0])" + (width_hint(out["train_input"].shape[1]) if width_hint else "")
        )
    if classification is None:
        classification = not out["train_label"].dtype.is_floating_point
    for split in ("train", "test"):
        if f"{split}_label" in out:
            out[f"{split}_label"] = check_labels(
                out[f"{split}_label"], n_outputs, classification, f"{split}_label"
            )
    return out


def check_labels(
    y: torch.Tensor, n_outputs: int | None, classification: bool, name: str = "labels"
) -> torch.Tensor:
    """Check (and for classes, normalise to int64 (N,)) one label tensor against the model.

    Args:
        y: (N, n_out) regression targets, or (N,) / (N, 1) class indices.
        n_outputs: The model's output width, or None to skip the width check.
        classification: Whether ``y`` holds class indices.
        name: Used in messages.

    Returns:
        ``y`` (regression) or ``y`` as int64 (N,) (classification).
    """
    if classification:
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dim() != 1:
            raise ValueError(
                f"{name}: class labels must be (samples,) class indices, got shape {tuple(y.shape)}"
            )
        y = _class_indices(y, name)
        if n_outputs is not None and y.numel() and int(y.max()) >= n_outputs:
            raise ValueError(
                f"{name} holds class {int(y.max())} but the model has {n_outputs} outputs "
                f"(classes 0..{n_outputs - 1}); widen the last layer to the number of classes"
            )
        return y
    if not y.dtype.is_floating_point:
        raise ValueError(
            f"{name} holds integers ({y.dtype}); for regression pass float labels, for classes use "
            "loss='cross_entropy'"
        )
    if n_outputs is not None and (y.dim() != 2 or y.shape[1] != n_outputs):
        hint = " (reshape with y.unsqueeze(-1))" if y.dim() == 1 and n_outputs == 1 else ""
        raise ValueError(
            f"{name} has shape {tuple(y.shape)} but the model outputs (samples, {n_outputs}){hint}"
        )
    return y


# ----------------------------------------------------------------------------- formulas


def _compile(f: Formula, n_vars: int) -> Callable[[torch.Tensor], Any]:
    """A function (N, n_vars) tensor -> values (tensor or array, (N,) or (N, k))."""
    if callable(f) and not isinstance(f, str):
        return f
    if isinstance(f, str):
        formulas = [f]
    elif isinstance(f, Sequence) and f and all(isinstance(s, str) for s in f):
        formulas = list(f)
    else:
        raise TypeError(f"f must be a formula string, a list of them, or a callable; got {_short_repr(f)}")
    funcs = [_lambdify(s, n_vars) for s in formulas]

    def evaluate(x: torch.Tensor) -> np.ndarray:
        cols = x.detach().cpu().to(torch.float64).numpy().T  # n_vars arrays of (N,)
        outs = []
        for formula, (fn, used) in zip(formulas, funcs):
            try:
                with np.errstate(all="ignore"):  # NaN/Inf are reported below with the formula
                    value = np.asarray(fn(*(cols[k] for k in used)))
            except (ArithmeticError, ValueError, TypeError, NameError, AttributeError, IndexError) as exc:
                raise ValueError(
                    f"cannot evaluate formula {_short_repr(formula)}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            if np.iscomplexobj(value):
                if np.any(value.imag != 0):
                    raise ValueError(
                        f"formula {_short_repr(formula)} gives complex values on the sampled inputs; "
                        "narrow the ranges or change the formula"
                    )
                value = value.real
            outs.append(np.broadcast_to(value, (x.shape[0],)).astype(np.float64))
        return np.stack(outs, axis=-1)  # (N, n_formulas)

    return evaluate


def _lambdify(formula: str, n_vars: int) -> tuple[Callable[..., Any], list[int]]:
    """A numpy function of the variables ``formula`` uses, and their column indices."""
    import sympy

    expr = parse_formula(formula, n_vars)
    used = sorted(expr.free_symbols, key=lambda s: int(s.name[1:]))  # only x1..x{n_vars} can be free
    # "scipy" lets sympy's own names (besselj, erf, gamma, ...) evaluate through scipy.special;
    # bound_parameters makes it refuse sample values whose evaluation takes unbounded time (yv(1e9, x))
    try:
        fn = bound_parameters(
            sympy.lambdify(used, expr, modules=[lambdify_namespace(expr), "scipy", "numpy"])
        )
    except LAMBDIFY_ERRORS as exc:
        # e.g. 1/0 parses to complex infinity; printing evaluates constant terms (erfc(1e300) overflows)
        raise FormulaError(
            f"cannot evaluate formula {_short_repr(formula)}: {type(exc).__name__}: "
            f"{_one_line(str(exc).splitlines()[0] if str(exc) else '')}; the formula must be real and finite"
        ) from None
    return fn, [int(s.name[1:]) - 1 for s in used]


def _one_line(text: str, limit: int = 80) -> str:
    """``text`` for a one-line message: control characters escaped (a quoted CSV cell may hold a
    newline), at most ``limit`` characters."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value: Any, limit: int = 60) -> str:
    return _one_line(repr(value), limit)


def _labels(values: Any, n: int, task: str, dtype: torch.dtype, split: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values))
    if y.dim() == 1:
        y = y.unsqueeze(-1)
    if y.dim() != 2 or y.shape[0] != n:
        raise ValueError(f"f must return (N,) or (N, n_out) for N={n} inputs, got shape {tuple(y.shape)}")
    if y.dtype == torch.bool:
        y = y.to(torch.int64)
    if y.dtype.is_floating_point:
        bad = ~torch.isfinite(y)
        beyond = ""
        if not bool(bad.any()) and task != "classification":  # also in the labels' dtype
            bad = ~torch.isfinite(y.to(dtype))
            beyond = f" in {dtype} (past +-{torch.finfo(dtype).max:.3g})"
        if bool(bad.any()):
            raise ValueError(
                f"f produced {int(bad.sum())} NaN or infinite value(s){beyond} on the {split} inputs; "
                "narrow the ranges or change the formula"
            )
    if task == "classification":
        if y.shape[1] != 1:
            raise ValueError(f"classification needs one column of class indices, got {y.shape[1]}")
        return _class_indices(y[:, 0], f"{split} labels")
    return y.to(dtype)


#: The largest class index a label may be (a model has one output per class).
MAX_CLASSES = 1_000_000


def _class_indices(y: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(y)
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    if t.dtype.is_floating_point and not (bool(torch.isfinite(t).all()) and bool((t == t.round()).all())):
        raise ValueError(f"{name}: class labels must be whole numbers")
    largest = float(t.abs().max()) if t.numel() and t.dtype.is_floating_point else 0.0
    if largest > MAX_CLASSES:  # before the cast to int64, which overflows past 2**63
        raise ValueError(
            f"{name}: class labels must be whole numbers from 0 to {MAX_CLASSES}, got {largest:g}"
        )
    t = t.to(torch.int64)
    if t.numel() and int(t.max()) > MAX_CLASSES:
        raise ValueError(
            f"{name}: class labels must be whole numbers from 0 to {MAX_CLASSES}, got {int(t.max())}"
        )
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name}: class labels must be >= 0, got {int(t.min())}")
    return t


# ----------------------------------------------------------------------------- helpers


def _as_tensor(value: Any, name: str, dtype: torch.dtype | None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a tensor or array-like, got {type(value).__name__}: {exc}"
            ) from None
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    if dtype is not None and t.dtype.is_floating_point:
        t = t.to(dtype)
    return t


def _check_ranges(ranges: Ranges, n_vars: int) -> list[tuple[float, float]]:
    def pair(r: Any) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise ValueError(f"each range must be (low, high), got {r!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"each range must be finite with low < high, got {r!r}")
        return lo, hi

    if isinstance(ranges, (np.ndarray, torch.Tensor)):  # an array of pairs, as a list
        ranges = ranges.tolist()
    if isinstance(ranges, (str, bytes)) or not isinstance(ranges, Sequence) or len(ranges) == 0:
        raise ValueError(f"ranges must be (low, high) or one pair per variable, got {_short_repr(ranges)}")
    if all(isinstance(v, (int, float, np.number)) for v in ranges):
        return [pair(ranges)] * n_vars
    if len(ranges) != n_vars:
        raise ValueError(f"ranges has {len(ranges)} pairs but n_vars={n_vars}")
    return [pair(r) for r in ranges]


def _safe_std(t: torch.Tensor) -> torch.Tensor:
    std = t.std(0, keepdim=True)
    return torch.where(std > 0, std, torch.ones_like(std))


#: A number as a CSV cell may spell it: ASCII decimal or scientific notation, spaces around
#: (Python's float() also took "1_000" and other scripts' digits, "١٢").
# one way to match each number (the digits either side of an optional point never compete: the
# old "[0-9]+\.?[0-9]*" tried every split of a long run of digits, and a 20 KB cell took 29 s)
_NUMBER = re.compile(r"\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", re.ASCII)
_NON_FINITE = re.compile(r"\s*[+-]?(nan|inf|infinity)\s*", re.IGNORECASE)


def _number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell) is not None


def _is_header(row: Sequence[str]) -> bool:
    """Whether a first row is a header: no number in it, and not only NaN and infinities (a row
    ``nan,nan,nan`` is data to refuse: it was taken for a header and silently lost; ``nan,x,y``
    names columns)."""
    return not any(_number(cell) for cell in row) and not all(_NON_FINITE.fullmatch(cell) for cell in row)


_SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "bars", " ": "spaces"}


def _separator_hint(cell: str, delimiter: str = ",") -> str:
    """A word on the separator when ``cell`` looks like a row of another one (``0.1;0.2``)."""
    for sep, name in _SEPARATORS.items():
        if sep != delimiter and sep in cell and all(_number(part) for part in cell.split(sep)):
            wanted = _SEPARATORS.get(delimiter, repr(delimiter))
            return f" (fields are separated by {wanted}; this one holds {name})"
    return ""


def _cell_value(cell: str, path: str, line: int, column: int, delimiter: str = ",") -> float:
    """The number a data cell spells (finite), else a one-line error naming line and column."""
    if _NON_FINITE.fullmatch(cell):
        raise ValueError(
            f"{path!r} holds NaN or infinite values: line {line}, column {column + 1} is {_short_repr(cell)}"
        )
    value = float(cell) if _NUMBER.fullmatch(cell) else None
    if value is None:
        raise ValueError(
            f"{path!r} must hold numbers only (besides one header row): line {line}, column {column + 1} "
            f"is {_short_repr(cell)}{_separator_hint(cell, delimiter)}"
        )
    if not math.isfinite(value):  # 1e999
        raise ValueError(
            f"{path!r} holds NaN or infinite values: line {line}, column {column + 1} is {_short_repr(cell)}"
        )
    return value


def _label_spec(label_columns: Any) -> list[int | str]:
    """``label_columns`` as a non-empty list of column indices (int) and header names (str)."""

    def column(c: Any) -> bool:
        return isinstance(c, str) or (
            isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_))
        )

    if column(label_columns):
        items = [label_columns]
    elif isinstance(label_columns, (list, tuple)) and label_columns and all(column(c) for c in label_columns):
        items = list(label_columns)
    else:
        raise ValueError(
            "label_columns must be a column index (int), a header name (str) or a non-empty list of them, "
            f"got {_short_repr(label_columns)}"
        )
    return [c if isinstance(c, str) else int(c) for c in items]


def _read_rows(path: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """The non-blank rows of a text CSV file, one at a time, each with the line it starts on;
    clear errors for other files."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if b"\x00" in head:
        raise ValueError(
            f"{path!r} looks like a binary file (it holds NUL bytes); kantk reads numeric text CSV"
        )
    line = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                line = start
                if row and any(c.strip() for c in row):
                    yield start, row
    except UnicodeDecodeError:
        where, byte = _first_bad_utf8(path)
        raise ValueError(
            f"{path!r} is not UTF-8 text (byte {byte:#04x} at {where}); kantk reads numeric text CSV"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{path!r} cannot be read as CSV at line {line + 1}: {exc}") from None


def _first_bad_utf8(path: str) -> tuple[str, int]:
    """Where the first byte that is not UTF-8 is (``"line L, byte B of the file"``) and its value."""
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number}, byte {offset + exc.start} of the file", raw[exc.start]
            offset += len(raw)
    return "an unknown place", 0


def _column_index(col: int | str, header: list[str] | None, n_cols: int, path: str) -> int:
    if isinstance(col, str):
        if header is None or col not in header:
            raise ValueError(
                f"{path!r} has no column named {col!r}; "
                + (
                    f"columns: {_one_line(', '.join(header))}"
                    if header
                    else "the file has no header row: use indices"
                )
            )
        if header.count(col) > 1:
            raise ValueError(
                f"{path!r} has {header.count(col)} columns named {col!r}; select the label column by index"
            )
        return header.index(col)
    if not -n_cols <= col < n_cols:
        raise ValueError(
            f"label column {col!r} out of range for {n_cols} columns in {path!r} (indices "
            f"{-n_cols}..{n_cols - 1})"
        )
    return col % n_cols
