"""Node operations: how a KAN node combines what its incoming edges bring (sums, products, ...).

A plain KAN node sums its incoming edges. KAN 2.0 (Liu et al. 2024, arXiv 2408.10205; pykan's
``MultKAN``) adds multiplication nodes: a node that multiplies ``arity`` *sub-nodes*, each the sum
of its own incoming edges. kantk generalises this to a plugin kind, the *node operation*: the
built-ins are ``sum`` (one sub-node, passed through) and ``mult`` (the product of ``arity``
sub-nodes); a plugin can add others (``max``, a soft minimum, ...) through the hook
``kantk_node_operations()``.

Widths spell the nodes of every node layer, inputs first:

* ``5``: five sum nodes (a plain KAN, unchanged);
* ``[n_sum, n_mult]``: pykan's spelling, ``n_sum`` sum nodes then ``n_mult`` product nodes;
* ``{"sum": 2, "mult": 1, "max": 1}``: groups of nodes by operation name, in that order.

Each non-sum node takes ``mult_arity`` sub-nodes (pykan's argument: an int for every such node,
or one list per node layer with one arity per non-sum node of that layer). An operation may fix
its arity itself (``sum``: 1). The KAN layer that feeds a node layer computes one output per
sub-node (``layer.out_features`` sub-nodes) and then applies the :class:`NodeLayout`, which turns
them into ``layer.out_nodes`` node values: sub-nodes ``[start, start + arity)`` of a node are
consecutive, sum nodes first in pykan's spelling. See docs/node-operations.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from kantk._validation import is_int
from kantk.plugins import hookimpl
from kantk.types import NodeOperationSpec

if TYPE_CHECKING:
    from kantk.registry import Registry

#: The default sub-nodes per non-sum node (pykan's ``mult_arity=2``).
DEFAULT_ARITY = 2
#: The operation of plain nodes.
SUM = "sum"
#: pykan's multiplication nodes.
MULT = "mult"

WidthEntry = int | Sequence[int] | Mapping[str, int]


class NodeOperation:
    """How one kind of node turns its sub-nodes into its value. Subclass it in a plugin.

    Attributes:
        arity: Sub-nodes per node: an int fixes it (``sum``: 1); ``None`` (the default) means
            the model's ``mult_arity`` decides (>= 1).

    A subclass implements :meth:`forward` (torch, differentiable) and :meth:`sympy` (the same
    function on sympy expressions, for :func:`kantk.symbolic_formula`). It holds no parameters:
    a node operation is a fixed function (the model's state lives on the edges).
    """

    arity: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (batch, nodes, arity) sub-node values. Returns: (batch, nodes)."""
        raise NotImplementedError

    def sympy(self, args: Sequence[Any]) -> Any:
        """The node's value for sympy expressions ``args`` (one per sub-node)."""
        raise NotImplementedError(
            f"node operation {type(self).__name__} has no sympy form (define sympy(args)), so a "
            "formula through its nodes cannot be written"
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SumNode(NodeOperation):
    """A plain KAN node: the sum of its incoming edges (one sub-node, passed through)."""

    arity = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1)

    def sympy(self, args: Sequence[Any]) -> Any:
        import sympy

        return sympy.Add(*args)


class ProductNode(NodeOperation):
    """pykan's multiplication node: the product of its ``arity`` sub-nodes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.prod(dim=-1)

    def sympy(self, args: Sequence[Any]) -> Any:
        import sympy

        return sympy.Mul(*args)


@dataclass(frozen=True)
class NodeGroup:
    """``count`` consecutive nodes of operation ``op``, each taking ``arity`` sub-nodes.

    ``arities`` overrides ``arity`` per node when the nodes of the group differ (pykan's nested
    ``mult_arity``).
    """

    op: str
    count: int
    arity: int
    arities: tuple[int, ...] | None = None

    def node_arities(self) -> tuple[int, ...]:
        return self.arities if self.arities is not None else (self.arity,) * self.count


class NodeLayout:
    """The nodes of one node layer: which operation each applies to which sub-nodes.

    Args:
        groups: The node groups in order (``[NodeGroup("sum", 2, 1), NodeGroup("mult", 1, 2)]``).
        registry: Where to look operations up (``None``: the default registry).

    Attributes:
        n_nodes: Nodes of the layer (``model.widths[l]``).
        n_sub: Sub-nodes, i.e. outputs of the KAN layer that feeds this node layer.
        ops: Operation name per node; ``arities``: sub-nodes per node; ``starts``: the first
            sub-node of each node.
    """

    def __init__(self, groups: Sequence[NodeGroup], registry: Registry | None = None):
        from kantk.registry import resolve_registry

        reg = resolve_registry(registry)
        self.groups = tuple(g for g in groups if g.count > 0)
        if not self.groups:
            raise ValueError("a node layer needs at least one node")
        self._ops: dict[str, NodeOperation] = {}
        for g in self.groups:
            if g.op not in self._ops:
                self._ops[g.op] = build_node_operation(g.op, reg)
        self.ops: list[str] = [g.op for g in self.groups for _ in range(g.count)]
        self.arities: list[int] = [a for g in self.groups for a in g.node_arities()]
        self.starts: list[int] = []
        start = 0
        for a in self.arities:
            self.starts.append(start)
            start += a
        self.n_nodes = len(self.ops)
        self.n_sub = start
        self._segments = self._make_segments()

    def _make_segments(self) -> list[tuple[NodeOperation, int, int, int]]:
        """``(op, first sub-node, nodes, arity)`` runs of equal op and arity, for the forward pass."""
        segments: list[tuple[NodeOperation, int, int, int]] = []
        for j, (name, arity) in enumerate(zip(self.ops, self.arities)):
            op = self._ops[name]
            if segments and segments[-1][0] is op and segments[-1][3] == arity:
                o, s, n, a = segments[-1]
                segments[-1] = (o, s, n + 1, a)
            else:
                segments.append((op, self.starts[j], 1, arity))
        return segments

    @property
    def trivial(self) -> bool:
        """Every node is a plain sum node (the layout changes nothing)."""
        return all(g.op == SUM and a == 1 for g in self.groups for a in g.node_arities())

    def operation(self, name: str) -> NodeOperation:
        """The operation object of ``name`` (one of :attr:`ops`)."""
        return self._ops[name]

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """Args: y: (batch, n_sub) sub-node values. Returns: (batch, n_nodes)."""
        batch = y.shape[0]
        parts = []
        for op, start, n, arity in self._segments:
            chunk = y[:, start : start + n * arity]  # (batch, n * arity)
            if isinstance(op, SumNode) and arity == 1:
                parts.append(chunk)
            else:
                out = op(chunk.reshape(batch, n, arity))  # (batch, n, arity) -> (batch, n)
                if (
                    not isinstance(out, torch.Tensor)
                    or tuple(out.shape) != (batch, n)
                    or not out.is_floating_point()
                ):
                    got = (
                        f"{tuple(out.shape)} {out.dtype}"
                        if isinstance(out, torch.Tensor)
                        else type(out).__name__
                    )
                    raise ValueError(
                        f"node operation {type(op).__name__} returned {got} for sub-node values "
                        f"{(batch, n, arity)} {y.dtype}; it returns (batch, nodes) = {(batch, n)} floats"
                    )
                parts.append(out if out.dtype == y.dtype else out.to(y.dtype))  # e.g. computed in float64
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def subnodes(self, node: int) -> range:
        """The sub-node indices of node ``node``."""
        return range(self.starts[node], self.starts[node] + self.arities[node])

    def node_of_subnode(self) -> list[int]:
        """For every sub-node, the node it feeds (length :attr:`n_sub`)."""
        return [j for j, a in enumerate(self.arities) for _ in range(a)]

    def subnode_index(self, nodes: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The sub-node indices (int64) of the given nodes, in order."""
        idx = torch.as_tensor(nodes).tolist()
        return torch.tensor([s for j in idx for s in self.subnodes(int(j))], dtype=torch.int64)

    def expand(self, per_node: torch.Tensor) -> torch.Tensor:
        """Repeat a per-node tensor (n_nodes, ...) to one row per sub-node (n_sub, ...)."""
        counts = torch.tensor(self.arities, device=per_node.device)
        return per_node.repeat_interleave(counts, dim=0)

    def reduce_sum(self, per_sub: torch.Tensor) -> torch.Tensor:
        """Sum a per-sub-node tensor (n_sub, ...) over each node's sub-nodes: (n_nodes, ...)."""
        index = torch.tensor(self.node_of_subnode(), device=per_sub.device)
        out = per_sub.new_zeros((self.n_nodes, *per_sub.shape[1:]))
        return out.index_add(0, index, per_sub)

    def select(self, nodes: torch.Tensor | Sequence[int], registry: Registry | None = None) -> NodeLayout:
        """The layout of the kept ``nodes`` (sorted indices), groups kept in order."""
        keep = sorted({int(j) for j in torch.as_tensor(nodes).tolist()})
        groups: list[NodeGroup] = []
        for j in keep:
            name, arity = self.ops[j], self.arities[j]
            if groups and groups[-1].op == name:
                last = groups[-1]
                groups[-1] = NodeGroup(name, last.count + 1, last.arity, (*last.node_arities(), arity))
            else:
                groups.append(NodeGroup(name, 1, arity, (arity,)))
        return NodeLayout([_tidy(g) for g in groups], registry)

    def config(self) -> list[list[Any]]:
        """JSON form, one ``[op, count, arity]`` per group (``arity`` a list when nodes differ)."""
        out: list[list[Any]] = []
        for g in self.groups:
            ar = g.node_arities()
            out.append([g.op, g.count, ar[0] if len(set(ar)) == 1 else list(ar)])
        return out

    def spelling(self) -> int | list[int] | dict[str, int]:
        """This layer's entry in ``widths``: an int (all sums), ``[n_sum, n_mult]`` (sums, then
        products) or a dict of counts by operation, in group order."""
        names = [g.op for g in self.groups]
        counts = {g.op: g.count for g in self.groups}
        if len(set(names)) != len(names):  # an op in two places (not produced by kantk): keep groups
            raise ValueError(f"node layout with repeated operation groups: {self.config()}")
        if names == [SUM]:
            return counts[SUM]
        if names in ([SUM, MULT], [MULT]):
            return [counts.get(SUM, 0), counts[MULT]]
        return dict(counts)

    def variable_arities(self) -> list[int]:
        """Arities of the nodes whose operation takes ``mult_arity`` (in node order)."""
        return [a for name, a in zip(self.ops, self.arities) if self._ops[name].arity is None]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NodeLayout) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(str(self.config()))

    def __repr__(self) -> str:
        return f"NodeLayout({self.config()})"


