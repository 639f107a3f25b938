"""Save and load models as safetensors (weights) plus a JSON config: no pickle anywhere.

A model file is untrusted input. :func:`load` reads only the safetensors header first (bounded in
size), checks the JSON config field by field and the shape of every tensor it implies against the
header, building the layers on PyTorch's ``meta`` device (no memory) to learn the shapes of a
basis' buffers; only then does it read the tensors (their size is bounded by the file's) and check
their values. Every problem with a file is a :class:`KantkFileError` naming the field or tensor.

Bounds (see docs/security.md):

* header: at most :data:`MAX_HEADER_BYTES` (8 MiB; a 100-layer model with symbolic edges
  everywhere needs well under 1 MiB), so parsing its JSON costs time and memory linear in at most
  that much.
* layers: at most :data:`MAX_LAYERS` (1000; pykan-style KANs have 2 to 10), and exactly as many
  as the file has tensors for.
* widths, grid sizes and every other size: each layer's tensors implied by the config must have
  exactly the shapes the header records, and the header's shapes must add up to the file's size
  (safetensors checks this), so nothing larger than the file is ever allocated.
* ``input_columns`` (after pruning inputs): one distinct column number per input, each below
  :data:`kantk.model.MAX_INPUT_COLUMN`; ``column_names``: one distinct printable name per input,
  at most :data:`kantk.model.MAX_COLUMN_NAME_LENGTH` characters each.
* config JSON: nested at most :data:`MAX_CONFIG_DEPTH` deep, names at most
  :data:`MAX_NAME_LENGTH` characters.
* node operations (``[n_sum, n_mult]`` or ``{"sum": n, "mult": m}`` widths, ``mult_arity``): every
  count and arity and the nodes so spelled in all layers together at most :data:`MAX_NODES`
  (checked before any layout is built), and the sub-nodes of one layer too (checked on the layout,
  whose size grows with the nodes, not the sub-nodes).

:func:`save` writes to a temporary file next to the target (``.<name>.<pid>-<random>.kantk-tmp``)
and moves it into place with :func:`os.replace`, so an interrupted save never leaves a half-written
model; the temporary file is removed on any failure, and a temporary file left by a killed process
is removed by the next save to the same path.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open
from safetensors.torch import save as serialize

from kantk._validation import is_int, short_repr
from kantk.layer import BASE_ACTIVATIONS, KANLayer
from kantk.model import KAN, check_column_names, check_input_columns, default_dtype
from kantk.nodes import NodeLayout, parse_widths
from kantk.plugins import BUILTIN_PLUGINS
from kantk.registry import Registry, UnknownComponentError, resolve_registry
from kantk.symbolic.library import resolve_function

FORMAT_KEY = "kantk_format"
CONFIG_KEY = "kantk_config"
FORMAT_VERSION = "1"

#: Largest safetensors header (tensor table and metadata, JSON) :func:`load` reads.
MAX_HEADER_BYTES = 8 * 2**20
#: Most layers a model file may have.
MAX_LAYERS = 1000
#: Deepest nesting of the JSON config (a model's own config is 6 deep).
MAX_CONFIG_DEPTH = 32
#: Longest basis, activation, library, function or node operation name in a config.
MAX_NAME_LENGTH = 200
#: Most nodes in all node layers spelled with node operations (``[n_sum, n_mult]``, dicts), and
#: most sub-nodes of one such layer: the spelling is read before the tensors' shapes bound it.
MAX_NODES = 1_000_000
#: Suffix of the temporary files :func:`save` writes (``.<name>.<pid>-<random>.kantk-tmp``).
TEMP_SUFFIX = ".kantk-tmp"
#: A temporary file of ours older than this (seconds) is stale even if its process id is alive.
STALE_TEMP_AGE = 24 * 3600.0

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
#: Tensors of a layer other than its basis' buffers, with their shape from (out, in).
_EDGE_SHAPES = {"coef": None, "scale_base": (), "scale_sp": (), "mask": ()}
_SYMBOLIC_SHAPES = {"symbolic_mask": (), "symbolic_affine": (4,)}
#: Buffers of the built-in bases with a constraint beyond finiteness: basis name -> buffer -> rule.
_BUILTIN_BUFFER_RULES = {
    "bspline": {"grid": "knots"},
    "chebyshev": {"halfwidth": "positive"},
    "rbf": {"width": "positive"},
}


class KantkFileError(ValueError):
    """A file that is not a readable kantk model."""


class MissingPluginError(KantkFileError, UnknownComponentError):
    """A model file needs a basis, symbolic library or node operation that no registered plugin provides.

    Both a :class:`KantkFileError` (every problem with a file is one) and a
    :class:`kantk.UnknownComponentError` (what building such a model directly raises).
    """


# --------------------------------------------------------------------------------------------- save


def save(model: KAN, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (one safetensors file whose metadata holds the JSON config).

    Only tensors and JSON are written, so loading never executes code. The file is written to a
    temporary file in the same folder and moved into place in one step: an interrupted save
    (an error, ``KeyboardInterrupt``) leaves ``path`` as it was and no temporary file behind.

    Raises:
        TypeError: ``model`` is not a :class:`kantk.KAN`.
        ValueError: A tensor of the model holds NaN or infinity, or is not floating-point
            (:func:`load` would refuse the file); a symbolic edge's function is not the one its
            library's registered name gives (:func:`load` would give another function).
        TypeError: A layer's config (its basis' ``config()``) is not JSON.
        FileNotFoundError: The folder of ``path`` does not exist.
        NotADirectoryError: A parent of ``path`` is a file.
        IsADirectoryError: ``path`` is a folder.
        PermissionError: The folder is not writable.
        OSError: Writing failed otherwise (e.g. the disk is full).

    The file's bytes are built in memory first (a KAN is small; this doubles the memory of its
    tensors for a moment), so nothing is created when serialising fails.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.save expects a kantk.KAN, got {type(model).__name__}")
    for index, layer in enumerate(model.layers):
        problem = layer.functions_reload_problem()
        if problem is not None:
            raise ValueError(f"cannot save the model: layer {index}: {problem}")
    config: dict[str, Any] = model.config()
    config["dtype"] = str(model.dtype).removeprefix("torch.")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for key, value in tensors.items():
        if not value.is_floating_point():  # load refuses it: a file that cannot be read back
            raise ValueError(
                f"cannot save the model: tensor {key!r} has dtype {value.dtype}; kantk model files hold "
                "floating-point tensors only (a basis keeps integer or bool data out of its buffers)"
            )
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"cannot save the model: tensor {key!r} holds NaN or infinite values")
    metadata = {FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: _config_json(config)}

    data = serialize(tensors, metadata=metadata)  # the whole file, before anything is created

    target = os.fspath(path)
    folder, name = _check_target(target)
    _remove_stale_temps(folder, name)
    temp, fd = _create_temp(target, folder, name)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write(handle, data)
            handle.flush()
            _keep_mode(target, handle.fileno())
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the temporary file behind
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(exc, IsADirectoryError):
            raise IsADirectoryError(errno.EISDIR, "cannot save a kantk model over a folder", target) from None
        raise


def _config_json(config: dict[str, Any]) -> str:
    """The model's config as JSON, or a one-line error naming the layer whose part is not JSON
    (a plugin basis' ``config()`` returning an object gave a bare "Object of type ... is not JSON
    serializable")."""
    try:
        return json.dumps(config)
    except (TypeError, ValueError) as exc:
        for i, layer in enumerate(config.get("layers", [])):
            try:
                json.dumps(layer)
            except (TypeError, ValueError):
                basis = layer.get("basis") if isinstance(layer, dict) else None
                raise TypeError(
                    f"cannot save the model: the config of layer {i} (basis {basis!r}) is not JSON ({exc}); "
                    "a basis' config() returns JSON values (numbers, strings, lists, dicts)"
                ) from None
        raise TypeError(f"cannot save the model: its config is not JSON ({exc})") from None


def _write(handle: Any, data: bytes) -> None:
    """Write ``data`` to the open temporary file (a seam for tests that interrupt a save)."""
    handle.write(data)


def _check_target(target: str) -> tuple[str, str]:
    """The folder and file name of ``target``, or the OSError that saving there would meet."""
    folder, name = os.path.split(os.path.abspath(target))
    if not name or os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "cannot save a kantk model over a folder", target)
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(errno.ENOTDIR, "cannot save a kantk model: a parent is a file", folder)
        raise FileNotFoundError(errno.ENOENT, "cannot save a kantk model: no such folder", folder)
    return folder, name


