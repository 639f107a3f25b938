"""Grid extension: a copy of a KAN on finer grids that computes the same function.

``kantk.refine(model, grid_size)`` is pykan's ``model.refine``: train on a coarse grid, then
continue on a finer one from the same function. Each layer's basis does the work through the
:class:`kantk.bases.SupportsRefine` capability; ``model.update_grid(x)`` (adapting grids to data)
lives on the model itself. See docs/grids.md.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kantk._pykan import REFINE_NAMES, pykan_names
from kantk._warnings import warn_at_user
from kantk.bases.base import Basis, SupportsRefine
from kantk.model import KAN


@pykan_names(REFINE_NAMES)
def refine(model: KAN, grid_size: int | Sequence[int], **options: Any) -> KAN:
    """A new KAN whose grids are finer, with the same function; ``model`` is left untouched.

    Per basis, ``grid_size`` is its resolution: ``grid_size`` for B-splines (by exact knot
    insertion, or least squares where ``uniform=True`` must make a grid uniform; see below),
    ``degree`` for Chebyshev polynomials (exact), ``num_centers`` for RBFs (least squares).
    Everything else is copied as it is: masks, ``scale_base``, ``scale_sp``, the base activation,
    symbolic edges, ``requires_grad`` flags, dtype, device and any further state a layer holds.
    A layer whose basis cannot refine is copied unchanged, with a warning.

    Example::

        model = kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 5})
        ...  # train
        finer = kantk.refine(model, grid_size=10)   # same function, twice the intervals

    Args:
        model: The KAN to refine.
        grid_size: The new resolution, one int for every layer or one per layer; each must be
            at least the layer's current one (equal gives an unchanged copy of that layer).
        **options: Passed to every basis' ``refine``. B-splines take ``uniform``: ``False`` keeps
            every old knot and inserts new ones, so the spline is kept exactly everywhere for any
            ``grid_size`` (but the knots are not uniform: the slower evaluation path, about 4x
            slower per training step for a [2, 5, 1] at G = 10);
            ``True`` makes the new grid uniform (the fast path), exact on the grid range when
            the old grid is uniform and ``grid_size`` a multiple of the old one, least squares
            otherwise, and changed outside the grid range, where the spline now fades out
            sooner (a model whose inputs leave the grid range changes: call
            ``model.update_grid(x)`` first). The default (``None``) keeps the function to
            round-off for every input: uniform where that is exact everywhere, else as ``False``.

    What is kept by default: B-splines and Chebyshev polynomials to round-off (about 1e-16
    relative in float64, 1e-7 in float32) for every input, whatever the grid and the data's
    range (with ``extrapolate="extend"``, beyond the grid range the continued polynomials come
    from narrower intervals and their round-off grows with the distance: 3e-4 relative in
    float32, 3e-13 in float64, 30% of the range beyond it, from G = 5 to 40); RBFs (not
    nested: narrower Gaussians rebuild wider ones closely, not exactly) to about 1e-5 relative
    on the old centres' range, and less beyond it (where the new, narrower bumps fade sooner):
    update the grids to the data first (``model.update_grid(x)``) when inputs leave it.

    Returns:
        The refined copy, with fresh parameters (no gradients) on ``model``'s device.

    Raises:
        TypeError: ``model`` is not a :class:`kantk.KAN`.
        ValueError: A bad ``grid_size`` (not an int, smaller than the current resolution, a list
            of the wrong length) or an option a layer's basis does not accept; the message names
            the layer and says what is accepted.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.refine expects a kantk.KAN, got {type(model).__name__}")
    sizes = per_layer_sizes(grid_size, len(model.layers))
    finer = copy.deepcopy(model)
    for p in finer.parameters():
        p.grad = None
    for index, (layer, size) in enumerate(zip(finer.layers, sizes)):
        basis = layer.basis
        if not isinstance(basis, SupportsRefine):
            warn_at_user(
                f"basis {layer.basis_name!r} (layer {index}) cannot refine its grid; layer copied unchanged"
            )
            continue
        new_basis, new_coef = refined_basis(
            basis, layer.coef.detach(), size, options, index, layer.basis_name
        )
        layer.basis = new_basis
        # contiguous: LBFGS views every gradient flat, and gradients follow their parameter's strides
        coef = new_coef.detach().to(layer.coef.dtype).clone(memory_format=torch.contiguous_format)
        layer.coef = nn.Parameter(coef, requires_grad=layer.coef.requires_grad)
    return finer


def refined_basis(
    basis: Basis, coef: torch.Tensor, size: Any, options: dict[str, Any], index: int, name: str
) -> tuple[Basis, torch.Tensor]:
    """``basis.refine(size, coef, **options)`` of layer ``index`` (basis ``name``), checked; what
    :func:`refine` and ``GridExtension``'s check of its schedule run.

    Raises:
        ValueError: The basis refused the size or the options, or returned another kind of basis
            or coefficients of another shape (the message names the layer).
    """
    assert isinstance(basis, SupportsRefine)  # the callers skip the others
    try:
        new_basis, new_coef = basis.refine(size, coef, **options)
    except TypeError as exc:
        if options:
            raise ValueError(
                f"layer {index}: basis {name!r} does not accept the refine options "
                f"{', '.join(map(repr, sorted(options)))} ({exc})"
            ) from None
        raise
    except ValueError as exc:
        raise ValueError(f"layer {index}: {exc}") from None
    if not isinstance(new_basis, Basis) or new_basis.in_features != basis.in_features:
        what = (
            f"a basis of {new_basis.in_features} inputs"
            if isinstance(new_basis, Basis)
            else type(new_basis).__name__
        )
        raise ValueError(
            f"layer {index}: basis {name!r}: refine returned {what}, not a basis of the layer's "
            f"{basis.in_features} inputs"
        )
    want = (coef.shape[0], coef.shape[1], new_basis.num_functions)
    if not isinstance(new_coef, torch.Tensor) or tuple(new_coef.shape) != want:
        got = tuple(new_coef.shape) if isinstance(new_coef, torch.Tensor) else type(new_coef).__name__
        raise ValueError(
            f"layer {index}: basis {name!r}: refine returned coefficients of shape {got}, not {want} "
            "(out, in, the new basis' num_functions)"
        )
    return new_basis, new_coef


def per_layer_sizes(grid_size: int | Sequence[int], n_layers: int) -> list[Any]:
    if isinstance(grid_size, Sequence) and not isinstance(grid_size, (str, bytes)):
        sizes = list(grid_size)
        if len(sizes) != n_layers:
            raise ValueError(f"grid_size has {len(sizes)} entries but the model has {n_layers} layers")
        return sizes
    if isinstance(grid_size, torch.Tensor):
        raise ValueError("grid_size must be an int or a list of ints (one per layer), got a tensor")
    return [grid_size] * n_layers
