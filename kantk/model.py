"""A KAN: a stack of KAN layers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast, overload

import torch
from torch import nn

from kantk._pykan import KAN_NAMES, pykan_names
from kantk._validation import check_seed, formula_names, is_int, is_number, short_repr
from kantk.layer import KANLayer, restore_tensors, snapshot_tensors
from kantk.nodes import DEFAULT_ARITY, NodeLayout, arity_spelling, parse_widths, widths_spelling
from kantk.registry import Registry, UnknownComponentError

BasisArg = str | Sequence[str]
KwargsArg = Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None


class KANLayers(nn.ModuleList):
    """A KAN's layers: an ``nn.ModuleList`` whose items are :class:`KANLayer` (typed as such)."""

    def __iter__(self) -> Iterator[KANLayer]:
        return cast(Iterator[KANLayer], super().__iter__())

    @overload
    def __getitem__(self, idx: slice) -> KANLayers: ...

    @overload
    def __getitem__(self, idx: int) -> KANLayer: ...

    def __getitem__(self, idx: int | slice) -> KANLayer | KANLayers:
        return cast("KANLayer | KANLayers", super().__getitem__(idx))


class KAN(nn.Module):
    """A Kolmogorov-Arnold Network ``KAN([2, 5, 1])``, with product nodes ``KAN([2, [0, 1], 1])``.

    Args:
        widths: Nodes per layer, inputs first; at least two entries. An entry is an int (that
            many sum nodes), pykan's ``[n_sum, n_mult]`` (sum nodes, then multiplication nodes:
            KAN 2.0's MultKAN) or a dict of node counts by node operation
            (``{"sum": 2, "mult": 1}``, plugins' operations too; docs/node-operations.md).
        basis: One registry name for every layer, or a list with one per layer (mixed bases).
        basis_kwargs: One dict for every layer, or a list with one (or ``None``) per layer.
        base_activation: ``"silu"``, ``"identity"`` or ``"zero"``, or a list with one per layer.
        seed: Seeds the initialisation (without touching torch's global random state).
        registry: Where to look bases and node operations up (``None``: the default registry).
        mult_arity: Sub-nodes per product node (pykan's argument): an int for every one
            (default 2), or one list per node layer (inputs first) with one arity per product
            node of that layer.
        **layer_kwargs: Passed to every :class:`KANLayer` (``noise_scale``, ``scale_base_mu``, ...).

    Input (..., widths[0]) -> output (..., widths[-1]); leading dimensions work like ``nn.Linear``.

    Attributes:
        widths: Node counts per node layer, inputs first (``[2, 1, 1]`` for ``[2, [0, 1], 1]``).
        layers: The :class:`KANLayer` s. Layer ``l`` feeding product nodes has one output per
            *sub-node* (``layer.out_features``) and its ``layer.nodes`` (a
            :class:`kantk.nodes.NodeLayout`) combines them into ``widths[l + 1]`` nodes.
        input_columns: ``None`` (input ``i`` is column ``i`` of the data), or, once
            ``kantk.prune(..., prune_inputs=True)`` removed an input, the 0-based columns of the
            data the model was pruned from that its inputs are, in order (pykan's ``input_id``;
            :meth:`select_inputs` takes them from data rows). :meth:`config`,
            ``kantk.save`` and ``kantk.load`` keep it; the default input names follow it
            (:meth:`input_names`) and ``kantk`` commands given a ``--data`` file take these columns.
        column_names: ``None``, or the header names of the data columns the inputs are, one per
            input, in order: recorded when the model is trained on a dataset whose header names
            its inputs (:func:`kantk.load_csv`, ``CSVDataModule``, ``kantk discover --data``) and
            kept through pruning. ``kantk`` commands given a ``--data`` file with a header take
            the inputs from the columns of these names (a file without a header, by position).
    """

    #: See the class docstring (class defaults, so models made without ``__init__`` have them too).
    input_columns: list[int] | None = None
    column_names: list[str] | None = None

    @pykan_names(KAN_NAMES)
    def __init__(
        self,
        widths: Sequence[Any],
        basis: BasisArg = "bspline",
        basis_kwargs: KwargsArg = None,
        base_activation: str | Sequence[str] = "silu",
        seed: int | None = None,
        registry: Registry | None = None,
        mult_arity: int | Sequence[Any] = DEFAULT_ARITY,
        **layer_kwargs: Any,
    ):
        super().__init__()
        widths, layouts = parse_widths(widths, mult_arity, registry)
        n_layers = len(widths) - 1
        bases = _per_layer(basis, n_layers, "basis", str)
        kwargs_list = _per_layer(basis_kwargs, n_layers, "basis_kwargs", (Mapping, type(None)))
        activations = _per_layer(base_activation, n_layers, "base_activation", str)
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(check_seed("seed", seed))
        self.widths: list[int] = list(widths)
        self.layers = KANLayers(
            KANLayer(
                widths[i],
                _subnodes(widths[i + 1], layouts[i + 1]),
                bases[i],
                kwargs_list[i],
                activations[i],
                generator=generator,
                registry=registry,
                nodes=layouts[i + 1],
                **layer_kwargs,
            )
            for i in range(n_layers)
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters (every layer has the same: ``model.double()`` converts all)."""
        return self.layers[0].coef.dtype

    @property
    def device(self) -> torch.device:
        """The device the parameters are on (one for the whole model)."""
        return self.layers[0].coef.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., widths[0]). Returns: (..., widths[-1])."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"KAN expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.widths[0]:
            hint = select_inputs_hint(self, x.shape[-1]) if x.dim() else ""
            raise ValueError(
                f"KAN{self.widths} expects input of shape (..., {self.widths[0]}), got {tuple(x.shape)}{hint}"
            )
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, grid_eps: float = 0.02) -> KAN:
        """Adapt every layer's grid to the data, keeping the function on it (pykan's update_grid).

        Layer by layer: propagate ``x`` (batch, widths[0]) through the already-updated layers,
        move the layer's grid to its inputs (``grid_eps`` * uniform + (1 - grid_eps) * quantiles)
        and refit its coefficients by least squares. Bases without the capability are skipped
        with a warning.

        Returns:
            self.

        Raises:
            ValueError: ``x`` is not (batch, widths[0]) with batch >= 1, ``grid_eps`` is not a
                number in [0, 1], or the samples or a hidden layer's values on them are not
                finite; nothing is changed.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"update_grid expects a torch.Tensor of samples, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.widths[0]:
            raise ValueError(
                f"update_grid expects samples of shape (batch, {self.widths[0]}), got {tuple(x.shape)}"
                + select_inputs_hint(self, x.shape[-1])
            )
        if x.shape[0] == 0:
            raise ValueError(
                "update_grid needs at least one sample to place the grid on, got an empty batch "
                f"{tuple(x.shape)}"
            )
        if not is_number(grid_eps) or not 0 <= grid_eps <= 1:
            raise ValueError(f"grid_eps must be a number in [0, 1], got {grid_eps!r}")
        if not torch.isfinite(x).all():  # said here for every basis (some check in their own words)
            raise ValueError(
                "update_grid: the samples are not all finite (NaN or Inf); the model was left unchanged"
            )
        # a later layer can fail after earlier ones moved (a hidden value that is not finite, a
        # fit that raises): every tensor gets its old value back, so nothing is changed
        saved = snapshot_tensors(self)
        try:
            for i, layer in enumerate(self.layers):
                if i and not torch.isfinite(x).all():  # the samples themselves: checked above
                    raise ValueError(
                        f"update_grid: the input of layer {i} (the output of layer {i - 1}) holds NaN "
                        "or Inf for these samples; the model was left unchanged"
                    )
                layer.update_grid(x, grid_eps=grid_eps)
                x = layer(x)  # node values, after the layer's node operations
        except BaseException:
            restore_tensors(saved)
            raise
        return self

    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer (then the output) for a batch ``x`` (batch, widths[0]).

        These are node values, ``(batch, widths[l])``: after the node operations of product
        nodes. The sub-node values of layer ``l`` are ``model.layers[l].subnode_values(xs[l])``.
        """
        xs = [x]
        for layer in self.layers:
            xs.append(layer(xs[-1]))
        return xs

    @property
    def node_layouts(self) -> list[NodeLayout | None]:
        """One entry per node layer, inputs first: its :class:`kantk.nodes.NodeLayout`, or
        ``None`` where every node is a sum node (always for the inputs)."""
        return [None, *(layer.nodes for layer in self.layers)]

    @property
    def has_node_operations(self) -> bool:
        """Whether some node is not a plain sum node (e.g. a product node)."""
        return any(layer.nodes is not None for layer in self.layers)

    @property
    def width_spec(self) -> list[Any]:
        """The widths as spelled to build this model: ints, ``[n_sum, n_mult]`` or dicts."""
        return widths_spelling(self.widths, self.node_layouts)

    @property
    def mult_arity(self) -> int | list[list[int]]:
        """The ``mult_arity`` that rebuilds this model (an int, or one list per node layer)."""
        return arity_spelling(self.node_layouts)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable structure, enough to rebuild the model with :meth:`from_config`.

        ``widths`` is spelled as to the constructor (:attr:`width_spec`); ``mult_arity`` is
        added when a product node's arity is not the default 2.
        """
        config: dict[str, Any] = {"widths": self.width_spec}
        if self.has_node_operations and self.mult_arity != DEFAULT_ARITY:
            config["mult_arity"] = self.mult_arity
        config["layers"] = [layer.config() for layer in self.layers]
        if self.input_columns is not None:
            config["input_columns"] = list(self.input_columns)
        if self.column_names is not None:
            config["column_names"] = list(self.column_names)
        return config

    def select_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The model's inputs from data ``x`` (..., columns) with the columns it was made for:
        ``x[..., input_columns]`` after pruning inputs, else ``x`` itself (its first ``widths[0]``
        columns when it has more)."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise TypeError(f"select_inputs expects a tensor of data rows, got {type(x).__name__}")
        columns = self.input_columns
        need = self.widths[0] if columns is None else max(columns) + 1
        if x.shape[-1] < need:
            which = "" if columns is None else f" (its inputs are data columns {[c + 1 for c in columns]})"
            raise ValueError(
                f"KAN{self.widths} needs data with at least {need} columns{which}, got {x.shape[-1]}"
            )
        if columns is None:
            return x if x.shape[-1] == need else x[..., :need]
        return x[..., columns]

    def input_names(self, prefix: str = "x") -> list[str]:
        """Default names of the inputs (of formulas, diagrams and plots): the data's header names
        the model records (:attr:`column_names`) when each can stand in a formula (``T_0``,
        ``alpha``; not ``temp (K)``); else ``x1, x2, ...``, or after pruning inputs the names of
        the columns they came from (``x1, x3`` when the second of three inputs was pruned). The
        same model was ``x1, x2`` to one command and ``T_0, alpha`` to another."""
        names = formula_names(self.column_names)
        if names is not None:
            return names
        columns = self.input_columns if self.input_columns is not None else range(self.widths[0])
        return [f"{prefix}{c + 1}" for c in columns]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], registry: Registry | None = None) -> KAN:
        """Rebuild a model (fresh parameters) from :meth:`config`'s output."""
        try:
            widths = list(config["widths"])
            layers = list(config["layers"])
            if len(layers) != len(widths) - 1:
                raise ValueError(f"{len(layers)} layer entries for widths {widths}")
            model = cls(
                widths,
                basis=[layer["basis"] for layer in layers],
                basis_kwargs=[layer.get("basis_kwargs") or {} for layer in layers],
                base_activation=[layer.get("base_activation", "silu") for layer in layers],
                mult_arity=config.get("mult_arity", DEFAULT_ARITY),
                registry=registry,
            )
        except UnknownComponentError:  # a basis no plugin provides: named, not "not a valid config"
            raise
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a valid KAN config ({exc!r}): {config!r}") from None
        for l, (layer, layer_config) in enumerate(zip(model.layers, layers)):
            nodes = layer_config.get("nodes")
            built = None if layer.nodes is None else layer.nodes.config()
            if nodes is not None and nodes != built:
                raise ValueError(f"layer {l}'s nodes {nodes!r} do not match widths {widths!r} ({built!r})")
        for layer, layer_config in zip(model.layers, layers):  # symbolic edges (kantk.fix_symbolic)
            if layer_config.get("symbolic") is not None:
                layer.load_symbolic_config(layer_config["symbolic"], registry=registry)
        model.input_columns = check_input_columns(config.get("input_columns"), model.widths[0])
        model.column_names = check_column_names(config.get("column_names"), model.widths[0])
        return model

    def extra_repr(self) -> str:
        if self.has_node_operations:
            return f"widths={self.width_spec}"
        return f"widths={self.widths}"