def _tidy(group: NodeGroup) -> NodeGroup:
    ar = group.node_arities()
    if len(set(ar)) == 1:
        return NodeGroup(group.op, group.count, ar[0])
    return NodeGroup(group.op, group.count, ar[0], ar)


def build_node_operation(name: str, registry: Registry | None = None) -> NodeOperation:
    """Build the registered node operation ``name``.

    Raises:
        UnknownComponentError: No plugin provides ``name`` (the message lists the known ones).
        TypeError: The plugin built something that is not a :class:`NodeOperation`.
    """
    from kantk.registry import resolve_registry

    if not isinstance(name, str):
        raise TypeError(f"a node operation must be a registry name (str), got {type(name).__name__}")
    spec = resolve_registry(registry).node_operations.get(name)
    op = spec.factory()
    if not isinstance(op, NodeOperation):
        raise TypeError(
            f"node operation plugin {name!r} built a {type(op).__name__}, not a kantk.nodes.NodeOperation"
        )
    arity = op.arity
    if arity is not None and (not is_int(arity) or arity < 1):
        raise TypeError(f"node operation {name!r} has arity {arity!r}; an int >= 1 or None is accepted")
    return op


# --------------------------------------------------------------------------------------- widths


def parse_widths(
    widths: Sequence[WidthEntry], mult_arity: Any = DEFAULT_ARITY, registry: Registry | None = None
) -> tuple[list[int], list[NodeLayout | None]]:
    """Read a widths spelling (see the module notes) and ``mult_arity``.

    Returns:
        The node counts (``model.widths``) and one layout per node layer (``None`` for the
        inputs and for layers of plain sum nodes).

    Raises:
        ValueError: A malformed entry or arity (the message says what is accepted).
    """
    if isinstance(widths, (str, bytes, Mapping)) or not isinstance(widths, Sequence):
        raise ValueError(f"widths must be a list such as [2, 5, 1] or pykan's [2, [0, 1], 1], got {widths!r}")
    entries = list(widths)
    if len(entries) < 2:
        raise ValueError(f"widths needs at least two entries (inputs and outputs), got {widths!r}")
    arities = _per_layer_arities(mult_arity, len(entries))
    counts: list[int] = []
    layouts: list[NodeLayout | None] = []
    for l, entry in enumerate(entries):
        groups = _groups(entry, widths)
        if is_int(entry):  # plain sum nodes: no layout, no registry
            # one int for every product node, or [] in a per-layer list ([2, 3, 2] was read as
            # arity 3 in layer 1, the 2s dropped without a word, while [[5], [3], []] was refused)
            if not ((is_int(arities[l]) and is_int(mult_arity)) or _empty_list(arities[l])):
                what = "is" if is_int(arities[l]) else "lists"
                raise ValueError(
                    f"mult_arity for node layer {l} {what} {arities[l]!r} but that layer has no product "
                    "nodes; give [] for it (one entry per node layer, inputs first), or one int for every "
                    "product node"
                )
            counts.append(entry)
            layouts.append(None)
            continue
        layout = NodeLayout(_with_arities(groups, arities[l], l, registry), registry)
        if l == 0 and not layout.trivial:
            raise ValueError(f"the inputs (widths[0]) are plain nodes; got {entry!r} in {widths!r}")
        counts.append(layout.n_nodes)
        layouts.append(None if layout.trivial else layout)
    return counts, layouts