def _create_temp(target: str, folder: str, name: str) -> tuple[str, int]:
    """Create (exclusively, with the default permissions) the temporary file for ``target``.

    Returns:
        Its path and an open file descriptor for writing.
    """
    temp = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError:
        raise PermissionError(
            errno.EACCES, "cannot save a kantk model: the folder is not writable", target
        ) from None
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot save a kantk model: {exc.strerror}", target) from None
    return temp, fd


def _keep_mode(target: str, fd: int) -> None:
    """Give the temporary file the permissions of the file it replaces (a 0600 model file became
    0644 when saved again); a new file keeps the default ones."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return
    if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
        os.fchmod(fd, mode)


def _remove_stale_temps(folder: str, name: str) -> None:
    """Remove our temporary files for ``name`` whose process has gone (or that are a day old)."""
    prefix = f".{name}."
    try:
        entries = [e for e in os.listdir(folder) if e.startswith(prefix) and e.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for entry in entries:
        tag = entry[len(prefix) : -len(TEMP_SUFFIX)]
        pid_text, _, token = tag.partition("-")
        if not (pid_text.isdigit() and len(token) == 8):
            continue  # not one of ours
        full = os.path.join(folder, entry)
        try:
            stale = (
                not _process_alive(int(pid_text)) or time.time() - os.lstat(full).st_mtime > STALE_TEMP_AGE
            )
            if stale:
                os.unlink(full)
        except OSError:
            continue


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # maybe a save running in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


# --------------------------------------------------------------------------------------------- load


def load(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    registry: Registry | None = None,
) -> KAN:
    """Read a model written by :func:`save`, checking everything in it first.

    The header is read and checked before any tensor: the config's types and values, the number
    of layers, and the shape of every tensor the config implies (the layers are built on the
    ``meta`` device for this, allocating nothing). Then the tensors are read and their values
    checked: all finite, masks 0 or 1, B-spline knots non-decreasing, widths positive. Nothing
    else is touched, whatever the file holds.

    Raises:
        FileNotFoundError: No such file.
        KantkFileError: The file is not a kantk model, is damaged, or holds impossible values;
            the message names the field or tensor.
        MissingPluginError: The model needs a basis, symbolic library or node operation no
            registered plugin provides; both a KantkFileError and a
            :class:`kantk.UnknownComponentError`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no kantk model at {path!r}")
    try:
        return _load(path, map_location, registry)
    except MissingPluginError:
        raise
    except UnknownComponentError as exc:
        raise MissingPluginError(f"{path!r} cannot be loaded: {exc}") from None


