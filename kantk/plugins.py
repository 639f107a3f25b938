"""The pluggy plugin manager: built-ins and entry-point plugins registered the same way.

Third-party plugins (those found through the entry-point group ``kantk``) are *isolated*: whatever
goes wrong with one of them (it fails to import, even with ``SystemExit``; it implements a hook
that does not exist or with the wrong arguments; a hook raises or returns something that is not a
list of records; a record clashes with a built-in's name) is logged as a warning on the
``kantk.plugins`` logger, recorded as a :class:`FailedPlugin` and skipped, and everything else
keeps working. Built-ins and plugins passed explicitly (``extra_plugins``,
:meth:`kantk.Registry.with_plugins`) are trusted: a mistake there raises :class:`PluginError`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

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
    "kantk.nodes",
)

#: What a plugin may raise that kantk isolates: any error, and ``SystemExit`` (a plugin that calls
#: ``sys.exit()`` on import must not end the process). ``KeyboardInterrupt`` still propagates.
PLUGIN_FAILURES: tuple[type[BaseException], ...] = (Exception, SystemExit)


class PluginError(RuntimeError):
    """A plugin is malformed or conflicts with another one."""


class PluginOutputError(PluginError, TypeError):
    """A plugin's function returned something kantk cannot use (a basis's features, a symbolic
    function's values, a pruner's decision of the wrong type, shape or dtype); the message names
    the function. A ``TypeError`` too; the command line prints it as one line, not as an internal
    error of kantk's."""


class PluginCallError(PluginError):
    """A third-party plugin's code raised when kantk called it (a regulariser's penalty, a pruner's
    decision); the message names the record and its plugin, and the original is the ``__cause__``.
    A ``ValueError`` or ``TypeError`` comes back as a subclass that is one too (callers catching
    those, as the functions' docs promise, still do); running out of memory is not wrapped."""


class PluginValueError(PluginCallError, ValueError):
    """:class:`PluginCallError` of a ``ValueError`` (a plugin refusing an option's value, say)."""


class PluginTypeError(PluginCallError, TypeError):
    """:class:`PluginCallError` of a ``TypeError``."""