def _subnodes(width: int, layout: NodeLayout | None) -> int:
    """Outputs of the layer that feeds a node layer: its sub-nodes."""
    return width if layout is None else layout.n_sub


def _per_layer(value: Any, n_layers: int, name: str, kind: Any) -> list[Any]:
    if isinstance(value, kind):
        return [value] * n_layers
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = list(value)
        if len(items) != n_layers:
            raise ValueError(f"{name} has {len(items)} entries but the model has {n_layers} layers")
        for item in items:
            if not isinstance(item, kind):
                raise TypeError(f"bad {name} entry {item!r}")
        return items
    raise TypeError(f"{name} must be a single value or a list with one per layer, got {value!r}")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Temporarily set torch's default floating dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


#: Most numbers (parameters and buffers) in a model built from untrusted arguments: a config's
#: widths and basis options (``KANModule``) or a formula (:func:`kantk.formula_to_kan`). 2**28 is
#: 1 GiB in float32, far above any KAN in the literature; larger models are built in Python.
MAX_MODEL_NUMBERS = 2**28


def planned_numbers(widths: Any, symbolic: bool = False, **kwargs: Any) -> int | None:
    """How many numbers (parameters and buffers) ``KAN(widths, **kwargs)`` would hold, counted on
    the ``meta`` device (shapes only: no memory, no time), with every layer's symbolic state when
    ``symbolic``; ``None`` when a plugin basis cannot be built there. Errors in the arguments are
    ``KAN``'s."""
    try:
        with torch.device("meta"):
            shape = KAN(widths, **kwargs)
            for layer in shape.layers if symbolic else ():
                layer.enable_symbolic()
    except (RuntimeError, NotImplementedError):
        return None
    return sum(t.numel() for t in (*shape.parameters(), *shape.buffers()))


