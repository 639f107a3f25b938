"""Typed records that plugins yield from the collection hooks.

Nothing here depends on torch logic: a record only names a component and says how to build it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ComponentSpec:
    """A component a registry builds by name: the shared shape of the records below.

    Attributes:
        name: Registry name, lowercase (``"bspline"``). Used in configs and saved files.
        factory: Callable that builds the component (see each kind below).
        description: One line for listings.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""


class BasisSpec(ComponentSpec):
    """A family of 1-D basis functions a KAN layer can put on its edges.

    ``factory(in_features, **kwargs) -> kantk.bases.Basis``; usually the class. Fields as in
    :class:`ComponentSpec`; a distinct type so that a registry rejects a record of another kind.
    """


class RegulariserSpec(ComponentSpec):
    """A penalty added to the training loss.

    ``factory(**options) -> regulariser``, called as ``reg(model, x) -> scalar tensor``. Fields as
    in :class:`ComponentSpec`.
    """


class PrunerSpec(ComponentSpec):
    """A rule that decides which nodes and edges of a KAN to remove.

    ``factory(**options) -> pruner``. Fields as in :class:`ComponentSpec`.
    """


class NodeOperationSpec(ComponentSpec):
    """How a kind of KAN node combines its sub-nodes (``sum``, ``mult``, a plugin's ``max``).

    ``factory() -> kantk.nodes.NodeOperation``; usually the class. Fields as in
    :class:`ComponentSpec`.
    """


@dataclass(frozen=True)
class SymbolicLibrarySpec:
    """A named library of candidate symbolic functions for edge fitting.

    Attributes:
        name: Registry name (``"default"``).
        functions: Callable returning the library's function records (zero arguments).
        description: One line for listings.
    """

    name: str
    functions: Callable[[], Any]
    description: str = ""
