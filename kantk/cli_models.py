"""The ``kantk`` subcommands working on a saved model: predict, prune, symbolic, export, plot (and discover).

Each reads a model (a ``.kantk`` file from :func:`kantk.save`, or a Lightning ``.ckpt`` of a
:class:`kantk.lightning.KANModule`), takes samples to score it on (a CSV file, a formula, or
uniform samples over a range), and writes only the path given with ``-o``.

Every command checks all of its inputs before the work starts (numbers in range and finite, input
files readable regular files, the output a writable path that is not one of the inputs) and ends
bad input with ``SystemExit("kantk: <what went wrong>")``: one line on stderr, exit status 1.
Outputs are written atomically (a temporary file beside the output, then :func:`os.replace`), so
an existing file is either left as it was or replaced by a complete new one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import kantk
from kantk._validation import check_bounded, check_distinct
from kantk.export import EXPORT_FORMATS, atomic_path

if TYPE_CHECKING:
    import torch

    from kantk.model import KAN

# Nothing here imports torch at module level: ``kantk --help`` and every ``kantk COMMAND --help``
# build their parsers from this module without loading torch (see docs/cli.md).

#: Largest ``--samples``: enough to score any model, small enough not to exhaust memory.
MAX_SAMPLES = 1_000_000
#: Most (sample, edge) values one layer's scores may hold: 2**27, 1 GB in float64 (a 165 KB model
#: [100, 100, 1] with --samples 1000000 asked for 117 GB before any check).
MAX_SCORE_VALUES = 2**27
#: Most live edges a drawn diagram (svg, png, pdf) or plot may have: Graphviz took 181 s on 79,000,
#: and no diagram of 10,000 edges can be read; json and dot have no bound.
MAX_DRAWN_EDGES = 10_000
#: Most live numeric edges ``kantk symbolic`` fits (each against every library function, about
#: 0.1-1 s per edge on 2 cores): more is a model to prune first.
MAX_SYMBOLIC_EDGES = 1_000
#: Most pixels of a ``kantk plot`` figure (2**27, a 0.5 GB image buffer): the figure grows with the
#: model (up to 40 in wide, 1.8 in per layer) and ``--dpi`` squares it.
MAX_PLOT_PIXELS = 2**27
#: Formats whose plot is drawn as vectors: ``--dpi`` allocates no image buffer there.
VECTOR_FORMATS = ("svg", "svgz", "pdf")
#: Most live edges ``--edge-plots`` draws a picture for (40 ms each: 2,550 edges took 109 s).
MAX_PICTURED_EDGES = 1_000
#: Seeds accepted by ``--seed`` (torch, numpy and Python all take this range).
MAX_SEED = 2**63 - 1
#: Largest absolute value of ``--range`` bounds.
MAX_RANGE = 1e12
#: Longest ``--option`` or ``--var-names`` entry.
MAX_ARG_LENGTH = 10_000
#: Keyword arguments of :func:`kantk.prune` that ``--option`` must not override.
RESERVED_OPTIONS = ("model", "x", "pruner", "prune_inputs", "registry")
#: Symbolic r^2 threshold range (an r^2 above 1 is impossible; below 0 is worse than a constant).
R2_RANGE = (0.0, 1.0)


# --- errors and argument types -------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    """End the command with ``kantk: <message>`` (one line) and exit status 1."""
    raise SystemExit("kantk: " + one_line(message))


def usage_exit(command: str | None, message: str) -> NoReturn:
    """End the command for a bad argument: ``kantk: <command>: <message> (see 'kantk <command>
    --help')`` and exit status 2 (argparse's own errors, and the checks argparse cannot make)."""
    where = f"{command}: " if command else ""
    help_of = f"kantk {command}" if command else "kantk"
    sys.stderr.write(f"kantk: {where}{one_line(message)} (see '{help_of} --help')\n")
    raise SystemExit(2)


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space, shortened."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a whole number in [{lo}, {hi}], got {text[:50]!r}"
            ) from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected a whole number in [{lo}, {hi}], got {text[:50]}")
        return value

    parse.__name__ = "whole number"
    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[lo, hi]`` (NaN and infinities refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number in [{lo:g}, {hi:g}], got {text[:50]!r}"
            ) from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"expected a finite number in [{lo:g}, {hi:g}], got {text[:50]}")
        return value

    parse.__name__ = "number"
    return parse


def name_arg(text: str) -> str:
    """An argparse ``type`` for variable names: printable, not empty, not huge."""
    if not text.strip() or not text.isprintable() or len(text) > 100:
        raise argparse.ArgumentTypeError(f"a name must be 1-100 printable characters, got {text[:50]!r}")
    return text


seed_arg = int_in(0, MAX_SEED)


# --- files ---------------------------------------------------------------------------------------


def check_input_file(path: str, what: str) -> str:
    """``path`` if it is an existing, readable regular file; otherwise end the command.

    Args:
        path: The file named on the command line.
        what: What it should be, for the message (e.g. ``"model file"``).
    """
    path = os.fspath(path)
    if not path or not os.path.exists(path):
        fail(f"no {what} at {path!r}")
    if os.path.isdir(path):
        fail(f"{path!r} is a folder, not a {what}")
    if not os.path.isfile(path):
        fail(f"{path!r} is not a regular file (a {what} is needed)")  # a FIFO or device would block
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        fail(f"cannot read {what} {path!r}: {exc.strerror or exc}")
    return path


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (through symlinks and hard links)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_writable_folder(folder: str) -> None:
    """End the command unless a file can be created in ``folder`` (tried, then removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".kantk-probe-", dir=folder)
    except OSError as exc:
        fail(f"cannot write into the folder {folder!r}: {exc.strerror or exc}")
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str, inputs: Iterable[str] = (), flag: str = "-o") -> str:
    """``path`` if the command may write it; otherwise end the command before any work.

    A valid output is not a folder nor a special file, lies in an existing writable folder, and is
    not one of ``inputs`` (also not through a symlink or a hard link).
    """
    out = os.fspath(path)
    if not out:
        fail(f"{flag} needs a file path")
    if out == "-":  # stdout, by the convention; it wrote a file named "-"
        fail(f"{flag} -: the result goes to a file, not to stdout; give a file path (./- for a file named -)")
    if os.path.isdir(out):
        fail(f"{flag} {out!r} is a folder; give the path of a file to write")
    if os.path.basename(out) in ("", ".", ".."):  # "out/new/": the work ran, then the rename failed
        fail(f"{flag} {out!r} names a folder (it ends in {os.sep!r}); give the path of a file to write")
    if os.path.exists(out) and not os.path.isfile(out):
        fail(f"{flag} {out!r} exists and is not a regular file; it is not overwritten")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        fail(f"the folder of {out!r} does not exist")
    if len(os.fsencode(os.path.basename(out))) > _name_max(parent):
        fail(f"{flag}: the file name {os.path.basename(out)[:40]!r}... is too long for the filesystem")
    for source in inputs:
        if source and same_file(out, source):
            fail(f"{flag} {out!r} is the input file {source!r}; write the result to another path")
    check_writable_folder(parent)
    return out


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no such setting
        return 255