def _groups(entry: Any, widths: Any) -> list[NodeGroup]:
    bad = ValueError(
        "every entry of widths must be an int >= 1, [n_sum, n_mult] (pykan's spelling) or a dict of "
        f"node counts by operation such as {{'sum': 2, 'mult': 1}}, with at least one node; got {widths!r}"
    )
    if is_int(entry):
        if entry < 1:
            raise bad
        return [NodeGroup(SUM, entry, 1)]
    if isinstance(entry, Mapping):
        items = list(entry.items())
    elif isinstance(entry, Sequence) and not isinstance(entry, (str, bytes)) and len(entry) == 2:
        items = [(SUM, entry[0]), (MULT, entry[1])]
    else:
        raise bad
    if not items or any(not isinstance(k, str) or not is_int(v) or v < 0 for k, v in items):
        raise bad
    if sum(v for _, v in items) < 1:
        raise bad
    return [NodeGroup(k, v, 1) for k, v in items if v > 0]


def _empty_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 0


def _per_layer_arities(mult_arity: Any, n_node_layers: int) -> list[Any]:
    if is_int(mult_arity):
        if mult_arity < 1:
            raise ValueError(f"mult_arity must be an int >= 1 or one list per node layer, got {mult_arity!r}")
        return [mult_arity] * n_node_layers
    if isinstance(mult_arity, Sequence) and not isinstance(mult_arity, (str, bytes)):
        items = list(mult_arity)
        if len(items) != n_node_layers:
            raise ValueError(
                f"mult_arity lists {len(items)} node layers but widths has {n_node_layers}; give one "
                "entry per node layer (inputs first), or one int for every product node"
            )
        return items
    raise ValueError(f"mult_arity must be an int >= 1 or one list per node layer, got {mult_arity!r}")


