"""Symbolic edges of a KAN layer: the state and forward terms behind :func:`kantk.fix_symbolic`.

:class:`SymbolicEdges` is mixed into :class:`kantk.KANLayer`; it keeps the symbolic concern out of
the layer module. Edge p -> q of a layer (output q, input p) computes ``c * f(a * x_p + b) + d``
with trainable ``(a, b, c, d) = symbolic_affine[q, p]`` and ``f`` named by
``symbolic_names[q][p]`` in library ``symbolic_libraries[q][p]``. Such an edge has ``mask = 0``
(numeric branch off, its coefficients kept) and ``symbolic_mask = 1``. Both tensors exist only
once a layer has had a symbolic edge, so a plain layer's parameters and state dict are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kantk.symbolic.library import resolve_function
from kantk.symbolic.records import SymbolicFunction

if TYPE_CHECKING:
    from kantk.registry import Registry


_Table = list[list[str | None]]


class _NameTable:
    """An (out, in) table of names kept as ``_<attribute>``, made (all ``None``) on first use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.private = "_" + name

    def __get__(self, layer: Any, owner: type | None = None) -> _Table:
        if layer is None:  # looked up on the class (docs, introspection)
            return self  # type: ignore[return-value]
        table = getattr(layer, self.private)
        if table is None:
            table = [[None] * layer.in_features for _ in range(layer.out_features)]
            setattr(layer, self.private, table)
        return table

    def __set__(self, layer: Any, table: _Table) -> None:
        setattr(layer, self.private, table)