def load_model(path: str) -> KAN:
    """A KAN from a ``.kantk`` file or a KANModule Lightning checkpoint (``.ckpt``).

    Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain data only,
    never pickled code. Their sizes are compared with the file before the module is built
    (:func:`kantk.lightning.module.check_checkpoint_sizes`), and the model's tensors get the value
    checks of a ``.kantk`` file (:func:`check_checkpoint_values`) before it is returned.
    """
    check_input_file(path, "model file")
    if path.lower().endswith(".ckpt"):
        from kantk.lightning import KANModule
        from kantk.lightning.module import check_checkpoint_sizes

        checkpoint = read_checkpoint(path)
        try:
            if isinstance(checkpoint, dict):
                # before any of it is printed or compared: plain data spells out to at most a few
                # values per byte of its file, unless it shares references; the budget leaves
                # symbolic layers of millions of edges room
                check_bounded(
                    {k: v for k, v in checkpoint.items() if k != "state_dict"},
                    "the checkpoint's data",
                    budget=max(1_000_000, 4 * os.path.getsize(path)),
                )
            problem = lightning_checkpoint_problem(checkpoint)  # fail's SystemExit passes the except
            if problem:
                fail(f"cannot load checkpoint {path!r}: {problem}")
            # a run with a custom loss (a callable, not saved): the commands need only the model
            hparams = checkpoint.get("hyper_parameters")
            custom = isinstance(hparams, dict) and str(hparams.get("loss", "")).startswith("custom:")
            # no regularisers either: they act in training only, and a plugin's that is not
            # installed here made the model unusable ("unknown regulariser") for every command
            overrides: dict[str, Any] = {"regularisers": None, **({"loss": "mse"} if custom else {})}
            if isinstance(hparams, dict):
                checkpoint = {**checkpoint, "hyper_parameters": {**hparams, **overrides}}
            # sizes first: hyperparameters that ask for more than the file holds build nothing
            check_checkpoint_sizes(checkpoint)
            module = KANModule.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
        except Exception as exc:  # noqa: BLE001 - an untrusted file: whatever the module raises
            fail(f"cannot load checkpoint {path!r}: {checkpoint_error(exc)}")
        check_checkpoint_values(path, checkpoint["state_dict"], module.model)
        model = module.model
        # the label columns named in a CSVDataModule's config: refused below when a --data file's
        # first columns (taken as the inputs) hold one (the label in the middle became an input)
        data = checkpoint.get("datamodule_hyper_parameters")
        labels = data.get("label_columns") if isinstance(data, dict) else None
        labels = labels if isinstance(labels, list) else [labels]
        model.trained_label_names = [str(v) for v in labels if isinstance(v, str)]
        return model
    from kantk.io import MissingPluginError

    try:
        return kantk.load(path)
    except MissingPluginError as exc:  # it names the file: "'m.kantk' cannot be loaded: unknown basis ..."
        fail(str(exc))
    except (ValueError, OSError) as exc:  # KantkFileError and UnknownComponentError are ValueErrors
        fail(f"cannot load {path!r}: {exc}")


def check_checkpoint_values(path: str, state: Any, model: KAN, dtype: Any = None) -> None:
    """End the command unless the model tensors of a checkpoint's state dict (its ``model.`` keys;
    optimizer state and the rest are not the model's) pass :func:`kantk.io.check_tensor_values`,
    the checks of a ``.kantk`` file: floating-point, finite, masks 0 or 1 (symbolic edges'
    ``symbolic_mask`` too), B-spline knots non-decreasing with a span the dtype can divide by,
    positive widths. Each is checked in the dtype ``model`` (built from the checkpoint) has, as
    loading converted it: a float64 1e300 in a float32 model is infinite.

    Args:
        path: The checkpoint file, for the message.
        state: Its ``state_dict`` (from ``torch.load``; its keys matched the model's when it loaded).
        model: The KAN loaded from it.
    """
    import torch

    from kantk.io import KantkFileError, check_tensor_values

    prefix = "model."
    tensors = {
        key[len(prefix) :]: value.to(dtype or model.dtype) if value.is_floating_point() else value
        for key, value in state.items()
        if isinstance(key, str) and key.startswith(prefix) and isinstance(value, torch.Tensor)
    }
    bases = [layer.basis_name for layer in model.layers]
    try:
        check_tensor_values(tensors, bases, None, f"cannot load checkpoint {path!r}", prefix)
    except KantkFileError as exc:
        fail(str(exc))


