"""Every kantk hook specification, and nothing else.

A plugin is a module (or object) with functions decorated by :data:`kantk.hookimpl` whose names
match the specifications below. Third-party packages declare the module under the entry-point
group ``kantk`` in their ``pyproject.toml``::

    [project.entry-points.kantk]
    fourier = "kantk_fourier.plugin"

The built-in components are registered through exactly the same path.
Collection hooks have plural names and return (or yield) typed records from :mod:`kantk.types`.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from kantk.types import BasisSpec, NodeOperationSpec, PrunerSpec, RegulariserSpec, SymbolicLibrarySpec

PROJECT_NAME = "kantk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def kantk_bases() -> Iterable[BasisSpec]:
    """Return the basis families this plugin provides.

    Each record's ``factory(in_features, **kwargs)`` must build a :class:`kantk.bases.Basis`.

    Example plugin (``kantk_fourier/plugin.py``)::

        import math
        import torch
        import kantk
        from kantk.bases import Basis
        from kantk.types import BasisSpec

        class FourierBasis(Basis):
            def __init__(self, in_features: int, num_frequencies: int = 4):
                super().__init__(in_features)
                self.num_frequencies = num_frequencies
                self.register_buffer("freqs", torch.arange(1, num_frequencies + 1.0) * math.pi)

            @property
            def num_functions(self) -> int:
                return 2 * self.num_frequencies

            def forward(self, x):                      # (batch, in) -> (batch, in, 2K)
                z = x.unsqueeze(-1) * self.freqs.to(x.dtype)
                return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

            def config(self):
                return {"num_frequencies": self.num_frequencies}

        @kantk.hookimpl
        def kantk_bases():
            yield BasisSpec("fourier", FourierBasis, "sines and cosines")
    """


@hookspec
def kantk_regularisers() -> Iterable[RegulariserSpec]:
    """Return the regularisers this plugin provides.

    Each record's ``factory(**options)`` builds a callable ``reg(model, x) -> scalar tensor``
    that the training loop multiplies by the user's weight and adds to the loss.

    Example plugin::

        import kantk
        from kantk.types import RegulariserSpec

        class CoefficientL2:
            def __call__(self, model, x):
                return sum((layer.coef ** 2).mean() for layer in model.layers)

        @kantk.hookimpl
        def kantk_regularisers():
            yield RegulariserSpec("coef_l2", CoefficientL2, "mean squared coefficient")
    """


@hookspec
def kantk_pruners() -> Iterable[PrunerSpec]:
    """Return the pruners this plugin provides.

    Each record's ``factory(**options)`` builds a pruner that, given a model and data, decides
    which nodes and edges to keep.

    Example plugin::

        import kantk
        from kantk.types import PrunerSpec

        class KeepEverything:
            needs_data = False

            def __call__(self, model, x=None, scores=None):
                return [layer.mask.clone() > 0 for layer in model.layers]

        @kantk.hookimpl
        def kantk_pruners():
            yield PrunerSpec("keep_all", KeepEverything, "prunes nothing")
    """


@hookspec
def kantk_symbolic_libraries() -> Iterable[SymbolicLibrarySpec]:
    """Return the symbolic-function libraries this plugin provides.

    Each record's ``functions()`` returns the library's symbolic function records (name, torch
    function, sympy function, complexity).

    Example plugin (sympy imported when a formula is built, not when the plugin loads; a
    module-level class, not a lambda, so that models with such edges pickle)::

        import torch
        import kantk

        class _Sympy:
            def __init__(self, name):
                self.name = name

            def __call__(self, x):
                import sympy
                return getattr(sympy, self.name)(x)

        def _hyperbolic():
            return [
                kantk.SymbolicFunction("sinh", torch.sinh, _Sympy("sinh"), complexity=3),
                kantk.SymbolicFunction("cosh", torch.cosh, _Sympy("cosh"), complexity=3),
            ]

        @kantk.hookimpl
        def kantk_symbolic_libraries():
            yield kantk.SymbolicLibrarySpec("hyperbolic", _hyperbolic, "sinh and cosh")
    """


@hookspec
def kantk_node_operations() -> Iterable[NodeOperationSpec]:
    """Return the node operations this plugin provides (how a node combines its sub-nodes).

    Each record's ``factory()`` builds a :class:`kantk.nodes.NodeOperation`: ``forward`` maps
    sub-node values (batch, nodes, arity) to node values (batch, nodes), ``sympy`` does the same
    on sympy expressions, ``arity`` is fixed (an int) or ``None`` (the model's ``mult_arity``).
    Use it as ``kantk.KAN([2, {"sum": 1, "max": 1}, 1])``.

    Example plugin::

        import torch
        import kantk
        from kantk.nodes import NodeOperation

        class MaxNode(NodeOperation):
            def forward(self, x):                      # (batch, nodes, arity) -> (batch, nodes)
                return x.amax(dim=-1)

            def sympy(self, args):
                import sympy
                return sympy.Max(*args)

        @kantk.hookimpl
        def kantk_node_operations():
            yield kantk.NodeOperationSpec("max", MaxNode, "largest sub-node")
    """
