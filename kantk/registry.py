"""Look-ups by name over everything the plugins provide."""
from __future__ import annotations

import inspect
import threading
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

import pluggy

from kantk.plugins import FailedPlugin, PluginError, create_plugin_manager

T = TypeVar("T")


class UnknownComponentError(KeyError, ValueError):
    """A name that no registered plugin provides."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ComponentTable(Generic[T]):
    """Records of one kind (bases, regularisers, ...) by registry name.

    Args:
        kind: Human name of the kind, for messages ("basis").
        records: ``(plugin_name, record)`` pairs; each record has a ``name``.

    Raises:
        PluginError: Two plugins (or one plugin twice) register the same name.
    """

    def __init__(self, kind: str, records: Sequence[tuple[str, T]], failed: Sequence[FailedPlugin] = ()):
        self.kind = kind
        self._failed = list(failed)
        self._records: dict[str, T] = {}
        self._owner: dict[str, str] = {}
        for plugin_name, record in records:
            name = getattr(record, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin_name!r} yielded a {kind} record without a name: {record!r}")
            if name in self._records:
                raise PluginError(
                    f"duplicate {kind} name {name!r}: registered by plugin {self._owner[name]!r} "
                    f"and again by plugin {plugin_name!r}"
                )
            self._records[name] = record
            self._owner[name] = plugin_name

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._records)

    def get(self, name: str) -> T:
        """The record called ``name``.

        Raises:
            UnknownComponentError: No plugin provides ``name``; the message lists the known ones.
        """
        if not isinstance(name, str) or name not in self._records:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; known {self.kind} names: {', '.join(self.names()) or '(none)'}"
                + self._hint()
            )
        return self._records[name]

    def _hint(self) -> str:
        if self._failed:
            broken = ", ".join(f"{f.name} ({f.package or 'unknown package'}): {f.error}" for f in self._failed)
            return f". These plugins failed to load and were skipped: {broken}"
        return " (is the plugin that provides it installed?)"

    def owner(self, name: str) -> str:
        """Name of the plugin that registered ``name``."""
        self.get(name)
        return self._owner[name]

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._records)


class Registry:
    """Every component the plugins of one :class:`pluggy.PluginManager` provide.

    Args:
        plugin_manager: A manager built by :func:`kantk.plugins.create_plugin_manager`; by default
            a new one with the built-ins and (unless switched off) the entry-point plugins.
        failed_plugins: Plugins skipped while building the manager.
    """

    def __init__(
        self,
        plugin_manager: pluggy.PluginManager | None = None,
        failed_plugins: Sequence[FailedPlugin] = (),
    ):
        if plugin_manager is None:
            plugin_manager, failed_plugins = create_plugin_manager()
        self.plugin_manager = plugin_manager
        self.failed_plugins: list[FailedPlugin] = list(failed_plugins)
        self.bases = ComponentTable("basis", self._collect("kantk_bases"), self.failed_plugins)
        self.regularisers = ComponentTable("regulariser", self._collect("kantk_regularisers"), self.failed_plugins)
        self.pruners = ComponentTable("pruner", self._collect("kantk_pruners"), self.failed_plugins)
        self.symbolic_libraries = ComponentTable(
            "symbolic library", self._collect("kantk_symbolic_libraries"), self.failed_plugins
        )

    def _collect(self, hook_name: str) -> list[tuple[str, Any]]:
        caller = getattr(self.plugin_manager.hook, hook_name)
        out: list[tuple[str, Any]] = []
        # Call each implementation on its own so a duplicate can be blamed on its plugin.
        for impl in caller.get_hookimpls():  # registration order
            try:
                result = impl.function()
                records = [] if result is None else list(result)
            except Exception as exc:
                raise PluginError(
                    f"kantk plugin {impl.plugin_name!r} failed in {hook_name}(): {type(exc).__name__}: {exc} "
                    "(a collection hook must return or yield an iterable of records)"
                ) from exc
            out.extend((impl.plugin_name, record) for record in records)
        return out

    @classmethod
    def with_plugins(cls, *plugins: object, load_entry_points: bool = False) -> "Registry":
        """A registry of the built-ins plus ``plugins`` (handy in tests and notebooks)."""
        pm, failed = create_plugin_manager(
            load_entry_points=load_entry_points, extra_plugins=plugins
        )
        return cls(pm, failed)


_default: Registry | None = None
_lock = threading.Lock()


def default_registry() -> Registry:
    """The cached registry of built-ins and installed plugins, built on first use."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = Registry()
    return _default


def reset_default_registry() -> None:
    """Forget the cached registry (e.g. after installing a plugin in the same process)."""
    global _default
    with _lock:
        _default = None


def resolve_registry(registry: Registry | None) -> Registry:
    """``registry`` itself, or the default one when ``None``."""
    return default_registry() if registry is None else registry


def list_bases(registry: Registry | None = None) -> list[str]:
    """Names of every registered basis (``['bspline', 'chebyshev', 'rbf', ...]``)."""
    return resolve_registry(registry).bases.names()


def list_regularisers(registry: Registry | None = None) -> list[str]:
    """Names of every registered regulariser."""
    return resolve_registry(registry).regularisers.names()


def list_pruners(registry: Registry | None = None) -> list[str]:
    """Names of every registered pruner."""
    return resolve_registry(registry).pruners.names()


def list_symbolic_libraries(registry: Registry | None = None) -> list[str]:
    """Names of every registered symbolic-function library."""
    return resolve_registry(registry).symbolic_libraries.names()


def check_options(
    kind: str,
    name: str,
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    positional: int = 0,
    label: str = "options",
    also_accepted: Sequence[str] = (),
) -> None:
    """Refuse keyword options a component's factory does not take, naming the ones it does.

    Args:
        kind, name: For the message ("basis", "bspline").
        factory: The registered factory; its signature says what it accepts (a ``**kwargs``
            factory accepts anything).
        options: The keyword arguments about to be passed.
        positional: Leading parameters filled by kantk itself (``in_features`` of a basis).
        label: What the options are called in the message ("basis_kwargs").
        also_accepted: Keys handled before the factory (a regulariser's ``weight``), listed first.

    Raises:
        ValueError: An unknown keyword.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepted = set(names[positional:])
    unknown = sorted(set(options) - accepted)
    if unknown:
        listed = [*also_accepted, *sorted(accepted)]
        raise ValueError(
            f"{kind} {name!r} does not accept {', '.join(map(repr, unknown))}; "
            f"accepted {label}: {', '.join(listed) or '(none)'}"
        )
