"""kantk's Lightning classes for both Lightning packages: ``pytorch_lightning`` and ``lightning``.

Lightning ships one code base as two packages that do not share classes: ``pytorch_lightning``
(standalone) and ``lightning.pytorch`` (inside the unified ``lightning`` package). A Trainer of one
refuses a LightningModule, data module or callback of the other. kantk therefore has one
implementation (the modules ``kantk.lightning.{module,datamodules,callbacks,grid_extension}``,
written against ``pytorch_lightning``) and builds it for the other package the way Lightning
builds its two packages from one source: the same source with its Lightning imports renamed
(:func:`rewrite_imports`). The copies live in :mod:`kantk.lightning.unified`:

==========================  ===========================================
your Trainer                import kantk's classes from
==========================  ===========================================
``pytorch_lightning``       ``kantk.lightning``
``lightning`` (``L``)       ``kantk.lightning.unified``
==========================  ===========================================

Both sets have the same names, arguments, hyperparameters and checkpoints (a checkpoint written
with one loads with the other). Config class paths may use either spelling:
:func:`class_path_for` maps one package's paths onto the other's (used by ``kantk fit``).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from typing import Any

from kantk._validation import check_choice

#: The Lightning packages kantk supports, and the kantk package whose classes subclass theirs.
KANTK_PACKAGE = {"pytorch_lightning": "kantk.lightning", "lightning.pytorch": "kantk.lightning.unified"}
#: Module-path prefixes of each Lightning package (Lightning's own, its fabric, and kantk's copy).
PREFIXES = {
    "pytorch_lightning": ("pytorch_lightning", "lightning_fabric", "kantk.lightning"),
    "lightning.pytorch": ("lightning.pytorch", "lightning.fabric", "kantk.lightning.unified"),
}
#: The implementation modules, in the order they are built (a module after those it imports).
MODULES = ("callbacks", "datamodules", "grid_extension", "module")

_IMPORT_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<kind>from|import)[ "
    r"\t]+(?P<name>pytorch_lightning|lightning_fabric|kantk\.lightning)"
    r"(?P<rest>\b.*)$",
    re.MULTILINE,
)


def rewrite_imports(source: str) -> str:
    """``source`` with its import statements moved from ``pytorch_lightning`` to ``lightning``.

    Only lines that start (after indentation) with ``import`` or ``from`` change:
    ``pytorch_lightning`` becomes ``lightning.pytorch``, ``lightning_fabric`` becomes
    ``lightning.fabric`` and ``kantk.lightning`` becomes ``kantk.lightning.unified``. Line numbers
    stay the same, so tracebacks point into the original file.
    """
    target = {
        "pytorch_lightning": "lightning.pytorch",
        "lightning_fabric": "lightning.fabric",
        "kantk.lightning": "kantk.lightning.unified",
    }

    def replace(match: re.Match[str]) -> str:
        rest = match["rest"]
        if match["name"] == "kantk.lightning" and rest.startswith(".unified"):
            return match[0]
        return f"{match['indent']}{match['kind']} {target[match['name']]}{rest}"

    return _IMPORT_LINE.sub(replace, source)


def build_unified_module(short: str) -> types.ModuleType:
    """Build ``kantk.lightning.unified.<short>`` from ``kantk.lightning.<short>`` (cached in sys.modules).

    Raises:
        ModuleNotFoundError: The ``lightning`` package is not installed.
    """
    name = f"kantk.lightning.unified.{short}"
    if name in sys.modules:
        return sys.modules[name]
    importlib.import_module("lightning.pytorch")  # a clear ModuleNotFoundError when it is missing
    spec = importlib.util.find_spec(f"kantk.lightning.{short}")
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_source"):
        raise ImportError(f"cannot read the source of kantk.lightning.{short}")
    source = spec.loader.get_source(spec.name)
    if source is None:
        raise ImportError(f"kantk.lightning.{short} has no source to build the lightning classes from")
    module = types.ModuleType(name)
    module.__file__ = spec.origin
    module.__package__ = "kantk.lightning.unified"
    module.__spec__ = importlib.util.spec_from_loader(name, loader=None, origin=spec.origin)
    sys.modules[name] = module
    try:
        exec(compile(rewrite_imports(source), spec.origin or name, "exec"), module.__dict__)  # noqa: S102
    except BaseException:
        del sys.modules[name]
        raise
    return module


def lightning_package(obj: Any) -> str | None:
    """The Lightning package an object, class or Trainer belongs to: ``"pytorch_lightning"``,
    ``"lightning.pytorch"``, or ``None`` for neither."""
    cls = obj if isinstance(obj, type) else type(obj)
    for base in cls.__mro__:
        module = base.__module__ or ""
        for package in ("lightning.pytorch", "pytorch_lightning"):
            if module == package or module.startswith(package + "."):
                return package
    return None


def class_path_for(path: str, package: str) -> str:
    """``path`` (a dotted class path) spelled for ``package``; other paths unchanged.

    ``lightning.pytorch.callbacks.EarlyStopping`` becomes ``pytorch_lightning.callbacks.EarlyStopping``
    for ``package="pytorch_lightning"`` (and back), ``lightning.fabric...`` becomes
    ``lightning_fabric...``, and ``kantk.lightning.X`` becomes ``kantk.lightning.unified.X`` for
    ``package="lightning.pytorch"`` (and back).
    """
    if package not in PREFIXES or not isinstance(path, str):
        return path
    (other,) = (p for p in PREFIXES if p != package)
    # the longest prefix first: kantk.lightning.unified before kantk.lightning
    pairs = sorted(zip(PREFIXES[other], PREFIXES[package]), key=lambda pair: -len(pair[0]))
    for source, target in pairs:
        if path == source or path.startswith(source + "."):
            if source == "kantk.lightning" and path.startswith("kantk.lightning.unified"):
                continue  # already the other package's kantk path (handled by its own pair)
            return target + path[len(source) :]
    return path


def kantk_classes(package: str) -> types.ModuleType:
    """The kantk module whose classes work with ``package``'s Trainer (``kantk.lightning`` or
    ``kantk.lightning.unified``).

    Raises:
        ValueError: An unknown package name.
    """
    check_choice("Lightning package", package, KANTK_PACKAGE)
    return importlib.import_module(KANTK_PACKAGE[package])