@contextlib.contextmanager
def plugin_call(kind: str, name: str, plugin: str | None) -> Iterator[None]:
    """Run a call into the record ``name`` of ``plugin``; an exception it raises becomes a
    :class:`PluginCallError` naming both (``"regulariser 'l2' of plugin 'mine' raised KeyError:
    ..."``), so that neither Python users nor the command line take it for an error of kantk's own.
    Built-ins (``plugin`` in :data:`BUILTIN_PLUGINS`, or ``None``) raise their own errors."""
    if plugin is None or plugin in BUILTIN_PLUGINS:
        yield
        return
    try:
        yield
    except (PluginError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party plugin may raise anything
        if type(exc).__name__ == "OutOfMemoryError":  # torch's (CUDA): the memory hint applies
            raise
        kind_of = (
            PluginValueError
            if isinstance(exc, ValueError)
            else PluginTypeError
            if isinstance(exc, TypeError)
            else PluginCallError
        )
        raise kind_of(f"{kind} {name!r} of plugin {plugin!r} raised {describe_exception(exc)}") from exc


@dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be loaded (or not completely) and was skipped.

    Attributes:
        name: Entry-point name (or module name for built-ins).
        package: Distribution that declared it, when known.
        error: What failed: the exception text for an import error (``"ImportError: ..."``),
            otherwise a sentence naming the step (a hook, a record, a name clash).
    """

    name: str
    package: str | None
    error: str


class KantkPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that knows which of its plugins came from entry points.

    Attributes:
        isolated_plugins: Entry-point name -> distribution name (``None`` when unknown) of every
            registered third-party plugin, in registration order. :class:`kantk.Registry` skips
            these (instead of raising) when their hooks fail, and drops their records whose names
            a built-in or an explicitly given plugin already provides.
    """

    def __init__(self, project_name: str = hookspecs.PROJECT_NAME):
        super().__init__(project_name)
        self.isolated_plugins: dict[str, str | None] = {}

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        """Unregister a plugin (and forget that it was a third-party one)."""
        removed = super().unregister(plugin, name)
        if name is None and plugin is not None:
            name = next((n for n, p in self.isolated_plugins.items() if p is plugin), None)
        if name is not None:
            self.isolated_plugins.pop(name, None)
        return removed


def autoload_disabled() -> bool:
    """Whether ``KANTK_DISABLE_PLUGIN_AUTOLOAD`` switches entry-point loading off."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line (a plugin's exception text is not trusted to be short)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = "<unprintable>"
    text = " ".join(text.split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_failure(failed: list[FailedPlugin], name: str, package: str | None, error: str, what: str) -> None:
    """Log a third-party plugin problem as a warning and record it in ``failed``.

    Args:
        failed: The list to append the :class:`FailedPlugin` to.
        name: Entry-point name of the plugin.
        package: Its distribution, when known.
        error: What failed (stored in :attr:`FailedPlugin.error`).
        what: The consequence, for the log ("failed to import and was skipped").
    """
    logger.warning("kantk plugin %r from package %r %s: %s", name, package, what, error)
    failed.append(FailedPlugin(name, package, error))


def create_plugin_manager(
    *,
    builtins: Sequence[str] = BUILTIN_PLUGINS,
    load_entry_points: bool | None = None,
    extra_plugins: Sequence[object] = (),
) -> tuple[KantkPluginManager, list[FailedPlugin]]:
    """Build a plugin manager with kantk's hooks, the built-ins and the installed plugins.

    Entry points are loaded in the order of their names (then as found on ``sys.path``), so which
    third-party plugin wins a name clash does not depend on the installation order. A third-party
    plugin that fails to import (any exception, or ``SystemExit``), cannot be registered (its
    entry-point name or module is taken, a hook has arguments its specification lacks) or
    implements a hook that does not exist is logged, recorded and skipped.

    Args:
        builtins: Module names registered first, through the same call as any plugin.
        load_entry_points: Load the entry-point group ``kantk``; ``None`` means "unless
            ``KANTK_DISABLE_PLUGIN_AUTOLOAD`` is set".
        extra_plugins: Plugin objects (modules, classes or instances) registered last.

    Returns:
        The manager and the plugins that failed to load (each also logged as a warning).

    Raises:
        PluginError: A built-in or an extra plugin is malformed (trusted code: fail loudly).
    """
    pm = KantkPluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    failed: list[FailedPlugin] = []

    for module_name in builtins:
        _register(pm, importlib.import_module(module_name), module_name)

    if load_entry_points is None:
        load_entry_points = not autoload_disabled()
    if load_entry_points:
        _load_entry_points(pm, failed)

    for plugin in extra_plugins:
        name = pm.get_name(plugin) if pm.is_registered(plugin) else None
        if name is not None and name in pm.isolated_plugins:
            # also loaded from its entry point (an author's installed plugin): the explicit one
            # wins, as in a clash (pluggy refused the second registration of the module)
            pm.unregister(plugin)
            pm.isolated_plugins.pop(name, None)
        _register(pm, plugin, _instance_name(pm, plugin))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a kantk plugin implements a hook that does not exist: {exc}") from exc
    return pm, failed


def _load_entry_points(pm: KantkPluginManager, failed: list[FailedPlugin]) -> None:
    """Load, register and check every entry point of the group; isolate each failure."""
    try:
        found = list(entry_points(group=ENTRY_POINT_GROUP))
    except PLUGIN_FAILURES as exc:  # broken distribution metadata
        report_failure(
            failed, ENTRY_POINT_GROUP, None, describe_exception(exc), "entry points could not be listed"
        )
        return
    loaded_from: dict[str, str | None] = {}
    for ep in sorted(found, key=lambda e: str(e.name)):  # stable: sys.path order among equal names
        name = str(ep.name)
        try:
            package = ep.dist.name if ep.dist is not None else None
        except PLUGIN_FAILURES:
            package = None
        if pm.is_blocked(name):
            continue
        if pm.get_plugin(name) is not None:
            if loaded_from.get(name) == package:
                continue  # the same distribution found twice on sys.path
            report_failure(
                failed, name, package, "a plugin of that name is already registered", "was skipped"
            )
            continue
        try:
            plugin = ep.load()
        except PLUGIN_FAILURES as exc:  # a broken third-party plugin must not break kantk
            report_failure(failed, name, package, describe_exception(exc), "failed to import and was skipped")
            continue
        if _register_isolated(pm, plugin, name, package, failed):
            loaded_from[name] = package


def _register_isolated(
    pm: KantkPluginManager, plugin: object, name: str, package: str | None, failed: list[FailedPlugin]
) -> bool:
    """Register a third-party plugin, or report why not; returns whether it is registered."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        report_failure(failed, name, package, f"malformed hook: {describe_exception(exc)}", "was skipped")
        return False
    except PLUGIN_FAILURES as exc:  # pluggy's ValueError: the module is registered under another name
        report_failure(failed, name, package, f"cannot register: {describe_exception(exc)}", "was skipped")
        return False
    pm.isolated_plugins[name] = package
    problems = [
        impl.function.__name__ if hasattr(impl.function, "__name__") else repr(impl.function)
        for caller in pm.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin and not impl.optionalhook
    ]
    problems += [
        f"{caller.name} (a collection hook takes no wrapper)"
        for caller in pm.get_hookcallers(plugin) or ()
        if caller.has_spec()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper)
    ]
    if problems:
        pm.unregister(plugin, name)
        known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("kantk_")))
        report_failure(
            failed,
            name,
            package,
            f"implements hooks kantk does not have: {', '.join(problems)} (known hooks: {known})",
            "was skipped",
        )
        return False
    return True


def _instance_name(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """A readable name for a plugin object without ``__name__`` (an instance): pluggy named it by
    ``id()``, so errors and ``owner()`` read ``plugin '139754575448272'``; ``None`` (pluggy's own
    name: the module's or the class's) for the others."""
    if hasattr(plugin, "__name__"):
        return None
    base = f"{type(plugin).__module__}.{type(plugin).__qualname__} instance"
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base} {n}"
    return name


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:  # pluggy: same name or same object registered twice
        # pluggy's message goes on to print every registered plugin: its first line only
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PluginError(f"cannot register kantk plugin {name or plugin!r}: {first[:200]}") from exc
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"kantk plugin {name or plugin!r} is malformed: {exc}") from exc