def select_inputs_hint(model: Any, n_columns: int) -> str:
    """``"; ... select_inputs ..."`` for data of ``n_columns`` columns given to a KAN pruned to some
    of them (``prune_inputs``), to end an error about the data's width; else ``""``."""
    columns = getattr(model, "input_columns", None)
    if not columns or n_columns <= max(columns) or n_columns == len(columns):
        return ""
    return (
        f"; the model takes the data columns x[:, {list(columns)}] (0-based; columns "
        f"{', '.join(str(c + 1) for c in columns)} counting from 1) of {n_columns} (it was pruned with "
        "prune_inputs): pass model.select_inputs(x)"
    )


#: Largest column number ``input_columns`` may hold (the column count kantk.io allows a model).
MAX_INPUT_COLUMN = 1_000_000


def check_input_columns(columns: Any, n_inputs: int) -> list[int] | None:
    """``columns`` as a model's :attr:`KAN.input_columns` (``None`` stays ``None``).

    Raises:
        ValueError: not ``n_inputs`` distinct ints in ``[0, MAX_INPUT_COLUMN)``.
    """
    return _per_input(
        "input_columns",
        columns,
        n_inputs,
        lambda c: is_int(c) and 0 <= c < MAX_INPUT_COLUMN,
        f"column numbers (ints from 0 to {MAX_INPUT_COLUMN - 1})",
    )