def read_checkpoint(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, or the command ends with one line:
    ``cannot load checkpoint '<path>': <why>`` (:func:`unreadable_checkpoint`)."""
    import torch

    problem = compressed_entry(path)
    if problem:
        fail(f"cannot load checkpoint {path!r}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken file reaches many errors inside torch.load
        fail(f"cannot load checkpoint {path!r}: {unreadable_checkpoint(exc)}")


def lightning_checkpoint_problem(checkpoint: Any, model: Any = None) -> str | None:
    """What a checkpoint lacks that Lightning needs to load it as a KANModule (else a
    ``--ckpt_path`` ended in an internal error: KeyError for the version, "Missing key(s)" for an
    empty state dict, AttributeError for a list), or None; with ``model`` (the KAN a config
    built), its tensors too. The commands that read one (:func:`load_model`, ``--ckpt_path``)
    refuse with it."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        what = type(checkpoint).__name__ + (" without a state_dict" if isinstance(checkpoint, dict) else "")
        return (
            f"it holds a {what}, not a KANModule Lightning checkpoint (a dict with 'state_dict' and "
            "'hyper_parameters')"
        )
    if "pytorch-lightning_version" not in checkpoint:
        return "it has no 'pytorch-lightning_version', so it is no Lightning checkpoint"
    if not isinstance(checkpoint.get("hyper_parameters", {}), dict):
        return "its 'hyper_parameters' is no dict, so it is no KANModule Lightning checkpoint"
    missing = [] if model is None else [f"model.{k}" for k in model.state_dict() if f"model.{k}" not in state]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return (
            f"its state_dict lacks {', '.join(missing[:3])}{more} of the model the config builds "
            "(a checkpoint of another model?)"
        )
    return None


def compressed_entry(path: str) -> str | None:
    """Why the zip archive of a ``torch.save`` file must not be read, or None: ``torch.save`` stores
    its entries uncompressed, and a compressed one expands before any size check (a 2.9 MB file
    declaring 750 million zeros took 3.4 GB). Read from the zip's directory alone; a file that is
    no zip (torch's legacy format, or no checkpoint) is left to ``torch.load``."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                    return (
                        f"its entry {one_line(info.filename, 80)!r} is compressed ({info.compress_size:,} "
                        f"bytes expanding to {info.file_size:,}); torch.save writes uncompressed entries, "
                        "and kantk reads only those"
                    )
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        return f"not a readable torch checkpoint file ({type(exc).__name__}: {one_line(str(exc), 200)})"
    return None


def unreadable_checkpoint(exc: BaseException) -> str:
    """Why ``torch.load`` could not read a file: pickled code refused, or not a checkpoint at all
    (a CSV renamed ``.ckpt`` raised "IndexError: pop from empty list", a text file a KeyError)."""
    import pickle

    reason = checkpoint_error(exc)
    return (
        reason
        if isinstance(exc, pickle.UnpicklingError)
        else f"not a readable torch checkpoint file ({reason})"
    )


def checkpoint_error(exc: BaseException) -> str:
    """A short reason why a checkpoint could not be loaded (torch's refusals are long)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        # found by position, not a regular expression: "(.*?)\s*" backtracked over every run of
        # spaces in a crafted module name (a 40 KB file took 40 s)
        text = str(exc)
        start = text.find("WeightsUnpickler error:")
        detail = text[start + len("WeightsUnpickler error:") :][:4000].lstrip() if start >= 0 else ""
        # torch's advice to allow the global (add_safe_globals) would let that file run code
        ends = [
            i
            for i in (
                detail.find("\n\n"),
                detail.find("Check the documentation"),
                detail.find(". Please use"),
            )
            if i >= 0
        ]
        detail = detail[: min(ends)] if ends else detail
        detail = one_line(detail.strip(), 200) if detail.strip() else one_line(text, 200)
        return (
            "not a readable checkpoint (only tensors and plain data are loaded, never pickled code): "
            f"{detail}"
        )
    return f"{type(exc).__name__}: {one_line(str(exc), 300)}"


def read_table(path: str, what: str = "CSV file") -> Any:
    """The CSV file ``path`` read by :func:`kantk.data.read_csv` (the one reader of every command).

    Returns a :class:`kantk.data.CsvTable` (``values``: finite float64 rows; ``names``: the header
    or ``None``), or ends the command with the reader's one-line message.
    """
    from kantk.data import read_csv

    check_input_file(path, what)
    try:
        return read_csv(path)
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        fail(f"cannot read {what} {path!r}: {_reason(exc, path)}")


def _reason(exc: BaseException, path: str) -> str:
    """The reader's message without the file name the caller already gives."""
    return str(exc).replace(f"{path!r} ", "", 1)


# --- samples -------------------------------------------------------------------------------------


#: What ``--data`` means in every command (one vocabulary; docs/cli.md).
DATA_HELP = (
    "CSV file of samples, one row each: the model's inputs are the columns its header names as "
    "the model records them (a model fitted on a file with a header), else the first columns (after "
    "prune --prune-inputs: the kept columns, which the model file records); further columns (e.g. "
    "the label) are ignored; a header row names the inputs (used as --var-names)"
)


def add_sample_arguments(parser: argparse.ArgumentParser, min_samples: int = 2) -> None:
    """``--data CSV``, or uniform samples: ``--range LO HI``, ``--samples N`` (``min_samples`` or
    more), ``--seed S``."""
    import re

    # --range -1e3 1e3: Python 3.11's argparse takes "-1e3" (exponent form) for an option and
    # answers "expected 2 arguments"; numbers in every form are values here (no option looks so)
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = re.compile(r"^-(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^-inf$")
    group = parser.add_argument_group(
        "samples to score the model on (--data, or else --samples uniform samples over --range)"
    )
    group.add_argument("--data", metavar="CSV", help=DATA_HELP)
    group.add_argument(
        "--range",
        nargs=2,
        type=float_in(-MAX_RANGE, MAX_RANGE),
        default=None,
        metavar=("LO", "HI"),
        help=f"without --data: every input is drawn uniformly from [LO, HI] (LO < HI, each within "
        f"+-{MAX_RANGE:g}; default: each input's grid range in the model, the data's after a grid "
        "update, else -1 1)",
    )
    group.add_argument(
        "--samples",
        type=int_in(min_samples, MAX_SAMPLES),
        default=1000,
        metavar="N",
        help=f"without --data: number of uniform samples, {min_samples} to {MAX_SAMPLES} (default 1000)",
    )
    group.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        metavar="S",
        help="without --data: seed of the uniform samples (0 to 2**63-1; default 0); the same seed gives "
        "the same samples",
    )


def check_sample_arguments(args: argparse.Namespace) -> None:
    """The checks of the sample arguments that need more than one value (before any work)."""
    if args.range is not None:
        lo, hi = args.range
        if not lo < hi:
            usage_exit(getattr(args, "command", None), f"--range needs LO < HI, got {lo:g} {hi:g}")
    if args.data:
        check_input_file(args.data, "CSV file")


def _data_table(args: argparse.Namespace) -> Any:
    """The ``--data`` file, read once per command."""
    table = getattr(args, "_data_table", None)
    if table is None:
        table = read_table(args.data)
        args._data_table = table
    return table


def data_columns(model: KAN) -> list[int]:
    """The 0-based ``--data`` columns the model's inputs are: the first ``widths[0]``, or after
    ``prune --prune-inputs`` the kept ones the model file records (``KAN.input_columns``)."""
    columns = model.input_columns
    return list(range(model.widths[0])) if columns is None else list(columns)


def file_columns(args: argparse.Namespace, model: KAN) -> list[int]:
    """The 0-based columns of the ``--data`` file that the model's inputs are: those its header
    names as the model records (``KAN.column_names``: a model trained on a file with a header),
    else :func:`data_columns` (by position); or end the command."""
    named = _named_columns(args, model)
    return data_columns(model) if named is None else named


def _named_columns(args: argparse.Namespace, model: KAN) -> list[int] | None:
    """The ``--data`` columns of the names the model records, or None to read by position (no
    names, no header, or one of the names twice in it); a header that lacks one ends the command."""
    table = _data_table(args)
    names = model.column_names
    if names is None or table.names is None:
        return None
    missing = [name for name in names if name not in table.names]
    if missing:
        fail(
            f"{args.data!r} has no column {missing[0]!r}: the model's inputs are the columns "
            f"{', '.join(repr(n) for n in names)} of the data it was trained on, and a file with a header "
            "must name them (its other columns are ignored); a file without a header is read by position"
        )
    if any(table.names.count(name) > 1 for name in names):
        if [table.names[c] if c < len(table.names) else None for c in data_columns(model)] == names:
            return None  # x,y,x (an input and the label of one name): where the names stand
        twice = next(name for name in names if table.names.count(name) > 1)
        fail(
            f"{args.data!r} names column {twice!r} more than once; the model takes its input {twice!r} "
            "by name (give a file whose header names each input once)"
        )
    return [table.names.index(name) for name in names]


def _input_columns(args: argparse.Namespace, model: KAN) -> Any:
    """The model's input columns of the ``--data`` file (float64), or end the command."""
    table = _data_table(args)
    values = table.values
    named = _named_columns(args, model)
    if named is not None:
        return values[:, named]  # by name: wherever the label and other columns are
    columns = data_columns(model)
    label_names = getattr(model, "trained_label_names", None) or []
    if table.names is not None and label_names:
        taken = [table.names[c] for c in columns if c < len(table.names)]
        clash = [name for name in taken if name in label_names]
        if clash:
            fail(
                f"{args.data!r}: column {clash[0]!r} is the label the model was trained to predict "
                f"(label_columns), but the commands take the first {len(columns)} columns as the "
                "inputs; give a file whose input columns come first, in the order the model was "
                "trained on (the label last or left out)"
            )
    if values.shape[1] <= max(columns):
        if model.input_columns is None:
            fail(f"{args.data!r} has {values.shape[1]} columns; the model needs {len(columns)} inputs")
        fail(
            f"{args.data!r} has {values.shape[1]} columns; the model's inputs are columns "
            f"{', '.join(str(c + 1) for c in columns)} of the data it was pruned from (give that file)"
        )
    return values[:, columns]


def samples(args: argparse.Namespace, model: KAN) -> torch.Tensor:
    """(samples, widths[0]) inputs in the model's dtype, from the command's sample arguments."""
    import torch

    dtype = model.dtype
    n_in = model.widths[0]
    if args.data:
        columns = _input_columns(args, model)
        if columns.shape[0] < 2:
            fail(f"{args.data!r} has {columns.shape[0]} rows; scoring a model needs at least 2 samples")
        _check_score_size(columns.shape[0], model, "rows of --data")
        return in_model_dtype(columns, dtype, args.data, file_columns(args, model))
    _check_score_size(args.samples, model, "--samples")
    gen = torch.Generator().manual_seed(args.seed)
    drawn = torch.rand(args.samples, n_in, generator=gen, dtype=dtype)
    if args.range is None:
        # the range the first layer resolves: a model trained on inputs in [200, 1000] (its grid
        # moved there) was scored on [-1, 1], and its formula was 5e7 off on the data
        lo_t, hi_t = _model_range(model)
        return drawn * (hi_t - lo_t).to(dtype) + lo_t.to(dtype)
    lo, hi = args.range
    drawn = drawn * (hi - lo) + lo
    if not bool(torch.isfinite(drawn).all()):
        fail(
            f"--range {lo:g} {hi:g} does not fit the model's {str(dtype).removeprefix('torch.')} "
            f"numbers (at most {torch.finfo(dtype).max:g} in size, and so the range's width); give a "
            "narrower range or a --data file"
        )
    return drawn


def _model_range(model: KAN) -> tuple[Any, Any]:
    """(lo, hi), (widths[0],) float64 each: the first layer's input range
    (:class:`kantk.bases.SupportsInputRange`: the grid range, which ``update_grid`` moves to the
    data), or [-1, 1] for a basis that does not say it or says something unusable."""
    import torch

    from kantk.bases.base import stated_input_range

    n_in = model.widths[0]
    try:
        stated = stated_input_range(model.layers[0].basis, n_in)
    except ValueError:  # a plugin's unusable range: the default one
        stated = None
    if stated is None:
        ones = torch.ones(n_in, dtype=torch.float64)
        return -ones, ones
    return stated


def in_model_dtype(values: Any, dtype: Any, source: str, columns: Sequence[int] | None = None) -> Any:
    """``values`` (a float64 array of finite numbers read from ``source``; its ``columns`` of the
    file, default all) as a tensor of the model's dtype, or end the command naming the first value
    that dtype cannot hold (1e300 in a float32 model, 70000 in a float16 one, became inf and the
    outputs NaN)."""
    import numpy as np
    import torch

    tensor = torch.as_tensor(values, dtype=dtype)
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        row, column = (int(i) for i in bad.nonzero()[0])
        in_file = columns[column] if columns is not None else column
        fail(
            f"{source!r}: data row {row + 1} (a header row not counted), column {in_file + 1}: "
            f"{float(np.asarray(values)[row, column]):g} is "
            f"past the model's {str(dtype).removeprefix('torch.')} range (at most "
            f"{torch.finfo(dtype).max:g} in size)"
        )
    return tensor


def _check_score_size(rows: int, model: KAN, source: str) -> None:
    """End the command when scoring ``rows`` samples would hold more than :data:`MAX_SCORE_VALUES`
    values: every layer's edge values on every sample (the scores keep them all), and the widest
    layer's basis values (inputs times basis functions: a [12, 11, 1] model of grid 200, 132
    edges, took 11.7 GB on a million samples when only the edges were counted)."""
    edges = sum(layer.in_features * layer.out_features for layer in model.layers)
    basis = widest_basis(model)
    per_sample = edges + basis
    if rows * per_sample > MAX_SCORE_VALUES:
        fail(
            f"scoring {rows} samples on this model ({edges} edges, {basis} basis values per sample in its "
            f"widest layer) needs {rows * per_sample * 8 / 2**30:.1f} GB; give at most "
            f"{max(MAX_SCORE_VALUES // per_sample, 1)} {source}"
        )


def widest_basis(model: KAN) -> int:
    """The basis values per sample of the model's widest layer (inputs times basis functions)."""
    return max(layer.in_features * layer.basis.num_functions for layer in model.layers)


def check_drawn_edges(model: KAN, limit: int, what: str) -> None:
    """End the command when ``model`` has more than ``limit`` live edges to draw."""
    edges = sum(int(layer.live_edges().sum()) for layer in model.layers)
    if edges > limit:
        fail(
            f"{what} draws at most {limit} edges and the model has {edges} live ones; prune it first "
            "(kantk prune), or export --format json or dot"
        )


#: The default of a model command's ``--var-names``, as its help says it.
RECORDED_NAMES = "(default: the --data header, else the header names the model recorded, else x1 x2 ...)"


def var_names(args: argparse.Namespace, model: KAN) -> list[str] | None:
    """The input names: ``--var-names``, else the ``--data`` file's header names, else ``None``."""
    names = getattr(args, "var_names", None)
    if names is not None:
        return list(names)
    if getattr(args, "data", None):
        return _data_table(args).variable_names(file_columns(args, model))
    return None


def check_var_names(names: Sequence[str] | None, model: KAN, flag: str = "--var-names") -> None:
    """End the command unless ``names`` is None or holds one distinct name per model input."""
    if names is not None and len(names) != model.widths[0]:
        fail(
            f"{flag} needs {model.widths[0]} names (one per input of the model {model.widths}), got "
            f"{len(names)}"
        )
    check_distinct_names(names, flag)


def check_distinct_names(names: Sequence[str] | None, flag: str = "--var-names") -> None:
    """End the command when ``names`` names one input twice."""
    try:
        check_distinct(names or (), flag)
    except ValueError as exc:
        fail(str(exc))


def check_formula_names(names: Sequence[str] | None, flag: str = "--var-names") -> None:
    """End the command unless every name can stand for a variable in a printed formula."""
    from kantk._validation import formula_name_problem

    for name in names or ():
        problem = formula_name_problem(name)
        if problem:
            fail(f"{flag}: {problem}; a formula would read otherwise (x-1 as x minus 1, pi as the constant)")


def header_formula_names(names: list[str] | None) -> list[str] | None:
    """A CSV header's names for a formula, or None (the default x1, x2, ...) with a note on
    stderr when one of them would make the formula read otherwise (``x-1``, ``pi``, ``a b``)."""
    from kantk._validation import formula_name_problem

    problems = [p for p in (formula_name_problem(n) for n in names or ()) if p]
    if problems:
        print(
            f"kantk: note: the header names cannot stand in a formula ({problems[0]}); it uses "
            "x1, x2, ... in column order (give --var-names to name them)",
            file=sys.stderr,
        )
        return None
    return names


def _inputs(args: argparse.Namespace) -> list[str]:
    return [p for p in (getattr(args, "model", None), getattr(args, "data", None)) if p]


def _add_var_names(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--var-names", nargs="+", type=name_arg, metavar="NAME", help=help_text)


def _add_out_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out-names",
        nargs="+",
        type=name_arg,
        metavar="NAME",
        help="names of the outputs (default y1 y2 ...)",
    )


#: Resolution range of ``--dpi`` (a 300 dpi print is the usual need; 1200 dpi bounds the file size).
DPI_RANGE = (30, 1200)


def _add_dpi(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--dpi",
        type=int_in(*DPI_RANGE),
        default=default,
        help=f"resolution of png output and of embedded pictures, {DPI_RANGE[0]} to {DPI_RANGE[1]} "
        f"(default {default}; 300 for print)",
    )


def check_out_names(names: Sequence[str] | None, model: KAN) -> None:
    """End the command unless ``names`` is None or holds one name per model output."""
    if names is not None and len(names) != model.widths[-1]:
        fail(
            f"--out-names needs {model.widths[-1]} names (one per output of the model {model.widths}), got "
            f"{len(names)}"
        )


# --- predict -------------------------------------------------------------------------------------

#: Rows evaluated at once by ``kantk predict`` (bounds the memory of the intermediate values).
PREDICT_CHUNK = 65_536


def configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("--data", metavar="CSV", required=True, help=DATA_HELP)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="CSV file to write: a header y1..yK, then one row of outputs per input row",
    )