def _load(path: str, map_location: str | torch.device, registry: Registry | None) -> KAN:
    _check_header_size(path)
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get(FORMAT_KEY) != FORMAT_VERSION or CONFIG_KEY not in metadata:
                raise KantkFileError(
                    f"{path!r} is a safetensors file but not a kantk model (no kantk metadata)"
                )
            table = {}
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                piece = f.get_slice(key)
                table[key] = (piece.get_dtype(), tuple(piece.get_shape()))
            config = _parse_config(metadata[CONFIG_KEY], path)
            registry = resolve_registry(registry)
            spec = _check_config(config, path, registry)
            _check_tensor_table(spec, table, registry, path)
            tensors = {k: f.get_tensor(k) for k in table}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise KantkFileError(
            f"{path!r} is not a kantk model file (safetensors could not read it: {_one_line(exc)})"
        ) from None
    # checked in the config's dtype, the one the model gets: a float64 tensor in a float32 model
    # passed the checks at 1e300 and became inf when loaded (and knots 1e-41 apart became 0 apart)
    tensors = {k: v.to(spec.dtype) for k, v in tensors.items()}
    _check_values(spec, tensors, registry, path)
    try:
        with default_dtype(spec.dtype if spec.dtype in (torch.float32, torch.float64) else torch.float32):
            model = KAN.from_config(config, registry=registry)
        model = model.to(spec.dtype)
        model.load_state_dict(tensors, strict=True)
    except UnknownComponentError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        raise KantkFileError(
            f"{path!r}: the model could not be built from its config: {_one_line(exc)}"
        ) from None
    return model.to(map_location)