def _with_arities(groups: list[NodeGroup], arity: Any, l: int, registry: Registry | None) -> list[NodeGroup]:
    """Give every group the arity of its nodes: the operation's own, else from ``mult_arity``."""
    fixed = {g.op: build_node_operation(g.op, registry).arity for g in groups}
    n_variable = sum(g.count for g in groups if fixed[g.op] is None)
    if is_int(arity):
        if arity < 1:
            raise ValueError(f"mult_arity for node layer {l} must be >= 1, got {arity!r}")
        per_node = [arity] * n_variable
    elif isinstance(arity, Sequence) and not isinstance(arity, (str, bytes)):
        per_node = list(arity)
        if len(per_node) != n_variable or any(not is_int(a) or a < 1 for a in per_node):
            raise ValueError(
                f"mult_arity for node layer {l} must list {n_variable} ints >= 1 (one per product node "
                f"of that layer), got {arity!r}"
            )
    else:
        raise ValueError(f"mult_arity for node layer {l} must be an int or a list of ints, got {arity!r}")
    out: list[NodeGroup] = []
    taken = 0
    for g in groups:
        own = fixed[g.op]
        if own is not None:
            out.append(NodeGroup(g.op, g.count, own))
            continue
        mine = tuple(per_node[taken : taken + g.count])
        taken += g.count
        out.append(_tidy(NodeGroup(g.op, g.count, mine[0], mine)))
    return out


