"""Symbolic libraries: ordered, immutable collections of :class:`SymbolicFunction` records.

A library is what the fitting functions take: a registry name (``"default"``, ``"minimal"``, a
plugin's), a :class:`SymbolicLibrary`, or a list mixing function names of the ``default`` library
and records. Composing or extending never touches global state; it returns a new library::

    lib = kantk.symbolic.get_library("minimal").with_functions(my_sinc, name="minimal+sinc")
    lib = kantk.symbolic.get_library("default").subset(["x", "x^2", "sin", "exp"])
    lib = kantk.symbolic.compose_libraries("minimal", "my_plugin_library")

Every function remembers the library it can be looked up in again (its *source*); a symbolic
edge stores that name, so a saved model finds its functions through the registry on load. A
function added by hand has the new library's name as source: to save and load such a model,
register the library as a plugin (hook ``kantk_symbolic_libraries``) and pass ``registry=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from kantk.plugins import PluginError
from kantk.registry import Registry, UnknownComponentError, resolve_registry
from kantk.symbolic.records import SymbolicFunction

#: The library a plain list of function names is taken from.
DEFAULT_LIBRARY = "default"


class SymbolicLibrary(Mapping[str, SymbolicFunction]):
    """An ordered, read-only mapping ``name -> SymbolicFunction``.

    Args:
        name: Name of the library (a registry name for registered ones).
        functions: The records, in ranking tie-break order; names must be unique.
        sources: ``function name -> registry name`` it can be found under again; functions not
            listed have ``name`` as source.

    Raises:
        TypeError: An element is not a :class:`SymbolicFunction`.
        ValueError: Two functions share a name.
    """

    def __init__(
        self, name: str, functions: Iterable[SymbolicFunction], sources: Mapping[str, str] | None = None
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a symbolic library needs a non-empty name, got {name!r}")
        self.name = name
        self._functions: dict[str, SymbolicFunction] = {}
        for fn in functions:
            if not isinstance(fn, SymbolicFunction):
                raise TypeError(
                    f"symbolic library {name!r} holds a {type(fn).__name__}, not a "
                    "kantk.symbolic.SymbolicFunction"
                )
            if fn.name in self._functions:
                raise ValueError(f"symbolic library {name!r} has two functions named {fn.name!r}")
            self._functions[fn.name] = fn
        sources = dict(sources or {})
        self._sources = {n: sources.get(n, name) for n in self._functions}

    def __getitem__(self, key: str) -> SymbolicFunction:
        try:
            return self._functions[key]
        except (KeyError, TypeError):
            raise UnknownComponentError(
                f"symbolic library {self.name!r} has no function {key!r}; its functions: "
                f"{', '.join(self._functions)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    def __repr__(self) -> str:
        return f"SymbolicLibrary({self.name!r}, [{', '.join(self._functions)}])"

    @property
    def functions(self) -> list[SymbolicFunction]:
        """The records, in order."""
        return list(self._functions.values())

    def source(self, function_name: str) -> str:
        """Registry name of the library that provides ``function_name``."""
        self[function_name]
        return self._sources[function_name]

    def subset(self, names: Sequence[str]) -> SymbolicLibrary:
        """The functions ``names`` (in that order), keeping this library's name and sources."""
        if isinstance(names, str):
            names = [names]
        return SymbolicLibrary(self.name, [self[n] for n in names], self._sources)

    def with_functions(self, *functions: SymbolicFunction, name: str | None = None) -> SymbolicLibrary:
        """A new library: these functions plus ``functions`` (appended; a same name replaces).

        Args:
            *functions: New records.
            name: Name of the new library (default: this name + ``"+custom"``); it is the
                source recorded for the new functions.
        """
        new_name = name or f"{self.name}+custom"
        merged = dict(self._functions)
        sources = dict(self._sources)
        for fn in functions:
            if not isinstance(fn, SymbolicFunction):
                raise TypeError(f"with_functions expects SymbolicFunction records, got {type(fn).__name__}")
            merged[fn.name] = fn
            sources[fn.name] = new_name
        return SymbolicLibrary(new_name, merged.values(), sources)


LibraryArg = str | SymbolicLibrary | Sequence[str | SymbolicFunction]


