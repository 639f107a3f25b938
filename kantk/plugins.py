"""The pluggy plugin manager: built-ins and entry-point plugins registered the same way."""
from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Sequence

import pluggy

from kantk import hookspecs

logger = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)
"""Decorator marking a function as a kantk hook implementation."""

ENTRY_POINT_GROUP = "kantk"
DISABLE_AUTOLOAD_ENV = "KANTK_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugin modules, registered by module name exactly like third-party plugins.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "kantk.bases.bspline",
    "kantk.bases.chebyshev",
    "kantk.bases.rbf",
    "kantk.regularisers.l1_entropy",
    "kantk.regularisers.coef_l1",
    "kantk.regularisers.coef_smoothness",
    "kantk.pruners.threshold",
    "kantk.pruners.topk_edges",
    "kantk.pruners.magnitude",
    "kantk.symbolic.libraries",
)


class PluginError(RuntimeError):
    """A plugin is malformed or conflicts with another one."""


@dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be loaded and was skipped.

    Attributes:
        name: Entry-point name (or module name for built-ins).
        package: Distribution that declared it, when known.
        error: The exception text.
    """

    name: str
    package: str | None
    error: str


def autoload_disabled() -> bool:
    """Whether ``KANTK_DISABLE_PLUGIN_AUTOLOAD`` switches entry-point loading off."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def create_plugin_manager(
    *,
    builtins: Sequence[str] = BUILTIN_PLUGINS,
    load_entry_points: bool | None = None,
    extra_plugins: Sequence[object] = (),
) -> tuple[pluggy.PluginManager, list[FailedPlugin]]:
    """Build a plugin manager with kantk's hooks, the built-ins and the installed plugins.

    Args:
        builtins: Module names registered first, through the same call as any plugin.
        load_entry_points: Load the entry-point group ``kantk``; ``None`` means "unless
            ``KANTK_DISABLE_PLUGIN_AUTOLOAD`` is set".
        extra_plugins: Plugin objects (modules, classes or instances) registered last.

    Returns:
        The manager and the plugins that failed to load (each also logged as a warning).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    failed: list[FailedPlugin] = []

    for module_name in builtins:
        _register(pm, importlib.import_module(module_name), module_name)

    if load_entry_points is None:
        load_entry_points = not autoload_disabled()
    if load_entry_points:
        loaded_from: dict[str, str | None] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist is not None else None
            if pm.is_blocked(ep.name):
                continue
            if pm.get_plugin(ep.name) is not None:
                if loaded_from.get(ep.name) == package:
                    continue  # the same distribution found twice on sys.path
                logger.warning(
                    "kantk plugin %r from package %r was skipped: a plugin of that name is already registered",
                    ep.name, package,
                )
                failed.append(FailedPlugin(ep.name, package, "a plugin of that name is already registered"))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break kantk
                logger.warning(
                    "kantk plugin %r from package %r failed to import and was skipped: %s",
                    ep.name, package, exc,
                )
                failed.append(FailedPlugin(ep.name, package, f"{type(exc).__name__}: {exc}"))
                continue
            _register(pm, plugin, ep.name)
            loaded_from[ep.name] = package

    for plugin in extra_plugins:
        _register(pm, plugin, None)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a kantk plugin implements a hook that does not exist: {exc}") from exc
    return pm, failed


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:  # pluggy: same name or same object registered twice
        raise PluginError(f"cannot register kantk plugin {name or plugin!r}: {exc}") from exc
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"kantk plugin {name or plugin!r} is malformed: {exc}") from exc
