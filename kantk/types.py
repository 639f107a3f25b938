"""Typed records that plugins yield from the collection hooks.

Nothing here depends on torch logic: a record only names a component and says how to build it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BasisSpec:
    """A family of 1-D basis functions a KAN layer can put on its edges.

    Attributes:
        name: Registry name, lowercase (``"bspline"``). Used in configs and saved files.
        factory: Callable ``factory(in_features, **kwargs) -> kantk.bases.Basis``; usually the class.
        description: One line for listings.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class RegulariserSpec:
    """A penalty added to the training loss.

    Attributes:
        name: Registry name (``"l1_entropy"``).
        factory: Callable ``factory(**options) -> regulariser`` where the regulariser is called
            as ``reg(model, x) -> scalar tensor``.
        description: One line for listings.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""


@dataclass(frozen=True)
class PrunerSpec:
    """A rule that decides which nodes and edges of a KAN to remove.

    Attributes:
        name: Registry name (``"threshold"``).
        factory: Callable ``factory(**options) -> pruner``.
        description: One line for listings.
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""


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