class _Spec:
    """What the config says, checked: dtype, widths (node counts), the outputs (sub-nodes) of
    every layer and one entry per layer."""

    def __init__(
        self,
        dtype: torch.dtype,
        widths: list[int],
        layers: list[dict[str, Any]],
        outs: list[int] | None = None,
    ):
        self.dtype = dtype
        self.widths = widths
        self.layers = layers
        self.outs = widths[1:] if outs is None else outs


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_header_size(path: str) -> None:
    """Refuse a header longer than :data:`MAX_HEADER_BYTES` or than the file, from its 8-byte length."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
    except OSError as exc:
        raise KantkFileError(
            f"{path!r} is not a kantk model file (cannot read it: {_one_line(exc)})"
        ) from None
    if len(head) < 8:
        raise KantkFileError(f"{path!r} is not a kantk model file (only {size} bytes)")
    length = int.from_bytes(head, "little")
    if length > size - 8:
        raise KantkFileError(
            f"{path!r} is not a kantk model file (its header length {length} exceeds the file)"
        )
    if length > MAX_HEADER_BYTES:
        raise KantkFileError(
            f"{path!r}: the safetensors header is {length} bytes, more than kantk reads ({MAX_HEADER_BYTES})"
        )


def _parse_config(text: str, path: str) -> dict[str, Any]:
    try:
        config = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise KantkFileError(f"{path!r} has a damaged kantk config: {_one_line(exc)}") from None
    if not isinstance(config, dict):
        raise KantkFileError(f"{path!r}: the kantk config must be a JSON object, got {type(config).__name__}")
    depth = _json_depth(config)
    if depth > MAX_CONFIG_DEPTH:
        raise KantkFileError(
            f"{path!r}: the kantk config is nested {depth} deep (at most {MAX_CONFIG_DEPTH})"
        )
    return config


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
        if deepest > MAX_CONFIG_DEPTH:
            break
    return deepest


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _check_config(config: dict[str, Any], path: str, registry: Registry | None = None) -> _Spec:
    """Types and values of every field :func:`save` writes; sizes are checked against the header later."""

    def bad(field: str, message: str) -> KantkFileError:
        return KantkFileError(f"{path!r}: config field {field} {message}")

    dtype_name = config.get("dtype", "float32")
    if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
        raise bad("dtype", f"must be one of {', '.join(_DTYPES)}, got {short_repr(dtype_name)}")
    widths, layouts = read_widths(config, bad, registry)
    for field, check in (("input_columns", check_input_columns), ("column_names", check_column_names)):
        try:
            check(config.get(field), widths[0])
        except ValueError as exc:
            raise bad(field, str(exc).partition(f"{field} ")[2]) from None
    outs = [w if layout is None else layout.n_sub for w, layout in zip(widths[1:], layouts[1:])]
    layers = config.get("layers")
    if not isinstance(layers, list) or len(layers) != len(widths) - 1:
        raise bad("layers", f"must be a list of {len(widths) - 1} layer objects (one per pair of widths)")
    checked: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        field = f"layers[{i}]"
        n_in, n_out = widths[i], outs[i]
        if not isinstance(layer, dict):
            raise bad(field, f"must be an object, got {type(layer).__name__}")
        basis = layer.get("basis")
        if not _name(basis):
            raise bad(f"{field}.basis", f"must be a basis name, got {short_repr(basis)}")
        kwargs = layer.get("basis_kwargs")
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            raise bad(f"{field}.basis_kwargs", f"must be an object, got {type(kwargs).__name__}")
        activation = layer.get("base_activation", "silu")
        if not isinstance(activation, str) or activation not in BASE_ACTIVATIONS:
            raise bad(
                f"{field}.base_activation",
                f"must be one of {', '.join(BASE_ACTIVATIONS)}, got {short_repr(activation)}",
            )
        for key, expected in (("in_features", n_in), ("out_features", n_out)):
            if key in layer and (not is_int(layer[key]) or layer[key] != expected):
                raise bad(f"{field}.{key}", f"must be {expected} (from widths), got {short_repr(layer[key])}")
        layout = layouts[i + 1]
        nodes = layer.get("nodes")
        if nodes != (None if layout is None else layout.config()):
            want = "absent (sum nodes only)" if layout is None else repr(layout.config())
            raise bad(
                f"{field}.nodes", f"must be {want} (from widths and mult_arity), got {short_repr(nodes)}"
            )
        symbolic = layer.get("symbolic")
        pairs: set[tuple[str, str]] = set()
        if symbolic is not None:
            pairs = _check_symbolic(
                symbolic, n_out, n_in, lambda f, m, i=i: bad(f"layers[{i}].symbolic{f}", m)
            )
        checked.append(
            {
                "basis": basis,
                "basis_kwargs": kwargs,
                "base_activation": activation,
                "symbolic": symbolic is not None,
                "functions": pairs,
            }
        )
    return _Spec(_DTYPES[dtype_name], list(widths), checked, outs)


def read_widths(
    config: Mapping[str, Any], bad: Callable[[str, str], Exception], registry: Registry | None = None
) -> tuple[list[int], list[NodeLayout | None]]:
    """Node counts and layouts of an untrusted ``widths`` spelling and ``mult_arity`` (the fields
    of ``config``), every count bounded before any layout is built (:data:`MAX_LAYERS`,
    :data:`MAX_NODES`): a model file's config, or a checkpoint's hyperparameters.

    Raises:
        What ``bad(field, message)`` returns, for a field that is not as accepted.
    """
    spelled = config.get("widths")
    if not isinstance(spelled, list) or not 2 <= len(spelled) <= MAX_LAYERS + 1:
        raise bad("widths", f"must be a list of 2 to {MAX_LAYERS + 1} ints >= 1, got {short_repr(spelled)}")
    for i, w in enumerate(spelled):
        if is_int(w) and w >= 1:
            continue
        if i == 0 or not _node_entry(w):
            raise bad(
                f"widths[{i}]",
                "must be an int >= 1"
                + ("" if i == 0 else f", [n_sum, n_mult] or a dict of node counts (each <= {MAX_NODES})")
                + f", got {short_repr(w)}",
            )
    return _read_node_layouts(config, spelled, registry, bad)


def _node_entry(entry: Any) -> bool:
    """Whether a widths entry is a well-formed ``[n_sum, n_mult]`` or dict of bounded counts."""
    if isinstance(entry, list):
        counts = entry if len(entry) == 2 else None
    elif isinstance(entry, dict):
        counts = list(entry.values()) if all(_name(k) for k in entry) else None
    else:
        counts = None
    return (
        counts is not None
        and all(is_int(c) and 0 <= c <= MAX_NODES for c in counts)
        and 1 <= sum(counts) <= MAX_NODES
    )


def _read_node_layouts(
    config: Mapping[str, Any], spelled: list[Any], registry: Registry | None, bad: Any
) -> tuple[list[int], list[NodeLayout | None]]:
    """Node counts and layouts from the (checked) widths spelling and ``mult_arity``."""
    arity = config.get("mult_arity", 2)
    if "mult_arity" in config:
        flat = [arity] if is_int(arity) else arity if isinstance(arity, list) else None
        items = (
            None
            if flat is None
            else [a for entry in flat for a in (entry if isinstance(entry, list) else [entry])]
        )
        if items is None or not all(is_int(a) and 1 <= a <= MAX_NODES for a in items):
            raise bad(
                "mult_arity",
                f"must be an int >= 1 or one list of ints per node layer, got {short_repr(arity)}",
            )
        if all(is_int(w) for w in spelled):
            raise bad("mult_arity", "is given but widths has no product nodes")
    total = sum(sum(w.values()) if isinstance(w, dict) else sum(w) for w in spelled if not is_int(w))
    if total > MAX_NODES:
        raise bad("widths", f"spells {total} nodes with node operations, more than {MAX_NODES} in all")
    try:
        widths, layouts = parse_widths(spelled, arity, registry)
    except UnknownComponentError:
        raise
    except (ValueError, TypeError) as exc:
        raise bad("widths", f"(with mult_arity) is not a valid spelling: {_one_line(exc)}") from None
    for i, layout in enumerate(layouts):
        if layout is not None and layout.n_sub > MAX_NODES:
            raise bad(f"widths[{i}]", f"gives {layout.n_sub} sub-nodes, more than {MAX_NODES}")
    return widths, layouts


def _check_symbolic(symbolic: Any, n_out: int, n_in: int, bad: Any) -> set[tuple[str, str]]:
    """Check a layer's ``symbolic`` entry: (out, in) tables of names or null.

    Returns the (library, name) pairs."""
    if not isinstance(symbolic, dict):
        raise bad("", f"must be an object, got {type(symbolic).__name__}")
    tables = {}
    for key in ("functions", "libraries"):
        table = symbolic.get(key)
        if (
            not isinstance(table, list)
            or len(table) != n_out
            or any(not isinstance(row, list) or len(row) != n_in for row in table)
        ):
            raise bad(f".{key}", f"must be a {n_out} x {n_in} nested list")
        tables[key] = table
    pairs = set()
    for q in range(n_out):
        for p in range(n_in):
            function, library = tables["functions"][q][p], tables["libraries"][q][p]
            if function is None and library is None:
                continue
            if not _name(function) or not _name(library):
                raise bad(
                    f".functions[{q}][{p}]",
                    "must be a function name with its library name (or both null), got "
                    f"{short_repr(function)} in {short_repr(library)}",
                )
            pairs.add((library, function))
    return pairs


def _check_tensor_table(
    spec: _Spec, table: Mapping[str, tuple[str, tuple[int, ...]]], registry: Registry, path: str
) -> None:
    """Every tensor the config implies, with the header's shape and a float dtype; nothing else.

    The layers are built on the ``meta`` device to learn their basis' buffers and number of
    functions without allocating them.
    """
    n_layers = len(spec.layers)
    by_layer: list[dict[str, tuple[int, ...]]] = [{} for _ in range(n_layers)]
    for key, (dtype, shape) in table.items():
        head, _, rest = key.partition(".")
        index, _, local = rest.partition(".")
        if (
            head != "layers"
            or not index.isdigit()
            or not local
            or int(index) >= n_layers
            or index != str(int(index))
        ):
            raise KantkFileError(
                f"{path!r}: tensor {key!r} belongs to no layer of the config ({n_layers} layers in config "
                "field layers)"
            )
        if dtype not in _FLOAT_DTYPES:
            raise KantkFileError(
                f"{path!r}: tensor {key!r} has dtype {dtype}; kantk models hold floating-point tensors"
            )
        by_layer[int(index)][local] = shape
    for i, layer in enumerate(spec.layers):
        n_in, n_out = spec.widths[i], spec.outs[i]
        found = by_layer[i]
        field = f"layers[{i}]"
        # sizes first, from the header alone: (out, in) is bounded by the file's size
        expected: dict[str, tuple[int, ...] | None] = {}
        for name, tail in (*_EDGE_SHAPES.items(), *(_SYMBOLIC_SHAPES.items() if layer["symbolic"] else ())):
            expected[name] = None if tail is None else (n_out, n_in, *tail)
        for name, want in expected.items():
            key = f"layers.{i}.{name}"
            if name not in found:
                raise KantkFileError(f"{path!r}: tensor {key!r} is missing (config field {field})")
            if want is not None and found[name] != want:
                raise KantkFileError(
                    f"{path!r}: config fields widths[{i}], widths[{i + 1}] give tensor {key!r} the shape "
                    f"{want}, but the file holds {found[name]}"
                )
        registry.bases.get(layer["basis"])  # names the missing basis plugin, if any
        for library, function in sorted(layer["functions"]):
            try:
                resolve_function(library, function, registry)
            except UnknownComponentError:
                raise
            except (KeyError, ValueError, TypeError) as exc:
                raise KantkFileError(f"{path!r}: config field {field}.symbolic: {_one_line(exc)}") from None
        meta_shapes = _meta_layer_shapes(layer, n_in, n_out, spec.dtype, registry, path, field)
        if meta_shapes is None:
            continue  # this basis cannot be built on the meta device: load_state_dict checks it
        meta_shapes.pop("mask", None)
        for name, shape in meta_shapes.items():
            key = f"layers.{i}.{name}"
            if name not in found:
                raise KantkFileError(
                    f"{path!r}: tensor {key!r} is missing (config field {field}.basis_kwargs)"
                )
            if found[name] != shape:
                raise KantkFileError(
                    f"{path!r}: config field {field}.basis_kwargs {short_repr(layer['basis_kwargs'])} gives "
                    "tensor "
                    f"{key!r} the shape {shape}, but the file holds {found[name]}"
                )
        extra = sorted(set(found) - set(meta_shapes) - set(expected))
        if extra:
            raise KantkFileError(
                f"{path!r}: tensor 'layers.{i}.{extra[0]}' is not part of the layer the config describes "
                f"(config field {field})"
            )


def _meta_layer_shapes(
    layer: Mapping[str, Any],
    n_in: int,
    n_out: int,
    dtype: torch.dtype,
    registry: Registry,
    path: str,
    field: str,
) -> dict[str, tuple[int, ...]] | None:
    """Shapes of the state of the layer the config describes, built on the meta device.

    Returns ``None`` when the basis cannot be built there (e.g. a plugin reads tensor values in its
    constructor); a bad option is a :class:`KantkFileError` naming the field.
    """
    build_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    try:
        with torch.device("meta"), default_dtype(build_dtype):
            built = KANLayer(
                n_in,
                n_out,
                layer["basis"],
                layer["basis_kwargs"],
                layer["base_activation"],
                registry=registry,
            )
    except UnknownComponentError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        AttributeError,
        ArithmeticError,
    ) as exc:
        raise KantkFileError(f"{path!r}: config field {field}.basis_kwargs: {_one_line(exc)}") from None
    except (RuntimeError, NotImplementedError):
        return None
    return {name: tuple(t.shape) for name, t in built.state_dict().items()}


def _check_values(spec: _Spec, tensors: Mapping[str, torch.Tensor], registry: Registry, path: str) -> None:
    """Refuse non-finite tensors, masks other than 0/1 and the built-in bases' impossible buffers
    (:func:`check_tensor_values`, which a Lightning checkpoint's model tensors get too)."""
    check_tensor_values(tensors, [layer["basis"] for layer in spec.layers], registry, repr(path))


def check_tensor_values(
    tensors: Mapping[str, torch.Tensor],
    bases: Sequence[str],
    registry: Registry | None,
    source: str,
    prefix: str = "",
) -> None:
    """Refuse the values no KAN may hold: a tensor that is not floating-point or holds NaN or
    infinity, a ``mask`` or ``symbolic_mask`` other than 0/1, and the built-in bases' impossible
    buffers (B-spline knots that decrease, have zero span or a span too small for the dtype;
    Chebyshev half-widths and RBF widths not > 0 or too small to divide by). A plugin basis'
    buffers are checked for finiteness only.

    The checks of :func:`load` (a ``.kantk`` file) and of the ``kantk`` commands reading a Lightning
    checkpoint (:func:`kantk.cli_models.load_model`).

    Args:
        tensors: A KAN's state, keyed as :meth:`KAN.state_dict` (``layers.<i>.<name>``), in the dtype
            the model has (a value finite in float64 may not be in float32).
        bases: The basis name of each layer.
        registry: Where the bases are looked up (which plugin owns them); ``None``: the default one.
        source: Names the file in messages (``repr(path)``).
        prefix: Put before a key in messages (``"model."``: a checkpoint's state dict key).

    Raises:
        KantkFileError: ``"<source>: tensor '<prefix><key>' <what is wrong>"``.
    """
    registry = resolve_registry(registry)

    def bad(key: str, problem: str) -> KantkFileError:
        return KantkFileError(f"{source}: tensor {prefix + key!r} {problem}")

    for key, value in tensors.items():
        if not value.is_floating_point():
            raise bad(key, f"has dtype {value.dtype}; kantk models hold floating-point tensors")
        if not bool(torch.isfinite(value).all()):
            raise bad(key, "holds NaN or infinite values")
    for i, basis in enumerate(bases):
        for name in ("mask", "symbolic_mask"):
            mask = tensors.get(f"layers.{i}.{name}")
            if mask is not None and not bool(((mask == 0) | (mask == 1)).all()):
                raise bad(f"layers.{i}.{name}", "holds values other than 0 and 1")
        if registry.bases.owner(basis) not in BUILTIN_PLUGINS:
            continue
        for buffer, rule in _BUILTIN_BUFFER_RULES.get(basis, {}).items():
            key = f"layers.{i}.basis.{buffer}"
            buf = tensors.get(key)
            if buf is None:
                continue
            for problem in _rule_problems(rule, buf):
                raise bad(key, problem)


def _rule_problems(rule: str, value: torch.Tensor) -> Iterator[str]:
    v = value.to(torch.float64)
    if rule == "knots":
        if v.dim() != 2 or v.shape[1] < 2:
            yield f"must be a (in_features, knots) table, got shape {tuple(v.shape)}"
        elif not bool((v.diff(dim=-1) >= 0).all()):
            yield "holds knots that decrease (every row must be non-decreasing)"
        elif not bool((v[:, -1] > v[:, 0]).all()):
            yield "holds a knot vector of zero span"
        elif not _finite_in(value.dtype, (v.shape[1] - 1) / (v[:, -1] - v[:, 0])):
            # in the model's own dtype: 1e-44 apart is finite in float64, not in float32
            yield "holds a knot vector whose span is too small"
    elif rule == "positive":
        if not bool((v > 0).all()):
            yield "holds values that are not > 0"
        elif not _finite_in(value.dtype, 1.0 / v):
            yield "holds values too small to divide by"


def _finite_in(dtype: torch.dtype, value: torch.Tensor) -> bool:
    """Whether every entry of ``value`` (float64) is finite once rounded to ``dtype``."""
    return bool(torch.isfinite(value.to(dtype if dtype.is_floating_point else torch.float64)).all())
