"""Save and load models as safetensors (weights) plus a JSON config: no pickle anywhere."""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file

from kantk.model import KAN, default_dtype
from kantk.registry import Registry, resolve_registry

FORMAT_KEY = "kantk_format"
CONFIG_KEY = "kantk_config"
FORMAT_VERSION = "1"

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


class KantkFileError(ValueError):
    """A file that is not a readable kantk model."""


def save(model: KAN, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (one safetensors file whose metadata holds the JSON config).

    Only tensors and JSON are written, so loading never executes code.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.save expects a kantk.KAN, got {type(model).__name__}")
    config: dict[str, Any] = model.config()
    config["dtype"] = str(model.layers[0].coef.dtype).removeprefix("torch.")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {FORMAT_KEY: FORMAT_VERSION, CONFIG_KEY: json.dumps(config)}
    save_file(tensors, os.fspath(path), metadata=metadata)


def load(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu", registry: Registry | None = None) -> KAN:
    """Read a model written by :func:`save`.

    Raises:
        FileNotFoundError: No such file.
        KantkFileError: The file is not a kantk model (or is damaged).
        UnknownComponentError: The model needs a basis no installed plugin provides.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no kantk model at {path!r}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise KantkFileError(f"{path!r} is not a kantk model file (safetensors could not read it: {exc})") from None
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION or CONFIG_KEY not in metadata:
        raise KantkFileError(f"{path!r} is a safetensors file but not a kantk model (no kantk metadata)")
    try:
        config = json.loads(metadata[CONFIG_KEY])
    except json.JSONDecodeError as exc:
        raise KantkFileError(f"{path!r} has a damaged kantk config: {exc}") from None
    registry = resolve_registry(registry)
    for layer in config.get("layers", []):
        registry.bases.get(layer.get("basis"))  # names the missing basis plugin, if any
    dtype = _DTYPES.get(config.get("dtype", "float32"))
    if dtype is None:
        raise KantkFileError(f"{path!r} names an unsupported dtype {config.get('dtype')!r}")
    with default_dtype(dtype if dtype in (torch.float32, torch.float64) else torch.float32):
        model = KAN.from_config(config, registry=registry)
    model = model.to(dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise KantkFileError(f"{path!r}: weights do not match its config: {exc}") from None
    return model.to(map_location)