def predict_rows(model: KAN, x: torch.Tensor, chunk: int = PREDICT_CHUNK) -> torch.Tensor:
    """The model's outputs (N, widths[-1]) for inputs ``x`` (N, widths[0]), ``chunk`` rows at a
    time, fewer where a row's basis values are many: at most :data:`MAX_SCORE_VALUES` values at
    once (an 8 MB Chebyshev model of degree 1,000,000 asked for 0.5 TB per 65,536 rows)."""
    import torch

    per_row = widest_basis(model) + max(layer.out_features for layer in model.layers)
    chunk = max(1, min(chunk, MAX_SCORE_VALUES // per_row))
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    check_input_file(args.model, "model file")
    check_input_file(args.data, "CSV file")
    out = check_output_file(args.output, _inputs(args))
    model = load_model(args.model)
    columns = _input_columns(args, model)
    dtype = model.dtype
    try:
        y = predict_rows(model, in_model_dtype(columns, dtype, args.data, file_columns(args, model)))
    except (ValueError, RuntimeError) as exc:  # e.g. the model refuses its input
        fail(f"predict: {exc}")
    rows = y.detach().to(torch.float64).cpu().numpy()
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():  # the model's own outputs (a symbolic log of a negative number): written, not silent
        print(
            f"kantk: warning: the model's outputs are NaN or infinite on {int(bad.sum())} of "
            f"{rows.shape[0]} rows (first: data row {int(bad.argmax()) + 1}, a header row not counted); they "
            "are written as nan/inf",
            file=sys.stderr,
        )
    digits = 9 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 17
    header = ",".join(f"y{q + 1}" for q in range(rows.shape[1]))
    with atomic_path(out) as tmp:
        np.savetxt(tmp, rows, fmt=f"%.{digits}g", delimiter=",", header=header, comments="")
    print(f"predicted {rows.shape[0]} rows x {rows.shape[1]} outputs; wrote {out}")
    return 0


# --- prune ---------------------------------------------------------------------------------------


def configure_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the pruned model (.kantk)")
    parser.add_argument("--pruner", default="threshold", help="registry name (kantk plugins lists them)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pruner option, e.g. --option node_th=0.01 (repeatable; VALUE is JSON or a word)",
    )
    parser.add_argument("--prune-inputs", action="store_true", help="also remove unimportant input features")
    add_sample_arguments(parser)


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` entries as keyword arguments (VALUE: JSON, or else a plain word).

    Non-finite numbers (``NaN``, ``Infinity``, ``1e999``) are refused.
    """
    options: dict[str, Any] = {}
    for item in items:
        if len(item) > MAX_ARG_LENGTH:
            fail(f"--option is longer than {MAX_ARG_LENGTH} characters")
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            fail(f"--option needs KEY=VALUE with KEY a name, got {item!r}")
        if key in RESERVED_OPTIONS:
            fail(f"--option {key}=... is not a pruner option (use the command's own flags)")
        if key in options:  # the last one silently won
            fail(f"--option {key} is given twice; give each option once")
        options[key] = _option_value(key, value.strip())
    return options


def _option_value(key: str, text: str) -> Any:
    def refuse(constant: str) -> NoReturn:
        fail(f"--option {key}: non-finite numbers are not accepted, got {constant}")

    try:
        value = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        if text[:1] in tuple('+-.0123456789[{"') or not text:
            fail(f"--option {key}: {text[:50]!r} is neither a number nor valid JSON")
        return text  # a plain word, e.g. a name
    if not _finite(value):
        fail(f"--option {key}: non-finite numbers are not accepted, got {text[:50]}")
    return value


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def run_prune(args: argparse.Namespace) -> int:
    check_input_file(args.model, "model file")
    check_sample_arguments(args)
    out = check_output_file(args.output, _inputs(args))
    options = parse_options(args.option)
    model = load_model(args.model)
    x = samples(args, model)
    try:
        pruned = kantk.prune(model, x, pruner=args.pruner, prune_inputs=args.prune_inputs, **options)
    except (ValueError, TypeError) as exc:  # UnknownComponentError is a ValueError
        fail(f"prune: {exc}")
    with atomic_path(out) as tmp:
        kantk.save(pruned, tmp)
    kept = ""
    if args.prune_inputs:  # the file records the kept columns; later commands take them from --data
        names = var_names(args, model) or model.input_names()
        index = {c: i for i, c in enumerate(data_columns(model))}
        columns = data_columns(pruned)
        kept_names = ", ".join(names[index[c]] for c in columns)
        numbers = ", ".join(str(c + 1) for c in columns)
        named = _named_columns(args, model) if args.data else None
        if named is not None and pruned.column_names is not None:  # found by name in --data
            in_file = ", ".join(str(named[index[c]] + 1) for c in columns)
            kept = (
                f"; kept inputs {kept_names} (columns {in_file} of {args.data}): later commands take "
                "them by header name from a --data file with a header, and from one without from "
                f"columns {numbers} (of the data the model was trained on)"
            )
        else:
            kept = (
                f"; kept inputs {kept_names} (columns {numbers} of the data): later commands take these "
                "columns of a --data file with the original columns"
            )
    print(f"pruned {model.width_spec} -> {pruned.width_spec}{kept}; wrote {out}")
    return 0


# --- symbolic ------------------------------------------------------------------------------------


def configure_symbolic(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the symbolic model (.kantk)")
    parser.add_argument("--library", default="default", help="symbolic library (kantk plugins lists them)")
    parser.add_argument(
        "--r2-threshold",
        type=float_in(*R2_RANGE),
        default=0.9,
        help="keep an edge numeric below this r^2 (a number in [0, 1]; default 0.9)",
    )
    _add_var_names(parser, "names of the inputs in the printed formula " + RECORDED_NAMES)
    parser.add_argument("--latex", action="store_true", help="also print the formula as LaTeX")
    add_sample_arguments(parser, min_samples=3)  # each edge's fit needs 3 samples


def resolve_library(name: str) -> Any:
    """The symbolic library ``name``, or end the command (before any work)."""
    from kantk.symbolic.library import resolve_library as resolve

    try:
        return resolve(name)
    except (ValueError, TypeError, kantk.PluginError) as exc:
        fail(str(exc))


def check_symbolic_size(model: KAN) -> None:
    """End ``kantk symbolic`` before the fit when its work or its formula is too large: more than
    :data:`MAX_SYMBOLIC_EDGES` live edges to fit, or formulas past
    :data:`kantk.symbolic.bounds.MAX_FORMULA_OPS` operations
    (:func:`kantk.symbolic.bounds.check_formula_size`). A 400 KB [100, 99, 1] model ran for more
    than 5 minutes and then could only have been refused."""
    from kantk.symbolic.bounds import check_formula_size
    from kantk.symbolic.formula import numeric_edges

    live = numeric_edges(model)
    if len(live) > MAX_SYMBOLIC_EDGES:
        fail(
            f"symbolic: the model has {len(live)} live numeric edges, more than {MAX_SYMBOLIC_EDGES} "
            "(each is fitted against every library function); prune it first (kantk prune)"
        )
    try:
        check_formula_size(model, live)
    except ValueError as exc:
        fail(f"symbolic: {exc}")


#: Share of the numeric model's output spread past which ``kantk symbolic`` warns that the
#: symbolic model strays from it (a threshold of 0 fixed edges whose functions fit them poorly,
#: and the printed formula was worse than a constant, exit status 0).
STRAY_SHARE = 0.1


def _say_how_far_the_symbolic_model_strays(model: KAN, x: Any, numeric: Any) -> None:
    """Print, per output, the RMSE between the symbolic model and the numeric one it came from on
    the samples, as a share of the numeric outputs' std; warn past :data:`STRAY_SHARE`."""
    import torch

    symbolic = predict_rows(model, x).to(torch.float64)
    numeric = numeric.to(torch.float64)
    rmse = (symbolic - numeric).square().mean(0).sqrt()
    spread = numeric.std(0) if numeric.shape[0] > 1 else torch.zeros_like(rmse)
    for q in range(rmse.shape[0]):
        if not math.isfinite(float(rmse[q])):
            continue  # NaN or infinite outputs: the formula's own message says so
        share = float(rmse[q] / spread[q]) if float(spread[q]) > 0 else float("nan")
        of = f" ({share:.1%} of the numeric outputs' std)" if math.isfinite(share) else ""
        print(
            f"y{q + 1}: the symbolic model differs from the numeric one by RMSE {float(rmse[q]):.3g} "
            f"on the samples{of}"
        )
        if math.isfinite(share) and share > STRAY_SHARE:
            print(
                f"kantk: warning: y{q + 1}: the symbolic model strays from the numeric one (RMSE "
                f"{float(rmse[q]):.3g}{of}): some edge's function fits it poorly; a higher "
                "--r2-threshold leaves such edges numeric, and a refit of the symbolic model (kantk.fit "
                "in Python) tunes the functions' constants",
                file=sys.stderr,
            )


def run_symbolic(args: argparse.Namespace) -> int:
    check_input_file(args.model, "model file")
    check_sample_arguments(args)
    out = check_output_file(args.output, _inputs(args))
    library = resolve_library(args.library)
    model = load_model(args.model)
    check_var_names(args.var_names, model)
    check_formula_names(args.var_names)
    check_symbolic_size(model)
    x = samples(args, model)
    names = header_formula_names(var_names(args, model)) if args.var_names is None else args.var_names
    numeric_outputs = predict_rows(model, x)  # to say how far the symbolic model strays from it
    try:
        kantk.auto_symbolic(model, x, library=library, r2_threshold=args.r2_threshold)
    except ValueError as exc:
        fail(f"symbolic: {exc}")
    with atomic_path(out) as tmp:
        kantk.save(model, tmp)
    from kantk.symbolic.formula import numeric_edges

    left = numeric_edges(model)
    if left:  # in the command's words: the Python API's message names auto_symbolic and its arguments
        # an edge fixed to a function whose numeric branch is also on was not fitted (auto_symbolic
        # leaves symbolic edges alone): a lower threshold does not help there
        both = [
            e
            for e in left
            if model.layers[e[0]].has_symbolic and bool(model.layers[e[0]].symbolic_mask[e[2], e[1]])
        ]
        below = [e for e in left if e not in set(both)]

        def listed(edges: list[tuple[int, int, int]]) -> str:
            more = f" and {len(edges) - 10} more" if len(edges) > 10 else ""
            return ", ".join(f"layer {l}: {i} -> {j}" for l, i, j in edges[:10]) + more

        parts = []
        if below:
            parts.append(
                f"{len(below)} edge{'s' if len(below) > 1 else ''} (input -> output) whose best function of "
                f"the {args.library!r} library (ranked by r2 and simplicity, as pykan ranks them) has "
                f"r2 < {args.r2_threshold:g}: {listed(below)}; give a lower --r2-threshold (such an edge "
                "then takes a function that may fit it poorly: the command says how far the symbolic "
                "model then strays from the numeric one), another --library, or prune those edges "
                "(kantk prune) and run again"
            )
        if both:
            parts.append(
                f"{len(both)} symbolic edge(s) with a live numeric part too: {listed(both)} (fixed with "
                "the numeric branch on; fix them again in Python, or prune them)"
            )
        print(f"wrote {out}", file=sys.stderr)
        print(
            "kantk: "
            + one_line(
                f"symbolic: no closed form yet: {'; '.join(parts)}; {out} holds the edges that did fit"
            ),
            file=sys.stderr,
        )
        return 1
    unchecked: list[str] = []

    def in_own_words(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:  # the API's says "pass x="
        text = str(message)
        if "not real on most check points" in text:
            unchecked.append(text.split(":")[1].strip())  # "output q"
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            shown = warnings.showwarning
            warnings.filterwarnings("always", message=".*not real on most check points")
            warnings.showwarning = in_own_words
            formulas = kantk.symbolic_formula(model, var_names=names, numeric="raise", x=x)
    except ValueError as exc:
        print(f"wrote {out}", file=sys.stderr)
        print("kantk: " + one_line(f"symbolic: no closed form yet: {exc}"), file=sys.stderr)
        return 1
    for q, expr in enumerate(formulas):
        print(f"y{q + 1} = {expr}")
        if args.latex:
            print(f"    LaTeX: {kantk.formula_to_latex(expr)}")
    print(f"wrote {out}")
    _say_how_far_the_symbolic_model_strays(model, x, numeric_outputs)
    unreal = [f"y{q + 1}" for q, expr in enumerate(formulas) if not_finite_real(expr)]
    named = dict.fromkeys(f"y{int(o.split()[1]) + 1}" for o in unchecked)  # once each, in order
    rest = [y for y in named if y not in unreal]
    if rest:
        print(
            f"kantk: warning: {', '.join(rest)}: the formula is not real on most of the samples (its "
            "functions leave their real domain there), so its rounding was not checked; score it on the "
            "inputs the model was fitted on (--data) or a --range inside its functions' domains",
            file=sys.stderr,
        )
    if unreal:  # log(-1) = I*pi, 1/0 = zoo: what the model computes there is NaN or infinite
        print(
            f"kantk: symbolic: {', '.join(unreal)}: the formula is not a finite real expression (it holds I, "
            "oo, zoo or nan): edge functions of the model leave their real domain or divide by zero; its "
            "outputs are NaN or infinite there",
            file=sys.stderr,
        )
        return 1
    return 0


def not_finite_real(expr: Any) -> bool:
    """Whether a formula holds the imaginary unit, an infinity or NaN (sympy's ``I``, ``oo``,
    ``zoo``, ``nan``): a model whose functions leave their real domain."""
    import sympy

    return bool(expr.has(sympy.I, sympy.oo, -sympy.oo, sympy.zoo, sympy.nan))


# --- export --------------------------------------------------------------------------------------


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="output file (written exactly there)")
    parser.add_argument(
        "--format", choices=EXPORT_FORMATS, default=None, help="default: from the output's extension"
    )
    _add_var_names(parser, "names of the inputs " + RECORDED_NAMES)
    _add_out_names(parser)
    parser.add_argument(
        "--edge-plots",
        action="store_true",
        help="draw each edge's function on the diagram, faded by importance (svg, png and pdf embed the "
        "pictures; with --format dot they go into <OUT without its extension>_edges/ beside the output)",
    )
    _add_dpi(parser, 150)
    add_sample_arguments(parser)


def run_export(args: argparse.Namespace) -> int:
    from kantk.export import GraphvizNotFoundError, GraphvizRenderError, export_graph

    check_input_file(args.model, "model file")
    check_sample_arguments(args)
    inputs = _inputs(args)
    out = check_output_file(args.output, inputs)
    fmt = args.format or os.path.splitext(out)[1].lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        fail(
            f"export: unknown format {fmt!r} (from the extension of {out!r}); give --format "
            f"{'|'.join(EXPORT_FORMATS)} or an output ending in one of them"
        )
    if fmt in ("svg", "png", "pdf"):
        import shutil

        from kantk.export import INSTALL_GRAPHVIZ

        if shutil.which("dot") is None:
            fail(f"export: {INSTALL_GRAPHVIZ}")
    plots: str | bool | None = None
    earlier: list[str] = []  # pictures of an earlier export in the plots folder
    foreign: list[str] = []  # anything else there
    if args.edge_plots and fmt == "json":
        fail("--edge-plots draws pictures on a diagram; it does not apply to --format json")
    if args.edge_plots and fmt != "dot":
        plots = True  # drawn in a temporary folder and embedded in the diagram
    elif args.edge_plots:
        plots = os.path.splitext(out)[0] + "_edges"
        assert isinstance(plots, str)
        if os.path.islink(plots):
            fail(f"--edge-plots writes into the folder {plots!r}, which is a link; give another output name")
        if os.path.exists(plots) and not os.path.isdir(plots):
            fail(f"--edge-plots writes into the folder {plots!r}, but a file of that name exists")
        if os.path.isdir(plots):
            # a rerun replaces the pictures its own earlier DOT names; anything else there stays
            # untouched (fig.dot, fig.gv and fig share fig_edges/: a second export replaced and
            # removed the first one's pictures)
            named = _named_in(out)
            for name in sorted(os.listdir(plots)):
                path = os.path.join(plots, name)
                (earlier if _edge_picture(path) and _names(named, path) else foreign).append(name)
            if foreign:
                what = (
                    f"a picture that {out!r} does not name (another export's)"
                    if _edge_picture(os.path.join(plots, foreign[0]))
                    else "not a picture of an earlier export"
                )
                fail(
                    f"--edge-plots writes the pictures into {plots!r}, which exists and holds "
                    f"{foreign[0]!r}, {what} (files there would be overwritten); remove it or choose "
                    "another output name"
                )
        for source in inputs:
            if same_file(os.path.dirname(os.path.abspath(source)), plots):
                fail(f"--edge-plots writes into {plots!r}, which holds the input {source!r}")
    model = load_model(args.model)
    check_var_names(args.var_names, model)
    check_out_names(args.out_names, model)
    if args.edge_plots:
        check_drawn_edges(model, MAX_PICTURED_EDGES, "--edge-plots")
    if fmt in ("svg", "png", "pdf"):
        check_drawn_edges(model, MAX_DRAWN_EDGES, f"export --format {fmt}")
    x = samples(args, model)
    try:
        export_graph(
            model,
            out,
            fmt,
            x,
            var_names=var_names(args, model),
            out_names=args.out_names,
            edge_plots=plots,
            dpi=args.dpi,
        )
    except (GraphvizNotFoundError, GraphvizRenderError, ValueError) as exc:
        fail(f"export: {exc}")
    if isinstance(plots, str) and earlier:
        # the earlier export's pictures of edges this model does not have: the new DOT names none
        source = _named_in(out)
        for name in earlier:
            path = os.path.join(plots, name)
            if not _names(source, path) and _edge_picture(path):
                os.remove(path)
    print(f"wrote {out}")
    return 0


def _named_in(dot: str) -> str:
    """The text of the DOT file ``dot`` ("" when there is none, or it cannot be read as one)."""
    try:
        if os.path.islink(dot) or not os.path.isfile(dot) or os.path.getsize(dot) > 256 * 2**20:
            return ""
        with open(dot, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _names(source: str, path: str) -> bool:
    """Whether the DOT text ``source`` names the picture ``path`` (as the DOT writes it: by its
    absolute path, or one ending in the same folder and file, for a folder moved since with its
    DOT file; ``source`` is the output's own earlier text, never another export's)."""
    import html

    full = os.path.abspath(path)
    tail = os.sep + os.path.join(os.path.basename(os.path.dirname(full)), os.path.basename(full)) + '"'
    return any(form in source for form in (full, html.escape(full), tail, html.escape(tail[:-1]) + '"'))


def _edge_picture(path: str) -> bool:
    """Whether ``path`` is a picture ``kantk export --edge-plots`` wrote: a PNG file (not a link)
    named ``edge_<layer>_<input>_<output>.png``."""
    import re

    if not re.fullmatch(r"edge_\d+_\d+_\d+\.png", os.path.basename(path)):
        return False
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


# --- plot ----------------------------------------------------------------------------------------


def configure_plot(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="image file (.png, .svg, .pdf)")
    _add_var_names(parser, "names of the inputs " + RECORDED_NAMES)
    _add_out_names(parser)
    _add_dpi(parser, 150)
    add_sample_arguments(parser)


def image_format(path: str) -> str:
    """The matplotlib format of ``path`` from its extension, or end the command."""
    from kantk.plotting import image_format as format_of
    from kantk.plotting import image_formats

    fmt = format_of(path)
    accepted = [f for f in image_formats() if f not in PLOT_REFUSED]
    if fmt is None or fmt in PLOT_REFUSED:
        why = f" ({PLOT_REFUSED[fmt]})" if fmt in PLOT_REFUSED else ""
        fail(f"-o {path!r}: give an image file ending in one of: {', '.join('.' + f for f in accepted)}{why}")
    return fmt


#: Formats matplotlib names that ``kantk plot`` refuses before any work, and why.
PLOT_REFUSED = {
    "eps": "PostScript has no transparency, which is how the plot shows importance",
    "ps": "PostScript has no transparency, which is how the plot shows importance",
    "pgf": "pgf needs a LaTeX installation and fails after the work without one",
}


def run_plot(args: argparse.Namespace) -> int:
    check_input_file(args.model, "model file")
    check_sample_arguments(args)
    out = check_output_file(args.output, _inputs(args))
    fmt = image_format(out)
    model = load_model(args.model)
    check_var_names(args.var_names, model)
    check_out_names(args.out_names, model)
    check_drawn_edges(model, MAX_DRAWN_EDGES, "kantk plot")
    from kantk.plotting import default_figsize, plain_text

    inches = default_figsize(model.widths)
    pixels = inches[0] * inches[1] * args.dpi**2
    # a 134 KB model of 30 layers at --dpi 1200 asked for ~13 GB
    if fmt not in VECTOR_FORMATS and pixels > MAX_PLOT_PIXELS:
        most = int(math.sqrt(MAX_PLOT_PIXELS / (inches[0] * inches[1])))
        fail(
            f"plot: the figure of this model ({inches[0]:.0f} x {inches[1]:.0f} in) would be "
            f"{pixels / 1e6:.0f} million pixels at --dpi {args.dpi}, more than {MAX_PLOT_PIXELS / 1e6:.0f} "
            f"million; give --dpi {most} or less, or prune the model"
        )
    x = samples(args, model)

    # names from the command line and CSV headers are plain text, not matplotlib mathtext
    in_vars = var_names(args, model)
    fig = kantk.plot_activations(
        model,
        x,
        in_vars=None if in_vars is None else [plain_text(n) for n in in_vars],
        out_vars=None if args.out_names is None else [plain_text(n) for n in args.out_names],
    )
    from kantk.plotting import save_figure

    with atomic_path(out) as tmp:
        save_figure(fig, tmp, format=fmt, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


# --- discover ------------------------------------------------------------------------------------


def configure_discover(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to discover (default: samples of the default --formula)")
    source.add_argument(
        "--formula", default=None, help="formula of x1..xn to sample (default: exp(sin(pi*x1) + x2**2))"
    )
    source.add_argument(
        "--data",
        metavar="CSV",
        help="your own data instead: a CSV file whose last column is the label and the columns before it "
        "the inputs (as --data of the other commands); a header row names the variables",
    )
    source.add_argument("--csv", metavar="CSV", help=argparse.SUPPRESS)  # deprecated spelling of --data
    parser.add_argument("-o", "--output", default="kantk-out", help="output folder (default: kantk-out/)")
    parser.add_argument(
        "--steps",
        type=int_in(1, 100_000),
        default=None,
        help="LBFGS steps of each fit (1 to 100000; default: kantk.discover's, 30)",
    )
    parser.add_argument(
        "--hidden",
        type=int_in(1, 1000),
        default=None,
        help="hidden width (sum nodes) before pruning, then smaller ones (1 to 1000); default: the shape "
        "search (one product node, a sum and a product node, two sum nodes, two product nodes with 4+ "
        "inputs; the first exact formula wins)",
    )
    parser.add_argument(
        "--library", default=None, help="symbolic library (kantk plugins lists them; default: default)"
    )
    parser.add_argument(
        "--tolerance",
        type=float_in(0, 1e300),
        default=None,
        metavar="RMSE",
        help="a test RMSE (in the label's units) that is good enough: the search stops at the first shape "
        "at or below it, as at an exact formula (measured data: its noise level; default: only an exact "
        "formula stops the search)",
    )
    _add_var_names(
        parser,
        "names of the inputs in the formula (default: the --data header, else x1 x2 ...)",
    )
    parser.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        metavar="S",
        help="seed of the samples, the train/test split, the model and the training (0 to 2**63-1; "
        "default 0)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the formula and the test RMSE (and, when no attempt is exact, the printed "
        "formula's own test RMSE)",
    )


#: The deprecation message of ``discover --csv``: a ``kantk: warning:`` line, as every warning of
#: the commands (it began ``warning:`` alone).
CSV_DEPRECATED = (
    "kantk: warning: 'kantk discover --csv' is deprecated; use --data (the same file, the label in the "
    "last column)"
)


def run_discover(args: argparse.Namespace) -> int:
    from kantk.pipeline import DEFAULT_FORMULA, OUTPUT_NAMES, check_output_dir, discover

    if args.csv:
        print(CSV_DEPRECATED, file=sys.stderr)
        if args.data:
            fail("discover: give --data once (--csv is its old spelling)")
        args.data = args.csv
    if args.data and args.formula:
        fail("discover: give --formula or --data, not both")
    if args.data:
        check_input_file(args.data, "CSV file")
    folder = args.output
    if not folder:
        fail("-o needs a folder path")
    if folder == "-":  # stdout, by the convention: it made a folder named "-"
        fail(
            "-o -: discover writes a folder of files, not to stdout; give a folder path (./- for one named -)"
        )
    if args.data:
        for name in OUTPUT_NAMES:
            if same_file(os.path.join(folder, name), args.data):
                fail(
                    f"-o {folder!r} would overwrite the input {args.data!r} with {name}; "
                    "choose another folder"
                )
    try:
        check_output_dir(folder)
    except OSError as exc:
        fail(str(exc))
    if args.library is not None:
        resolve_library(args.library)
    names = args.var_names
    check_distinct_names(names)
    check_formula_names(names)
    data = None
    if args.data:
        data, header_names = _csv_dataset(args.data, args.seed)
        names = names if names is not None else header_formula_names(header_names)
        n_in = data["train_input"].shape[1]
        if n_in > MAX_SYMBOLIC_EDGES:  # each input is an edge of discover's first model, fitted one by one
            fail(
                f"discover: {args.data!r} has {n_in} input columns; discover fits a function to every "
                f"edge and takes at most {MAX_SYMBOLIC_EDGES:,} inputs (20,000 columns fitted for minutes "
                "before any result); select the inputs first (kantk prune --prune-inputs on a fitted model)"
            )
    say = None if args.quiet else (lambda message: print(message, flush=True))
    if say:
        say(f"kantk discover: {args.data or args.formula or DEFAULT_FORMULA} -> {folder}/")
    try:
        result = discover(
            None if data is not None else (args.formula or DEFAULT_FORMULA),
            data=data,
            # only what the user gave: the rest at discover's defaults
            **{
                k: v
                for k, v in (
                    ("hidden", args.hidden),
                    ("steps", args.steps),
                    ("library", args.library),
                    ("tolerance", args.tolerance),
                )
                if v is not None
            },
            var_names=names,
            seed=args.seed,
            output_dir=folder,
            progress=say,
        )
    except (ValueError, TypeError) as exc:  # UnknownComponentError is a ValueError
        fail(f"discover: {exc}")
    for q, expr in enumerate(result.formulas):
        print(f"formula: y{q + 1} = {expr}" if len(result.formulas) > 1 else f"formula: {expr}")
    if not result.formulas:
        print(
            "formula: none found (some edges stayed numeric, or only a constant fitted; try more "
            "--steps or another --hidden)"
        )
    print(f"test RMSE: {result.test_rmse:.3e}")
    if result.formula_rmse is not None:  # not exact: the rounded formula may fit worse than the model
        print(f"test RMSE of the printed formula: {result.formula_rmse:.3e}")
    if not result.formulas:
        print(f"kantk: discover: no closed form found; the numeric model is in {folder}/", file=sys.stderr)
        return 1
    return 0


def _csv_dataset(path: str, seed: int) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """discover's dataset from ``--data``: the last column is the label, 80 % of the rows train.

    Returns the dataset and the header names of the input columns (``None`` without a header).
    """
    import torch

    table = read_table(path)
    values = table.values
    if values.shape[1] < 2 or values.shape[0] < 10:
        fail(
            f"discover: {path!r} needs input columns and a label column, and at least 10 rows; "
            f"it has {values.shape[1]} columns and {values.shape[0]} rows"
        )
    rows = torch.as_tensor(values, dtype=torch.float64)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(rows))
    train, test = rows[order[:cut]], rows[order[cut:]]
    from kantk.data import CsvDataset

    data = CsvDataset(
        train_input=train[:, :-1], train_label=train[:, -1:], test_input=test[:, :-1], test_label=test[:, -1:]
    )
    # the header's names of the inputs: discover's model records them (KAN.column_names)
    data.input_names = table.variable_names(range(values.shape[1] - 1))
    return data, data.input_names


def commands() -> dict[str, Any]:
    """(help, configure, run) of each model command, for :mod:`kantk.cli`."""
    return {
        "predict": (
            "write a saved model's outputs for the rows of a CSV file to a CSV file",
            configure_predict,
            run_predict,
        ),
        "prune": ("prune a saved model on samples and write the smaller model", configure_prune, run_prune),
        "symbolic": (
            "fit every edge to a symbolic function, print the formula, write the model",
            configure_symbolic,
            run_symbolic,
        ),
        "export": ("export the network graph as svg, png, pdf, dot or json", configure_export, run_export),
        "plot": ("draw every edge's function into an image", configure_plot, run_plot),
        "discover": (
            "the whole workflow: fit, sparsify, prune, refine, symbolic, refit; print the formula",
            configure_discover,
            run_discover,
        ),
    }
