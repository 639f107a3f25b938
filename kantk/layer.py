"""One KAN layer: a learnable 1-D function on every edge, summed on the nodes."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kantk._validation import check_int, is_int
from kantk.bases.base import (
    BASE_ACTIVATIONS,
    Basis,
    EdgeWeights,
    MaskedEdgeWeights,
    SupportsGridUpdate,
    checked_features,
    layer_edges,
)
from kantk.nodes import NodeLayout
from kantk.registry import Registry, check_options, resolve_registry
from kantk.symbolic.edges import SymbolicEdges


class KANLayer(SymbolicEdges, nn.Module):
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
        nodes: How the outputs combine into nodes (:class:`kantk.nodes.NodeLayout`; KAN 2.0's
            multiplication nodes): ``out_features`` must be its ``n_sub``, and the layer then
            returns ``nodes.n_nodes`` values. ``None`` (default): every output is a sum node.

    With ``nodes``, ``out_features`` counts *sub-nodes*: the rows of every per-edge tensor and
    the ``q`` of edge ``p -> q``; the node operations (a product of ``arity`` sub-nodes, ...)
    turn them into ``out_nodes`` outputs after the edge sum.

    Parameters:
        coef: (out, in, n) basis coefficients c.
        scale_base, scale_sp: (out, in) w_b and w_s.
        symbolic_affine: (out, in, 4) ``(a, b, c, d)`` of symbolic edges; only once the layer has
            symbolic edges (see :meth:`enable_symbolic`).

    Buffers:
        mask: (out, in) 1 for live numeric edges, 0 for pruned ones and for symbolic ones.
        symbolic_mask: (out, in) 1 for symbolic edges (with ``symbolic_affine``).

    Symbolic edges (:func:`kantk.fix_symbolic`, state and methods in
    :class:`kantk.symbolic.edges.SymbolicEdges`): edge p -> q computes ``c * f(a * x_p + b) + d``
    instead of its numeric function, with trainable ``(a, b, c, d) = symbolic_affine[q, p]`` and
    ``f`` named by ``symbolic_names[q][p]`` in library ``symbolic_libraries[q][p]`` (plain
    (out, in) nested lists, ``None`` for numeric edges; they go in :meth:`config`). Such an edge
    has ``mask = 0`` (numeric branch off) and ``symbolic_mask = 1``; an edge is live when either
    is 1 (:meth:`live_edges`). Code that rebuilds a layer with fewer nodes slices every tensor in
    :data:`EDGE_TENSORS` on its first two dimensions and calls :meth:`copy_symbolic_from` for the
    names and functions.
    """

    #: The layer's own per-edge tensors, (out, in, ...), when present (the symbolic ones only
    #: after :meth:`enable_symbolic`).
    EDGE_TENSORS = ("coef", "scale_base", "scale_sp", "mask", "symbolic_mask", "symbolic_affine")

    mask: torch.Tensor  # the buffer, declared for type checkers (nn.Module.__getattr__ is untyped)

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
        nodes: NodeLayout | None = None,
    ):
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("out_features", out_features, 1)
        if base_activation not in BASE_ACTIVATIONS:
            raise ValueError(
                f"unknown base_activation {base_activation!r}; accepted: {', '.join(BASE_ACTIVATIONS)}"
            )
        if nodes is not None:
            if not isinstance(nodes, NodeLayout):
                raise TypeError(f"nodes must be a kantk.nodes.NodeLayout or None, got {type(nodes).__name__}")
            if nodes.n_sub != out_features:
                raise ValueError(
                    f"nodes takes {nodes.n_sub} sub-nodes but the layer has out_features={out_features}"
                )
            if nodes.trivial:
                nodes = None
        self.in_features = in_features
        self.out_features = out_features
        #: The node step after the edge sum, or None (plain sum nodes).
        self.nodes: NodeLayout | None = nodes
        self.basis_name = basis
        self.base_activation = base_activation
        self.basis: Basis = build_basis(basis, in_features, basis_kwargs, registry)
        n = self.basis.num_functions
        dtype = torch.get_default_dtype()

        coef = torch.rand(out_features, in_features, n, generator=generator, dtype=dtype) - 0.5
        self.coef = nn.Parameter(coef * (noise_scale / n))
        sb = scale_base_mu + scale_base_sigma * (
            torch.rand(out_features, in_features, generator=generator, dtype=dtype) * 2 - 1
        )
        self.scale_base = nn.Parameter(sb / math.sqrt(in_features))
        self.scale_sp = nn.Parameter(
            torch.full((out_features, in_features), scale_sp / math.sqrt(in_features), dtype=dtype)
        )
        self.register_buffer("mask", torch.ones(out_features, in_features, dtype=dtype))
        self._init_symbolic()  # symbolic edges (kantk.symbolic.edges): none yet

    @property
    def out_nodes(self) -> int:
        """Width of the layer's output: nodes after the node operations (``out_features``
        without them)."""
        return self.out_features if self.nodes is None else self.nodes.n_nodes

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

    def edge_weights(self) -> EdgeWeights:
        """The record of this layer's edge weights that the basis computes the edge sum with."""
        has_base = BASE_ACTIVATIONS[self.base_activation] is not None
        if type(self).base_weight is not KANLayer.base_weight:
            # a subclass that defines its own base weights: the record carries them as products
            # (kernels then multiply by them instead of applying the mask themselves)
            return MaskedEdgeWeights(
                self.coef,
                self.scale_sp * self.mask,
                self.base_weight() if has_base else None,
                self.base_activation,
            )
        return MaskedEdgeWeights.of(
            self.coef, self.scale_sp, self.scale_base if has_base else None, self.mask, self.base_activation
        )

    def _base(self, x: torch.Tensor) -> torch.Tensor | None:
        fn = BASE_ACTIVATIONS[self.base_activation]
        return None if fn is None else fn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., in). Returns: (..., out_nodes)."""
        x2 = self._flatten_input(x)  # (batch, in)
        y = self._edge_sum(x2)  # (batch, out)
        if self.nodes is not None:
            y = self.nodes(y)  # (batch, out) sub-nodes -> (batch, out_nodes) nodes
        return y.reshape(*x.shape[:-1], self.out_nodes)

    def subnode_values(self, x: torch.Tensor) -> torch.Tensor:
        """The edge sums ``sum_p phi_{q,p}(x_p)`` before any node operation.

        Args:
            x: (batch, in).

        Returns:
            (batch, out_features); the layer's output itself when every node is a sum node.
        """
        return self._edge_sum(self._flatten_input(x))

    def _edge_sum(self, x2: torch.Tensor) -> torch.Tensor:
        y = layer_edges(self.basis, x2, self.edge_weights())  # (batch, out)
        if self._symbolic_groups:  # symbolic edges: one evaluation per function
            for q, _p, values in self._symbolic_terms(x2):
                # under autocast a basis' matmul may give bf16/fp16 sums; the symbolic terms are
                # in the layer's dtype: add in the wider of the two
                y = _promoted(y, values)
                y = y.index_add(1, q, values.to(y.dtype))
        return y

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
            flat = acts.flatten(1)  # (batch, out * in)
            for q, p, values in self._symbolic_terms(x2):
                wide = _promoted(flat, values)
                flat = wide.index_add(1, q * self.in_features + p, values.to(wide.dtype))
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
        feats = checked_features(self.basis, x2, self.basis(x2))  # (batch, in, n)
        mask = self.mask if masked else torch.ones_like(self.mask)
        weight = _ContiguousGrad.apply(self.coef * (self.scale_sp * mask).unsqueeze(-1))
        acts = torch.einsum("bpi,qpi->bqp", feats, weight)
        base = self._base(x2)
        if base is not None:
            acts = acts + base.unsqueeze(1) * (self.scale_base * mask)  # (batch, 1, in) * (out, in)
        return acts

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
        if x2.shape[0] == 0:
            raise ValueError("update_grid needs at least one sample; got an empty batch")
        if not torch.isfinite(x2).all():
            raise ValueError("update_grid needs finite samples; the input holds NaN or Inf")
        saved = snapshot_tensors(self.basis)
        new_coef = self.basis.update_grid(x2, self.coef.detach(), grid_eps=grid_eps)
        if not isinstance(new_coef, torch.Tensor) or new_coef.shape != self.coef.shape:
            restore_tensors(saved)  # a plugin's update_grid moved its grid already: put it back
            got = tuple(new_coef.shape) if isinstance(new_coef, torch.Tensor) else type(new_coef).__name__
            raise ValueError(
                f"basis {self.basis_name!r}: update_grid returned coefficients of shape {got}; the layer's "
                f"are {tuple(self.coef.shape)} (out, in, num_functions); the layer was left unchanged"
            )
        self.coef.copy_(new_coef)
        return True

    def _flatten_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"KANLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"KANLayer expects input of shape (..., {self.in_features}), got {tuple(x.shape)}"
            )
        if x.dtype != self.coef.dtype and _autocast_input(x):
            x = x.to(self.coef.dtype)  # under autocast: the layer computes in its own dtype
        if x.dtype != self.coef.dtype:
            model = f" or the model (model.to({x.dtype}))" if x.dtype.is_floating_point else ""
            raise TypeError(
                f"input dtype {x.dtype} does not match the layer's {self.coef.dtype}; "
                f"convert the input (x.to({self.coef.dtype})){model}"
            )
        return x.reshape(-1, self.in_features)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description sufficient to rebuild the layer's structure.

        A layer with node operations adds ``"nodes"`` (:meth:`kantk.nodes.NodeLayout.config`).
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
        if self.nodes is not None:
            config["nodes"] = self.nodes.config()
        symbolic = self.symbolic_config()
        if symbolic is not None:
            config["symbolic"] = symbolic
        return config

    def extra_repr(self) -> str:
        n_symbolic = len(self.symbolic_edges())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"basis={self.basis_name!r}, base_activation={self.base_activation!r}"
            + (f", nodes={self.nodes.config()}" if self.nodes is not None else "")
            + (f", symbolic_edges={n_symbolic}" if n_symbolic else "")
        )


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous. The einsum's backward returns the
    weight's gradient as a permuted view; through ``coef * scale`` that layout reached
    ``coef.grad``, whose strides then differed from the parameter's (DDP warned "Grad strides do
    not match bucket view strides" and copied it at every step)."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        grad = grads[0]
        # exact row-major strides: contiguous() keeps any stride on a size-1 dim, DDP compares them
        if grad.stride() != _row_major_strides(grad.shape):
            grad = grad.clone(memory_format=torch.contiguous_format)
        return grad


def _row_major_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def snapshot_tensors(module: nn.Module) -> list[tuple[nn.Module, str, str, torch.Tensor, torch.Tensor]]:
    """Every parameter and buffer of ``module`` and its children, with a copy of its value, for
    :func:`restore_tensors` (an operation that fails half-way puts everything back)."""
    return [
        (owner, kind, name, tensor, tensor.detach().clone())
        for owner in module.modules()
        for kind in ("_parameters", "_buffers")
        for name, tensor in getattr(owner, kind).items()
        if tensor is not None
    ]


@torch.no_grad()
def restore_tensors(snapshot: list[tuple[nn.Module, str, str, torch.Tensor, torch.Tensor]]) -> None:
    """Put back what :func:`snapshot_tensors` saw: the same tensor objects (a plugin that rebound a
    buffer gets the old one back), with their old values."""
    for owner, kind, name, tensor, old in snapshot:
        getattr(owner, kind)[name] = tensor
        tensor.copy_(old)


def _autocast_input(x: torch.Tensor) -> bool:
    """Whether ``x`` is of the dtype autocast produces on its device, with autocast on."""
    device = x.device.type
    return (
        x.dtype in (torch.bfloat16, torch.float16)
        and device in ("cpu", "cuda")
        and torch.is_autocast_enabled(device)
        and torch.get_autocast_dtype(device) == x.dtype
    )


def _promoted(y: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``y`` in the wider dtype of ``y`` and ``values`` (itself when they agree)."""
    dtype = torch.promote_types(y.dtype, values.dtype)
    return y if y.dtype == dtype else y.to(dtype)


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
    check_options("basis", name, spec.factory, kwargs, positional=1, label="basis_kwargs")
    basis = spec.factory(in_features, **kwargs)
    if not isinstance(basis, Basis):
        raise TypeError(f"basis plugin {name!r} built a {type(basis).__name__}, not a kantk.bases.Basis")
    n = basis.num_functions
    if isinstance(n, numbers.Integral) and not isinstance(n, bool):
        n = int(n)  # a numpy int works as before
    if not is_int(n) or n < 1:
        hint = " (a method: decorate num_functions with @property)" if callable(n) else ""
        raise TypeError(
            f"basis plugin {name!r}: num_functions must be an int >= 1 (functions per input), got "
            f"{type(n).__name__ if callable(n) else repr(n)}{hint}"
        )
    if getattr(basis, "in_features", None) != in_features:
        raise ValueError(
            f"basis plugin {name!r} was built for {in_features} inputs but its in_features is "
            f"{getattr(basis, 'in_features', None)!r} (pass in_features on to Basis.__init__)"
        )
    return basis