class SymbolicEdges:
    """Symbolic-edge state and operations of a layer (a mixin for :class:`kantk.KANLayer`).

    The host is an ``nn.Module`` with ``in_features``, ``out_features``, ``coef`` (for dtype and
    device) and a ``mask`` buffer (out, in), and calls :meth:`_init_symbolic` in its constructor.

    Attributes:
        symbolic_names: (out, in) nested list of function names, ``None`` for numeric edges.
        symbolic_libraries: (out, in) nested list of the libraries they come from.
    """

    in_features: int
    out_features: int
    coef: nn.Parameter
    mask: torch.Tensor
    symbolic_mask: torch.Tensor
    symbolic_affine: nn.Parameter

    def _init_symbolic(self) -> None:
        # the (out, in) name tables are made on first use: a layer with no symbolic edge (the usual
        # case, and the large ones) holds no Python list of out * in entries
        self._symbolic_names: list[list[str | None]] | None = None
        self._symbolic_libraries: list[list[str | None]] | None = None
        self._symbolic_functions: dict[tuple[str, str], SymbolicFunction] = {}
        self._symbolic_groups: list[_SymbolicGroup] = []

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a layer pickled whole (torch.save(model)) before the name tables were made on first use
        # holds them under their public names, which are properties now
        for name in ("symbolic_names", "symbolic_libraries"):
            if name in state:
                state["_" + name] = state.pop(name)
        super().__setstate__(state)  # type: ignore[misc]

    #: (out, in) nested list of function names, ``None`` for numeric edges.
    symbolic_names = _NameTable()
    #: (out, in) nested list of the libraries the functions come from.
    symbolic_libraries = _NameTable()

    def symbolic_config(self) -> dict[str, Any] | None:
        """``{"functions": names, "libraries": libraries}`` for the layer config, or ``None``."""
        if not self.has_symbolic:
            return None
        return {
            "functions": [list(row) for row in self.symbolic_names],
            "libraries": [list(row) for row in self.symbolic_libraries],
        }

    @property
    def has_symbolic(self) -> bool:
        """Whether the layer holds symbolic state (``symbolic_mask`` and ``symbolic_affine``)."""
        return "symbolic_mask" in self._buffers  # type: ignore[attr-defined]

    def enable_symbolic(self) -> None:
        """Create ``symbolic_mask`` (zeros) and ``symbolic_affine`` (``(1, 0, 1, 0)`` per edge).

        Idempotent. A layer without symbolic edges carries neither tensor, so its forward, state
        dict and parameter list are unchanged; build optimizers after fixing edges.
        """
        if self.has_symbolic:
            return
        ref = self.coef.detach()
        shape = (self.out_features, self.in_features)
        mask = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
        self.register_buffer("symbolic_mask", mask)  # type: ignore[attr-defined]
        affine = torch.zeros(*shape, 4, dtype=ref.dtype, device=ref.device)
        affine[..., 0] = 1
        affine[..., 2] = 1
        self.symbolic_affine = nn.Parameter(affine)

    def live_edges(self) -> torch.Tensor:
        """(out, in) bool: edges that are numeric and unmasked, or symbolic."""
        live = self.mask != 0
        return live | (self.symbolic_mask != 0) if self.has_symbolic else live

    def symbolic_edges(self) -> list[tuple[int, int]]:
        """``(q, p)`` of every edge with a symbolic function (out index, in index)."""
        if self._symbolic_names is None:
            return []
        return [
            (q, p)
            for q, row in enumerate(self.symbolic_names)
            for p, name in enumerate(row)
            if name is not None
        ]

    def symbolic_function(self, q: int, p: int) -> SymbolicFunction | None:
        """The function record of edge p -> q, or ``None`` for a numeric edge."""
        if self._symbolic_names is None or self._symbolic_libraries is None:
            return None
        name, library = self._symbolic_names[q][p], self._symbolic_libraries[q][p]
        if name is None:
            return None
        assert library is not None  # set together with the name
        return self._symbolic_functions[(library, name)]

    @torch.no_grad()
    def set_symbolic_edge(
        self,
        q: int,
        p: int,
        function: SymbolicFunction,
        library: str,
        affine: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        """Make edge p -> q compute ``c * f(a * x_p + b) + d`` (its numeric branch off).

        Args:
            q, p: Output and input index.
            function: The record ``f``.
            library: Registry name of the library ``f`` can be found in again (saved with the model).
            affine: ``(a, b, c, d)``; ``None`` keeps the edge's current values.
        """
        self.set_symbolic_edges([(q, p, function, library, affine)])

    @torch.no_grad()
    def set_symbolic_edges(
        self,
        edges: Sequence[tuple[int, int, SymbolicFunction, str, Sequence[float] | torch.Tensor | None]],
    ) -> None:
        """:meth:`set_symbolic_edge` for many edges ``(q, p, function, library, affine)`` at once:
        the function groups are rebuilt once (per edge, compiling a formula into wide layers took
        seconds). Every edge is checked before any changes."""
        checked = []
        replaced = {(q, p) for q, p, *_ in edges}
        for q, p, function, library, affine in edges:
            self._check_edge(q, p)
            _check_function(function)
            self._check_same_function(library, function, replaced)
            values = None
            if affine is not None:
                values = torch.as_tensor(affine, dtype=self.coef.dtype, device=self.coef.device)
                if values.shape != (4,):
                    raise ValueError(
                        f"affine must hold the 4 numbers (a, b, c, d), got shape {tuple(values.shape)}"
                    )
                if not bool(torch.isfinite(values).all()):  # 1e100 in a float32 layer: inf
                    dtype = str(self.coef.dtype).removeprefix("torch.")
                    raise ValueError(
                        f"affine (a, b, c, d) of edge {p} -> {q} must be finite numbers in the layer's "
                        f"{dtype} (at most {torch.finfo(self.coef.dtype).max:.3g} in size), got "
                        f"{[float(v) for v in torch.as_tensor(affine, dtype=torch.float64)]}"
                    )
            checked.append((q, p, function, library, values))
        self.enable_symbolic()
        for q, p, function, library, values in checked:
            if values is not None:
                self.symbolic_affine[q, p] = values.to(self.symbolic_affine.dtype)
            self.mask[q, p] = 0
            self.symbolic_mask[q, p] = 1
            self._record_symbolic_edge(q, p, function, library)
        self._rebuild_symbolic_groups()

    @torch.no_grad()
    def forget_removed_symbolic_edges(self) -> None:
        """Drop the function of every symbolic edge whose two branches are both masked (removed by
        pruning or :mod:`kantk.surgery`): it is no longer symbolic, so unfixing it cannot bring a
        removed edge back with its old numeric function."""
        if not self.has_symbolic:
            return
        removed = ((self.mask == 0) & (self.symbolic_mask == 0)).cpu()
        dropped = False
        for q, p in self.symbolic_edges():
            if removed[q, p]:
                self.symbolic_names[q][p] = None
                self.symbolic_libraries[q][p] = None
                dropped = True
        if dropped:
            self._rebuild_symbolic_groups()

    def functions_reload_problem(self, registry: Registry | None = None) -> str | None:
        """What makes a symbolic edge load as another function, or ``None``: an edge stores only
        ``(library, name)``, and a hand-built library reusing a registered library's name
        (``get_library("default").with_functions(my_sin, name="default")``) saved ``my_sin`` as
        ``sin`` and loaded the registered ``sin`` without a word. Libraries the registry does not
        know are left to the loader's own error."""
        from kantk.registry import UnknownComponentError

        for group in self._symbolic_groups:  # one per (library, function) the edges use
            q, p = group.qs[0], group.ps[0]
            library, name = self.symbolic_libraries[q][p], self.symbolic_names[q][p]
            assert library is not None and name is not None  # a symbolic edge has both
            held = group.function
            try:
                registered = resolve_function(library, name, registry)
            except UnknownComponentError:
                continue
            # the values: a ranking cost of its own (complexity) loads as the same function
            if not (registered is held or registered == held or _same_values(registered, held)):
                return (
                    f"edge {p} -> {q} uses a function {name!r} of library {library!r} that is not the "
                    f"registered library {library!r}'s {name!r}, which a saved model would load "
                    "instead; give your library a name of its own (with_functions(..., name=...)) and "
                    "register it as a plugin to save such a model"
                )
        return None

    @torch.no_grad()
    def clear_symbolic_edge(self, q: int, p: int) -> None:
        """Make edge p -> q numeric again (``mask = 1``, ``symbolic_mask = 0``)."""
        self._check_edge(q, p)
        if self.symbolic_names[q][p] is None:
            raise ValueError(f"edge {p} -> {q} is not symbolic")
        self.mask[q, p] = 1
        self.symbolic_mask[q, p] = 0
        self.symbolic_names[q][p] = None
        self.symbolic_libraries[q][p] = None
        self._rebuild_symbolic_groups()

    @torch.no_grad()
    def load_symbolic_config(self, config: Mapping[str, Any], registry: Registry | None = None) -> None:
        """Restore the symbolic edges of :meth:`config`'s ``"symbolic"`` entry.

        Functions are looked up in the registry (``registry=``, or the default one); the edges get
        ``mask = 0``, ``symbolic_mask = 1`` and default affine values until a state dict is loaded.
        Every function is resolved before the layer changes, and the groups are rebuilt once: linear
        in the number of edges (a model file is untrusted input; see docs/security.md).

        Raises:
            ValueError: The entry does not match the layer's shape.
            UnknownComponentError: A library or function nobody registered.
        """
        names: Any = config.get("functions")  # untrusted: checked just below
        libraries: Any = config.get("libraries")
        shape = (self.out_features, self.in_features)
        for key, table in (("functions", names), ("libraries", libraries)):
            if (
                not isinstance(table, list)
                or len(table) != shape[0]
                or any(not isinstance(row, list) or len(row) != shape[1] for row in table)
            ):
                raise ValueError(
                    f"the layer's symbolic {key!r} must be a {shape[0]} x {shape[1]} nested list, got "
                    f"{table!r}"
                )
        resolved: dict[tuple[str, str], SymbolicFunction] = {}
        edges: list[tuple[int, int, SymbolicFunction, str]] = []
        for q in range(shape[0]):
            for p in range(shape[1]):
                name, library = names[q][p], libraries[q][p]
                if name is None:
                    continue
                if (library, name) not in resolved:
                    function = resolve_function(library, name, registry)
                    _check_function(function)
                    resolved[(library, name)] = function
                edges.append((q, p, resolved[(library, name)], library))
        self.enable_symbolic()
        if not edges:
            return
        for q, p, function, library in edges:
            self._record_symbolic_edge(q, p, function, library)
        qs = torch.tensor([edge[0] for edge in edges], dtype=torch.long, device=self.mask.device)
        ps = torch.tensor([edge[1] for edge in edges], dtype=torch.long, device=self.mask.device)
        self.mask[qs, ps] = 0
        self.symbolic_mask[qs.to(self.symbolic_mask.device), ps.to(self.symbolic_mask.device)] = 1
        self._rebuild_symbolic_groups()

    @torch.no_grad()
    def copy_symbolic_from(
        self, source: SymbolicEdges, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
    ) -> None:
        """Take the symbolic state of ``source``'s edges ``rows`` x ``cols`` (e.g. after pruning).

        Copies names, function records, ``symbolic_mask`` and ``symbolic_affine``; ``mask`` and the
        numeric tensors are the caller's. ``rows``/``cols`` are index tensors into ``source``
        (default: all), of lengths ``out_features`` and ``in_features``.
        """
        if not source.has_symbolic:
            return
        rows = torch.arange(source.out_features) if rows is None else torch.as_tensor(rows).long().cpu()
        cols = torch.arange(source.in_features) if cols is None else torch.as_tensor(cols).long().cpu()
        if (len(rows), len(cols)) != (self.out_features, self.in_features):
            raise ValueError(
                f"copy_symbolic_from: {len(rows)} rows x {len(cols)} cols do not fit a layer of "
                f"{self.out_features} x {self.in_features}"
            )
        self.enable_symbolic()
        dev = source.symbolic_mask.device
        sel = (rows.to(dev)[:, None], cols.to(dev)[None, :])
        self.symbolic_mask.copy_(source.symbolic_mask[sel])
        self.symbolic_affine.copy_(source.symbolic_affine[sel])
        self.symbolic_names = [[source.symbolic_names[int(r)][int(c)] for c in cols] for r in rows]
        self.symbolic_libraries = [[source.symbolic_libraries[int(r)][int(c)] for c in cols] for r in rows]
        self._symbolic_functions.update(source._symbolic_functions)
        self._rebuild_symbolic_groups()

    def _check_same_function(
        self, library: str, function: SymbolicFunction, replaced: set[tuple[int, int]]
    ) -> None:
        """Refuse another function under a ``(library, name)`` an edge of this layer keeps using:
        the layer holds one function per key, so fixing x2's edge to a list-built ``"mypow"``
        (z^3) silently turned x1's ``"mypow"`` (z^2) into z^3 too."""
        held = self._symbolic_functions.get((library, function.name))
        if held is None or held is function or held == function or _same_function(held, function):
            return
        for q, p in self.symbolic_edges():
            if (q, p) not in replaced and (self.symbolic_libraries[q][p], self.symbolic_names[q][p]) == (
                library,
                function.name,
            ):
                raise ValueError(
                    f"edge {p} -> {q} already uses another function named {function.name!r} from library "
                    f"{library!r}; give this one another name (a layer holds one function per name)"
                )

    def _record_symbolic_edge(self, q: int, p: int, function: SymbolicFunction, library: str) -> None:
        """Name edge p -> q's function and library (the caller sets the masks and rebuilds the groups)."""
        self.symbolic_names[q][p] = function.name
        self.symbolic_libraries[q][p] = library
        self._symbolic_functions[(library, function.name)] = function

    def _check_edge(self, q: int, p: int) -> None:
        if not (0 <= q < self.out_features and 0 <= p < self.in_features):
            raise IndexError(
                f"edge {p} -> {q} is outside a layer with {self.in_features} inputs and {self.out_features} "
                "outputs"
            )

    def _rebuild_symbolic_groups(self) -> None:
        """Group the symbolic edges by function, so the forward runs each function once."""
        groups: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        for q, p in self.symbolic_edges():
            library, name = self.symbolic_libraries[q][p], self.symbolic_names[q][p]
            assert library is not None and name is not None  # a symbolic edge has both
            qs, ps = groups.setdefault((library, name), ([], []))
            qs.append(q)
            ps.append(p)
        self._symbolic_groups = [
            _SymbolicGroup(self._symbolic_functions[key], tuple(qs), tuple(ps))
            for key, (qs, ps) in groups.items()
        ]

    def _symbolic_terms(self, x2: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per function: output indices q (k,), input indices p (k,) and values (batch, k)."""
        for group in self._symbolic_groups:
            q, p = group.indices(x2.device)
            affine = self.symbolic_affine[q, p]  # (k, 4)
            z = x2[:, p] * affine[:, 0] + affine[:, 1]  # (batch, k)
            values = group.function(z) * affine[:, 2] + affine[:, 3]  # checked, in z's dtype
            yield q, p, values * self.symbolic_mask[q, p]


def _check_function(function: Any) -> None:
    if not isinstance(function, SymbolicFunction):
        raise TypeError(f"function must be a kantk.symbolic.SymbolicFunction, got {type(function).__name__}")


class _SymbolicGroup:
    """The symbolic edges of a layer that share one function (index tensors cached per device)."""

    def __init__(self, function: SymbolicFunction, qs: tuple[int, ...], ps: tuple[int, ...]):
        self.function = function
        self.qs, self.ps = qs, ps
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            self._cache[device] = (
                torch.tensor(self.qs, dtype=torch.long, device=device),
                torch.tensor(self.ps, dtype=torch.long, device=device),
            )
        return self._cache[device]


def _same_function(a: SymbolicFunction, b: SymbolicFunction) -> bool:
    """Whether two records are the same function built twice (a plugin library builds new records,
    with new callables, every time it is resolved): the same name, complexity and sympy form, and
    the same values at a few points. Two list-built ``"mypow"`` of z^2 and z^3 are not."""

    return a.name == b.name and a.complexity == b.complexity and _same_values(a, b)


def _same_values(a: SymbolicFunction, b: SymbolicFunction) -> bool:
    """Whether two records compute the same: the same sympy form and the same torch values at a
    few points (their names and ranking costs aside)."""
    import sympy

    z = sympy.Symbol("z")
    try:
        if sympy.srepr(a.sympy_fn(z)) != sympy.srepr(b.sympy_fn(z)):
            return False
        probe = torch.tensor([-2.3, -0.7, -0.1, 0.0, 0.3, 0.9, 1.7, 4.1], dtype=torch.float64)
        with torch.no_grad():
            va, vb = a.torch_fn(probe), b.torch_fn(probe)
        return bool(torch.equal(torch.as_tensor(va).isnan(), torch.as_tensor(vb).isnan())) and bool(
            torch.allclose(torch.as_tensor(va), torch.as_tensor(vb), rtol=0, atol=0, equal_nan=True)
        )
    except Exception:  # noqa: BLE001 - a function that cannot be compared so is another one
        return False