def _per_input(field: str, values: Any, n_inputs: int, valid: Callable[[Any], bool], what: str) -> Any:
    """``values`` as a list of ``n_inputs`` distinct items that pass ``valid`` (``None`` stays
    ``None``), else a ``ValueError`` naming ``field`` and saying what is accepted."""
    if values is None:
        return None
    ok = (
        isinstance(values, (list, tuple))
        and len(values) == n_inputs
        and all(valid(v) for v in values)
        and len(set(values)) == len(values)
    )
    if not ok:
        raise ValueError(
            f"{field} must be None or {n_inputs} distinct {what}, one per input, got {short_repr(values)}"
        )
    return list(values)


#: Longest data column name a model records (:attr:`KAN.column_names`); a CSV header's longer
#: names are not used as variable names either.
MAX_COLUMN_NAME_LENGTH = 100


def check_column_names(names: Any, n_inputs: int) -> list[str] | None:
    """``names`` as a model's :attr:`KAN.column_names` (``None`` stays ``None``).

    Raises:
        ValueError: not ``n_inputs`` distinct non-empty printable strings of at most
            :data:`MAX_COLUMN_NAME_LENGTH` characters.
    """
    return _per_input(
        "column_names",
        names,
        n_inputs,
        lambda n: isinstance(n, str) and 0 < len(n) <= MAX_COLUMN_NAME_LENGTH and n.isprintable(),
        f"names (printable text of 1 to {MAX_COLUMN_NAME_LENGTH} characters)",
    )


def record_column_names(model: KAN, names: Any) -> None:
    """Record ``names``, the header names of the columns of the data ``model`` was given (one per
    column, in order), as its :attr:`KAN.column_names`: all of them when the data's columns are
    its inputs, else those of its :attr:`KAN.input_columns`. Anything else (``None``, another
    count, names :func:`check_column_names` refuses) leaves the model as it was."""
    if not isinstance(names, (list, tuple)):
        return
    n = model.widths[0]
    columns = model.input_columns
    if len(names) == n:
        chosen = list(names)
    elif columns is not None and len(names) > max(columns):
        chosen = [names[c] for c in columns]
    else:
        return
    with contextlib.suppress(ValueError):
        model.column_names = check_column_names(chosen, n)