def get_library(name: str, registry: Registry | None = None) -> SymbolicLibrary:
    """The registered library ``name`` (``kantk.list_symbolic_libraries()`` lists them).

    Raises:
        UnknownComponentError: No plugin provides ``name`` (the message lists the known ones).
        PluginError: The plugin's ``functions()`` raised, or returned something that is not a
            non-empty list of unique :class:`SymbolicFunction` records.
    """
    from kantk.plugins import PLUGIN_FAILURES

    spec = resolve_registry(registry).symbolic_libraries.get(name)
    try:
        records = list(spec.functions())
    except PLUGIN_FAILURES as exc:  # e.g. an optional dependency it imports lazily is missing
        raise PluginError(
            f"symbolic library {name!r} failed to build its functions: {type(exc).__name__}: {exc}"
        ) from exc
    if not records:
        raise PluginError(f"symbolic library {name!r} has no functions; a library lists at least one")
    try:
        return SymbolicLibrary(name, records)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"symbolic library {name!r} is malformed: {exc}") from exc


def resolve_library(library: LibraryArg, registry: Registry | None = None) -> SymbolicLibrary:
    """Turn any accepted ``library=`` argument into a :class:`SymbolicLibrary`.

    Args:
        library: A registry name; a :class:`SymbolicLibrary`; or a list of function names of the
            ``default`` library and/or :class:`SymbolicFunction` records (pykan's ``lib=[...]``).
        registry: Where registry names are looked up (``None``: the default registry).

    Raises:
        UnknownComponentError: An unknown library or function name (lists the known ones).
        TypeError: Anything else.
    """
    if isinstance(library, SymbolicLibrary):
        return library
    if isinstance(library, str):
        return get_library(library, registry)
    if isinstance(library, Sequence) and not isinstance(library, (bytes, bytearray)):
        items = list(library)
        if not items:
            raise ValueError("the symbolic library list is empty; name at least one function")
        default: SymbolicLibrary | None = None
        records: list[SymbolicFunction] = []
        sources: dict[str, str] = {}
        for item in items:
            if isinstance(item, str):
                default = default or get_library(DEFAULT_LIBRARY, registry)
                records.append(default[item])
                sources[item] = DEFAULT_LIBRARY
            elif isinstance(item, SymbolicFunction):
                records.append(item)
            else:
                raise TypeError(
                    f"a symbolic library list holds names or SymbolicFunction records, got {item!r}"
                )
        name = DEFAULT_LIBRARY if all(isinstance(i, str) for i in items) else "custom"
        return SymbolicLibrary(name, records, sources)
    raise TypeError(
        "library must be a registry name (kantk.list_symbolic_libraries()), a kantk.symbolic.SymbolicLibrary "
        f"or a list of function names / SymbolicFunction records, got {type(library).__name__}"
    )


def compose_libraries(
    *libraries: LibraryArg, name: str | None = None, registry: Registry | None = None
) -> SymbolicLibrary:
    """The union of several libraries, in order (a later function of the same name wins).

    Each function keeps its source, so composing registered libraries stays save/load-able.
    """
    if not libraries:
        raise ValueError("compose_libraries needs at least one library")
    resolved = [resolve_library(lib, registry) for lib in libraries]
    merged: dict[str, SymbolicFunction] = {}
    sources: dict[str, str] = {}
    for lib in resolved:
        for fn_name, fn in lib.items():
            merged[fn_name] = fn
            sources[fn_name] = lib.source(fn_name)
    return SymbolicLibrary(name or "+".join(lib.name for lib in resolved), merged.values(), sources)


def resolve_function(library: str, function: str, registry: Registry | None = None) -> SymbolicFunction:
    """The function ``function`` of the registered library ``library`` (for loading models).

    Raises:
        UnknownComponentError: The library is not registered, or has no such function; the
            message says how to make it available.
    """
    try:
        lib = get_library(library, registry)
    except UnknownComponentError as exc:
        raise UnknownComponentError(
            f"a symbolic edge uses function {function!r} of library {library!r}, which no registered plugin "
            f"provides ({exc}); register that library as a plugin (hook kantk_symbolic_libraries) and pass "
            "registry=kantk.Registry.with_plugins(...)"
        ) from None
    return lib[function]