def widths_spelling(widths: Sequence[int], layouts: Sequence[NodeLayout | None]) -> list[Any]:
    """The ``widths`` a model is rebuilt from: plain ints where every node sums (see
    :meth:`NodeLayout.spelling`)."""
    return [w if layout is None else layout.spelling() for w, layout in zip(widths, layouts)]


def arity_spelling(layouts: Sequence[NodeLayout | None]) -> int | list[list[int]]:
    """The ``mult_arity`` a model is rebuilt from: an int when every non-sum node has the same
    arity (:data:`DEFAULT_ARITY` when there is none), else one list per node layer."""
    per_layer = [[] if layout is None else layout.variable_arities() for layout in layouts]
    found = {a for layer in per_layer for a in layer}
    if len(found) <= 1:
        return found.pop() if found else DEFAULT_ARITY
    return per_layer


def layout_from_config(groups: Any, registry: Registry | None = None) -> NodeLayout:
    """A layout from :meth:`NodeLayout.config` (untrusted: checked, ValueError when malformed)."""
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"nodes must be a non-empty list of [op, count, arity] groups, got {groups!r}")
    out = []
    for g in groups:
        if not (isinstance(g, list) and len(g) == 3 and isinstance(g[0], str) and is_int(g[1]) and g[1] >= 1):
            raise ValueError(f"a node group must be [op, count >= 1, arity], got {g!r}")
        op, count, arity = g
        if is_int(arity) and arity >= 1:
            out.append(NodeGroup(op, count, arity))
        elif isinstance(arity, list) and len(arity) == count and all(is_int(a) and a >= 1 for a in arity):
            out.append(_tidy(NodeGroup(op, count, arity[0], tuple(arity))))
        else:
            raise ValueError(f"a node group's arity must be an int >= 1 or one per node, got {g!r}")
    return NodeLayout(out, registry)


@hookimpl
def kantk_node_operations():
    yield NodeOperationSpec(SUM, SumNode, "sum of the incoming edges (a plain KAN node)")
    yield NodeOperationSpec(MULT, ProductNode, "product of mult_arity sub-nodes (KAN 2.0's MultKAN)")
