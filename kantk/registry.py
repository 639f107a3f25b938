"""Look-ups by name over everything the plugins provide."""

from __future__ import annotations

import inspect
import itertools
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import pluggy

from kantk.plugins import (
    BUILTIN_PLUGINS,
    PLUGIN_FAILURES,
    FailedPlugin,
    PluginError,
    create_plugin_manager,
    describe_exception,
    report_failure,
)
from kantk.types import BasisSpec, NodeOperationSpec, PrunerSpec, RegulariserSpec, SymbolicLibrarySpec

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
                raise PluginError(
                    f"plugin {plugin_name!r} yielded a {kind} record without a name: {record!r}"
                )
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
                f"unknown {self.kind} {name!r}; known {self.kind} names: "
                f"{', '.join(self.names()) or '(none)'}" + self._hint()
            )
        return self._records[name]

    def _hint(self) -> str:
        if self._failed:
            broken = ", ".join(
                f"{f.name} ({f.package or 'unknown package'}): {f.error}" for f in self._failed
            )
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


#: The collection hooks: hook name, the Registry attribute, the human kind, the record type and
#: the record's callable field.
_COLLECTIONS: tuple[tuple[str, str, str, type, str], ...] = (
    ("kantk_bases", "bases", "basis", BasisSpec, "factory"),
    ("kantk_regularisers", "regularisers", "regulariser", RegulariserSpec, "factory"),
    ("kantk_pruners", "pruners", "pruner", PrunerSpec, "factory"),
    ("kantk_symbolic_libraries", "symbolic_libraries", "symbolic library", SymbolicLibrarySpec, "functions"),
    ("kantk_node_operations", "node_operations", "node operation", NodeOperationSpec, "factory"),
)

#: At most this many records from one hook of one plugin (a generator that never ends must not
#: hang kantk).
MAX_RECORDS_PER_HOOK = 10_000


