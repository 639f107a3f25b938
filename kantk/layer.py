"""One KAN layer: a learnable 1-D function on every edge, summed on the nodes."""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kantk.bases.base import Basis, SupportsGridUpdate
from kantk.registry import Registry, resolve_registry
from kantk.symbolic.library import resolve_function
from kantk.symbolic.records import SymbolicFunction

BASE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "silu": F.silu,
    "identity": lambda x: x,
    "zero": None,
}


class KANLayer(nn.Module):
    """``y_q = sum_p phi_{q,p}(x_p)`` with ``phi(x) = w_b * b(x) + w_s * sum_i c_i B_i(x)``.

    The basis is evaluated once per input and contracted with the stacked coefficients in one
    matmul; a (batch, out, in, n) tensor is never built.

    Args:
        in_features: Number of inputs p.
        out_features: Number of outputs q.
        basis: Registry name of the basis family (``"bspline"``, ``"chebyshev"``, ``"rbf"``, ...).
        basis_kwargs: Keyword arguments for the basis (e.g. ``{"grid_size": 5, "order": 3}``).
        base_activation: Residual function b: ``"silu"`` (pykan's default), ``"identity"`` or
            ``"zero"`` (no base branch: purely local splines, for continual learning).
        noise_scale: Spread of the initial coefficients (pykan's ``noise_scale``).
        scale_base_mu, scale_base_sigma: Initial ``w_b = mu / sqrt(in) + sigma * U(-1, 1) / sqrt(in)``.
        scale_sp: Initial ``w_s = scale_sp / sqrt(in)``.
        generator: Random generator for the initialisation (``None``: torch's global one).
        registry: Where to look the basis up (``None``: the default registry).

    Parameters:
        coef: (out, in, n) basis coefficients c.
        scale_base, scale_sp: (out, in) w_b and w_s.
        symbolic_affine: (out, in, 4) ``(a, b, c, d)`` of symbolic edges; only once the layer has
            symbolic edges (see :meth:`enable_symbolic`).

    Buffers:
        mask: (out, in) 1 for live numeric edges, 0 for pruned ones and for symbolic ones.
        symbolic_mask: (out, in) 1 for symbolic edges (with ``symbolic_affine``).

    Symbolic edges (:func:`kantk.fix_symbolic`): edge p -> q computes ``c * f(a * x_p + b) + d``
    instead of its numeric function, with trainable ``(a, b, c, d) = symbolic_affine[q, p]`` and
    ``f`` named by ``symbolic_names[q][p]`` in library ``symbolic_libraries[q][p]`` (plain
    (out, in) nested lists, ``None`` for numeric edges; they go in :meth:`config`). Such an edge
    has ``mask = 0`` (numeric branch off) and ``symbolic_mask = 1``; an edge is live when either
    is 1 (:meth:`live_edges`). Code that rebuilds a layer with fewer nodes slices every tensor in
    :data:`EDGE_TENSORS` on its first two dimensions and the nested lists alike
    (:meth:`copy_symbolic_from` does the symbolic part).
    """

    #: The layer's own per-edge tensors, (out, in, ...), when present (the symbolic ones only
    #: after :meth:`enable_symbolic`).
    EDGE_TENSORS = ("coef", "scale_base", "scale_sp", "mask", "symbolic_mask", "symbolic_affine")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: str = "bspline",
        basis_kwargs: Mapping[str, Any] | None = None,
        base_activation: str = "silu",
        *,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        generator: torch.Generator | None = None,
        registry: Registry | None = None,
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if base_activation not in BASE_ACTIVATIONS:
            raise ValueError(
                f"unknown base_activation {base_activation!r}; accepted: {', '.join(BASE_ACTIVATIONS)}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.basis_name = basis
        self.base_activation = base_activation
        self.basis: Basis = build_basis(basis, in_features, basis_kwargs, registry)
        n = self.basis.num_functions
        dtype = torch.get_default_dtype()

        coef = (torch.rand(out_features, in_features, n, generator=generator, dtype=dtype) - 0.5)
        self.coef = nn.Parameter(coef * (noise_scale / n))
        sb = scale_base_mu + scale_base_sigma * (
            torch.rand(out_features, in_features, generator=generator, dtype=dtype) * 2 - 1
        )
        self.scale_base = nn.Parameter(sb / math.sqrt(in_features))
        self.scale_sp = nn.Parameter(torch.full((out_features, in_features), scale_sp / math.sqrt(in_features), dtype=dtype))
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=dtype))
        self.symbolic_names: list[list[str | None]] = [[None] * in_features for _ in range(out_features)]
        self.symbolic_libraries: list[list[str | None]] = [[None] * in_features for _ in range(out_features)]
        self._symbolic_functions: dict[tuple[str, str], SymbolicFunction] = {}
        self._symbolic_groups: list[_SymbolicGroup] = []

    @property
    def num_functions(self) -> int:
        """Basis functions per edge."""
        return self.basis.num_functions

    def spline_weight(self) -> torch.Tensor:
        """Effective per-edge basis weights ``w_s * c * mask``, (out, in, n)."""
        return self.coef * (self.scale_sp * self.mask).unsqueeze(-1)

    def base_weight(self) -> torch.Tensor:
        """Effective per-edge base weights ``w_b * mask``, (out, in)."""
        return self.scale_base * self.mask

    def _base(self, x: torch.Tensor) -> torch.Tensor | None:
        fn = BASE_ACTIVATIONS[self.base_activation]
        return None if fn is None else fn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., in). Returns: (..., out)."""
        x2 = self._flatten_input(x)  # (batch, in)
        base = self._base(x2)
        y = self.basis.linear(
            x2, self.spline_weight(), base, None if base is None else self.base_weight()
        )  # (batch, out)
        if self._symbolic_groups:  # symbolic edges: one evaluation per function
            for q, p, values in self._symbolic_terms(x2):
                y = y.index_add(1, q, values)  # (batch, out) += (batch, k) on columns q
        return y.reshape(*x.shape[:-1], self.out_features)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Every edge's output ``phi_{q,p}(x_p)``, for analysis and plots (not for training).

        Args:
            x: (batch, in).

        Returns:
            (batch, out, in), numeric plus symbolic part; pruned edges are zero.
        """
        x2 = self._flatten_input(x)
        acts = self.numeric_activations(x2)
        if self._symbolic_groups:
            batch = x2.shape[0]
            flat = acts.reshape(batch, -1)  # (batch, out * in)
            for q, p, values in self._symbolic_terms(x2):
                flat = flat.index_add(1, q * self.in_features + p, values)
            acts = flat.reshape(batch, self.out_features, self.in_features)
        return acts

    def numeric_activations(self, x: torch.Tensor, masked: bool = True) -> torch.Tensor:
        """Every edge's numeric function ``w_b b(x_p) + w_s sum_i c_i B_i(x_p)``.

        Args:
            x: (batch, in).
            masked: Multiply by ``mask`` (pruned and symbolic edges give 0). ``False`` gives the
                numeric function of every edge, e.g. the target to fit a symbolic edge to.

        Returns:
            (batch, out, in).
        """
        x2 = self._flatten_input(x)
        feats = self.basis(x2)  # (batch, in, n)
        mask = self.mask if masked else torch.ones_like(self.mask)
        acts = torch.einsum("bpi,qpi->bqp", feats, self.coef * (self.scale_sp * mask).unsqueeze(-1))
        base = self._base(x2)
        if base is not None:
            acts = acts + base.unsqueeze(1) * (self.scale_base * mask)  # (batch, 1, in) * (out, in)
        return acts

    # --- symbolic edges --------------------------------------------------------------------------

    @property
    def has_symbolic(self) -> bool:
        """Whether the layer holds symbolic state (``symbolic_mask`` and ``symbolic_affine``)."""
        return "symbolic_mask" in self._buffers

    def enable_symbolic(self) -> None:
        """Create ``symbolic_mask`` (zeros) and ``symbolic_affine`` (``(1, 0, 1, 0)`` per edge).

        Idempotent. A layer without symbolic edges carries neither tensor, so its forward, state
        dict and parameter list are unchanged; build optimizers after fixing edges.
        """
        if self.has_symbolic:
            return
        ref = self.coef.detach()
        shape = (self.out_features, self.in_features)
        self.register_buffer("symbolic_mask", torch.zeros(shape, dtype=ref.dtype, device=ref.device))
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
        return [(q, p) for q, row in enumerate(self.symbolic_names) for p, name in enumerate(row) if name is not None]

    def symbolic_function(self, q: int, p: int) -> SymbolicFunction | None:
        """The function record of edge p -> q, or ``None`` for a numeric edge."""
        name, library = self.symbolic_names[q][p], self.symbolic_libraries[q][p]
        return None if name is None else self._symbolic_functions[(library, name)]

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
        self._check_edge(q, p)
        if not isinstance(function, SymbolicFunction):
            raise TypeError(f"function must be a kantk.symbolic.SymbolicFunction, got {type(function).__name__}")
        self.enable_symbolic()
        if affine is not None:
            values = torch.as_tensor(affine, dtype=self.symbolic_affine.dtype, device=self.symbolic_affine.device)
            if values.shape != (4,):
                raise ValueError(f"affine must hold the 4 numbers (a, b, c, d), got shape {tuple(values.shape)}")
            self.symbolic_affine[q, p] = values
        self.mask[q, p] = 0
        self.symbolic_mask[q, p] = 1
        self.symbolic_names[q][p] = function.name
        self.symbolic_libraries[q][p] = library
        self._symbolic_functions[(library, function.name)] = function
        self._rebuild_symbolic_groups()

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

        Raises:
            ValueError: The entry does not match the layer's shape.
            UnknownComponentError: A library or function nobody registered.
        """
        names, libraries = config.get("functions"), config.get("libraries")
        shape = (self.out_features, self.in_features)
        for key, table in (("functions", names), ("libraries", libraries)):
            if not isinstance(table, list) or len(table) != shape[0] or any(
                not isinstance(row, list) or len(row) != shape[1] for row in table
            ):
                raise ValueError(f"the layer's symbolic {key!r} must be a {shape[0]} x {shape[1]} nested list, got {table!r}")
        self.enable_symbolic()
        resolved: dict[tuple[str, str], SymbolicFunction] = {}
        for q in range(shape[0]):
            for p in range(shape[1]):
                name, library = names[q][p], libraries[q][p]
                if name is None:
                    continue
                if (library, name) not in resolved:
                    resolved[(library, name)] = resolve_function(library, name, registry)
                self.set_symbolic_edge(q, p, resolved[(library, name)], library)

    @torch.no_grad()
    def copy_symbolic_from(
        self, source: "KANLayer", rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
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

    def _check_edge(self, q: int, p: int) -> None:
        if not (0 <= q < self.out_features and 0 <= p < self.in_features):
            raise IndexError(
                f"edge {p} -> {q} is outside a layer with {self.in_features} inputs and {self.out_features} outputs"
            )

    def _rebuild_symbolic_groups(self) -> None:
        """Group the symbolic edges by function, so the forward runs each function once."""
        groups: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        for q, p in self.symbolic_edges():
            key = (self.symbolic_libraries[q][p], self.symbolic_names[q][p])
            qs, ps = groups.setdefault(key, ([], []))
            qs.append(q)
            ps.append(p)
        self._symbolic_groups = [
            _SymbolicGroup(self._symbolic_functions[key], tuple(qs), tuple(ps)) for key, (qs, ps) in groups.items()
        ]

    def _symbolic_terms(self, x2: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per function: output indices q (k,), input indices p (k,) and values (batch, k)."""
        for group in self._symbolic_groups:
            q, p = group.indices(x2.device)
            affine = self.symbolic_affine[q, p]  # (k, 4)
            z = x2[:, p] * affine[:, 0] + affine[:, 1]  # (batch, k)
            values = group.function.torch_fn(z) * affine[:, 2] + affine[:, 3]
            yield q, p, values * self.symbolic_mask[q, p]

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02) -> bool:
        """Move the basis grid to the samples ``x`` (batch, in), keeping every edge's function.

        Returns:
            True if the grid moved; False (with a warning) for a basis without the capability.
        """
        x2 = self._flatten_input(x)
        if not isinstance(self.basis, SupportsGridUpdate):
            warnings.warn(
                f"basis {self.basis_name!r} cannot update its grid from data; layer left unchanged",
                stacklevel=3,
            )
            return False
        if not torch.isfinite(x2).all():
            raise ValueError("update_grid needs finite samples; the input holds NaN or Inf")
        new_coef = self.basis.update_grid(x2, self.coef.detach(), grid_eps=grid_eps)
        self.coef.copy_(new_coef)
        return True

    def _flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"KANLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"KANLayer expects input of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        if x.dtype != self.coef.dtype:
            raise TypeError(
                f"input dtype {x.dtype} does not match the layer's {self.coef.dtype}; "
                f"convert the input (x.to({self.coef.dtype})) or the model (model.to({x.dtype}))"
            )
        return x.reshape(-1, self.in_features)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description sufficient to rebuild the layer's structure.

        A layer with symbolic state adds ``"symbolic": {"functions": [[name | None, ...], ...],
        "libraries": [[library | None, ...], ...]}`` ((out, in) nested lists).
        """
        config: dict[str, Any] = {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "basis": self.basis_name,
            "basis_kwargs": self.basis.config(),
            "base_activation": self.base_activation,
        }
        if self.has_symbolic:
            config["symbolic"] = {
                "functions": [list(row) for row in self.symbolic_names],
                "libraries": [list(row) for row in self.symbolic_libraries],
            }
        return config

    def extra_repr(self) -> str:
        n_symbolic = len(self.symbolic_edges())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"basis={self.basis_name!r}, base_activation={self.base_activation!r}"
            + (f", symbolic_edges={n_symbolic}" if n_symbolic else "")
        )


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


def build_basis(
    name: str, in_features: int, basis_kwargs: Mapping[str, Any] | None, registry: Registry | None = None
) -> Basis:
    """Build the registered basis ``name`` for ``in_features`` inputs.

    Raises:
        UnknownComponentError: No plugin provides ``name`` (the message lists the known ones).
        ValueError: ``basis_kwargs`` holds a keyword the basis does not accept, or a bad value.
    """
    if not isinstance(name, str):
        raise TypeError(f"basis must be a registry name (str), got {type(name).__name__}")
    spec = resolve_registry(registry).bases.get(name)
    kwargs = dict(basis_kwargs or {})
    accepted = _accepted_kwargs(spec.factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"basis {name!r} does not accept {', '.join(map(repr, unknown))}; "
                f"accepted basis_kwargs: {', '.join(sorted(accepted)) or '(none)'}"
            )
    basis = spec.factory(in_features, **kwargs)
    if not isinstance(basis, Basis):
        raise TypeError(f"basis plugin {name!r} built a {type(basis).__name__}, not a kantk.bases.Basis")
    return basis


def _accepted_kwargs(factory: Callable[..., Any]) -> set[str] | None:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return set(names[1:])  # the first is in_features