class Registry:
    """Every component the plugins of one :class:`pluggy.PluginManager` provide.

    Third-party plugins (the manager's ``isolated_plugins``, loaded from entry points) are
    isolated: a hook of theirs that raises (or ``SystemExit``), returns something that is not an
    iterable of records of the right type, or yields a record without a name gets the whole plugin
    skipped; a record whose name a built-in or an explicitly given plugin already provides is
    dropped (the built-in wins); between two third-party plugins the first by entry-point name
    wins. Each of these is logged on the ``kantk.plugins`` logger and recorded in
    :attr:`failed_plugins`. The same mistakes in a built-in or an explicitly given plugin raise
    :class:`PluginError`.

    Args:
        plugin_manager: A manager built by :func:`kantk.plugins.create_plugin_manager`; by default
            a new one with the built-ins and (unless switched off) the entry-point plugins.
        failed_plugins: Plugins skipped while building the manager.

    Raises:
        PluginError: A built-in or explicitly given plugin is malformed or clashes with another.
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
        collected = self._collect_all()
        tables = self._file_records(collected)
        self.bases: ComponentTable[BasisSpec] = ComponentTable("basis", tables["bases"], self.failed_plugins)
        self.regularisers: ComponentTable[RegulariserSpec] = ComponentTable(
            "regulariser", tables["regularisers"], self.failed_plugins
        )
        self.pruners: ComponentTable[PrunerSpec] = ComponentTable(
            "pruner", tables["pruners"], self.failed_plugins
        )
        self.symbolic_libraries: ComponentTable[SymbolicLibrarySpec] = ComponentTable(
            "symbolic library", tables["symbolic_libraries"], self.failed_plugins
        )
        self.node_operations: ComponentTable[NodeOperationSpec] = ComponentTable(
            "node operation", tables["node_operations"], self.failed_plugins
        )

    @property
    def _isolated(self) -> dict[str, str | None]:
        return getattr(self.plugin_manager, "isolated_plugins", {})

    def _collect_all(self) -> dict[str, list[tuple[str, Any]]]:
        """Call every implementation of every collection hook, one plugin at a time.

        Returns:
            Attribute name -> ``(plugin_name, record)`` pairs in the hook's implementation order,
            without the records of third-party plugins that failed (those are unregistered).
        """
        out: dict[str, list[tuple[str, Any]]] = {}
        broken: dict[str, str] = {}
        for hook_name, attr, kind, record_type, field in _COLLECTIONS:
            caller = getattr(self.plugin_manager.hook, hook_name, None)
            pairs: list[tuple[str, Any]] = []
            for impl in caller.get_hookimpls() if caller is not None else ():
                plugin_name = impl.plugin_name
                if plugin_name in broken:
                    continue
                isolated = plugin_name in self._isolated
                try:
                    records = _call_collection_hook(impl.function, hook_name, kind, record_type, field)
                except _HookFailure as exc:
                    if not isolated:
                        raise PluginError(
                            f"kantk plugin {plugin_name!r} failed in {hook_name}(): {exc}"
                        ) from (exc.__cause__)
                    broken[plugin_name] = f"{hook_name}() failed: {exc}"
                    continue
                pairs.extend((plugin_name, record) for record in records)
            out[attr] = pairs
        for plugin_name, error in broken.items():
            package = self._isolated.get(plugin_name)
            self.plugin_manager.unregister(name=plugin_name)
            report_failure(self.failed_plugins, plugin_name, package, error, "was skipped")
        return {attr: [(p, r) for p, r in pairs if p not in broken] for attr, pairs in out.items()}

    def _file_records(
        self, collected: Mapping[str, list[tuple[str, Any]]]
    ) -> dict[str, list[tuple[str, Any]]]:
        """Drop third-party records whose names are taken, trusted plugins' records first.

        Trusted plugins (built-ins, explicitly given ones) keep their order and are checked for
        duplicates by :class:`ComponentTable`; third-party records follow in registration order
        (entry-point names sorted), and one whose name is already taken is dropped and reported.
        """
        isolated = self._isolated
        order = {name: i for i, (name, _) in enumerate(self.plugin_manager.list_name_plugin())}
        tables: dict[str, list[tuple[str, Any]]] = {}
        for _, attr, kind, _, _ in _COLLECTIONS:
            pairs = collected[attr]
            trusted = [(p, r) for p, r in pairs if p not in isolated]
            third_party = sorted(
                ((p, r) for p, r in pairs if p in isolated), key=lambda pr: order.get(pr[0], len(order))
            )
            taken = {record.name: plugin_name for plugin_name, record in trusted}
            kept = list(trusted)
            for plugin_name, record in third_party:
                if record.name in taken:
                    owner = taken[record.name]
                    who = "built-in" if owner in BUILTIN_PLUGINS else "plugin"
                    report_failure(
                        self.failed_plugins,
                        plugin_name,
                        isolated[plugin_name],
                        f"its {kind} {record.name!r} clashes with the {who} {owner!r}, which keeps the name",
                        "had a record dropped",
                    )
                    continue
                taken[record.name] = plugin_name
                kept.append((plugin_name, record))
            tables[attr] = kept
        return tables

    @classmethod
    def with_plugins(cls, *plugins: object, load_entry_points: bool = False) -> Registry:
        """A registry of the built-ins plus ``plugins`` (handy in tests and notebooks)."""
        pm, failed = create_plugin_manager(load_entry_points=load_entry_points, extra_plugins=plugins)
        return cls(pm, failed)


class _HookFailure(Exception):
    """A collection hook raised or returned something other than records (message says which)."""


#: What a record's registry name looks like (bases, regularisers, pruners, symbolic libraries, node
#: operations): "--help", "p=1" or a line break in a name broke the command line and listings.
REGISTRY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def _call_collection_hook(
    function: Callable[[], Any], hook_name: str, kind: str, record_type: type[Any], field: str
) -> list[Any]:
    """Call one implementation of a collection hook and check what it gives.

    Raises:
        _HookFailure: It raised (or ``SystemExit``), returned a non-iterable, yielded too many
            records, or a record of the wrong type, without a name or without a callable.
    """
    try:
        result = function()
        records = [] if result is None else list(itertools.islice(iter(result), MAX_RECORDS_PER_HOOK + 1))
    except PLUGIN_FAILURES as exc:
        raise _HookFailure(
            f"{describe_exception(exc)} (a collection hook must return or yield an iterable of records)"
        ) from exc
    if len(records) > MAX_RECORDS_PER_HOOK:
        raise _HookFailure(f"it gave more than {MAX_RECORDS_PER_HOOK} records")
    for record in records:
        if not isinstance(record, record_type):
            name = getattr(record, "name", None) if not isinstance(record, (str, bytes)) else None
            if not isinstance(name, str) or not name:
                raise _HookFailure(f"it yielded a {kind} record without a name: {_short_repr(record)}")
            raise _HookFailure(
                f"it yielded {type(record).__name__} {_short_repr(record)}, not a "
                f"kantk.{record_type.__name__}"
            )
        if not isinstance(record.name, str) or not record.name:
            raise _HookFailure(f"it yielded a {kind} record without a name: {_short_repr(record)}")
        if not REGISTRY_NAME.fullmatch(record.name):
            raise _HookFailure(
                f"its {kind} name {_short_repr(record.name, 80)} is not a registry name (a letter, then "
                "letters, digits, '_', '-' or '.'; at most 64 characters): names are typed in configs "
                "and on the command line"
            )
        if not callable(getattr(record, field, None)):
            raise _HookFailure(f"its {kind} {record.name!r} has a {field} that is not callable")
    return records


def _short_repr(value: object, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a plugin's record may have a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_default: Registry | None = None
_lock = threading.Lock()
#: The thread building the default registry, while it does (its plugins' imports and hooks run then).
_building: int | None = None


def default_registry() -> Registry:
    """The cached registry of built-ins and installed plugins, built on first use.

    Raises:
        RuntimeError: Called while the same thread builds it: a plugin looked a name up
            (``kantk.list_bases()``, ``kantk.KAN(...)``) at import or in a collection hook. The
            plugin is then skipped as failed (it would otherwise wait on the lock for ever).
    """
    global _default, _building
    if _default is None:
        if _building == threading.get_ident():
            raise RuntimeError(
                "a kantk plugin looked a name up (kantk.list_bases(), kantk.KAN(...), ...) while kantk "
                "was loading the plugins; look names up when your code runs, not at import or in a "
                "collection hook"
            )
        with _lock:
            if _default is None:
                _building = threading.get_ident()
                try:
                    _default = Registry()
                finally:
                    _building = None
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


def list_node_operations(registry: Registry | None = None) -> list[str]:
    """Names of every registered node operation (``['mult', 'sum', ...]``)."""
    return resolve_registry(registry).node_operations.names()


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
        ValueError: An unknown keyword, or a required one missing (the factory's TypeError was
            blamed on the plugin).
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return
    # the first `positional` parameters (positional-only ones and *args included) are kantk's
    filled, rest = 0, []
    for p in params:
        if filled < positional and p.kind is p.VAR_POSITIONAL:
            filled = positional  # *args takes every leading value kantk passes
        elif filled < positional and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            filled += 1
        else:
            rest.append(p)
    if not any(p.kind is p.VAR_KEYWORD for p in rest):  # a **kwargs factory accepts anything
        accepted = {p.name for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(set(options) - accepted)
        if unknown:
            listed = [*also_accepted, *sorted(accepted)]
            raise ValueError(
                f"{kind} {name!r} does not accept {', '.join(map(repr, unknown))}; "
                f"accepted {label}: {', '.join(listed) or '(none)'}"
            )
    # an argument without a default left out: the factory's TypeError was blamed on the plugin
    missing = [
        p.name
        for p in rest
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is p.empty
        and p.name not in options
    ]
    if missing:
        raise ValueError(
            f"{kind} {name!r} needs {', '.join(map(repr, missing))} in its {label} (no default), e.g. "
            f"{{{missing[0]!r}: ...}}"
        )
