"""Regularisers: penalties added to the training loss. Each module ends with its hook implementation.

A regulariser is built by its registry record's ``factory(**options)`` and called as
``reg(model, x) -> scalar tensor``; one that sets ``needs_layer_inputs = True`` also accepts
``layer_inputs=model.layer_inputs(x)`` so the training step can share that pass with the loss.
One whose value depends on batch statistics and that sets ``supports_sync = True`` accepts
``sync=True``: under ``torch.distributed`` it then takes those statistics over every rank's
batch (so that data-parallel training equals one process), differentiably.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kantk._validation import check_number
from kantk._warnings import warn_at_user
from kantk.plugins import plugin_call
from kantk.registry import Registry, check_options, resolve_registry
from kantk.regularisers.coef_l1 import CoefficientL1Regulariser
from kantk.regularisers.coef_smoothness import CoefficientSmoothnessRegulariser
from kantk.regularisers.l1_entropy import L1EntropyRegulariser

RegulariserConfig = Mapping[str, "float | Mapping[str, Any]"]


@dataclass(frozen=True)
class WeightedRegulariser:
    """One active regulariser.

    Attributes:
        name: Registry name.
        weight: Multiplies the penalty before it is added to the loss.
        fn: The built regulariser, ``fn(model, x) -> scalar tensor``.
        plugin: The plugin that registered it (an error it raises names it); ``None``: unknown.
    """

    name: str
    weight: float
    fn: Callable[..., torch.Tensor]
    plugin: str | None = None

    @property
    def needs_layer_inputs(self) -> bool:
        return bool(getattr(self.fn, "needs_layer_inputs", False))

    @property
    def supports_sync(self) -> bool:
        return bool(getattr(self.fn, "supports_sync", False))


def build_regularisers(
    config: RegulariserConfig | None, registry: Registry | None = None
) -> list[WeightedRegulariser]:
    """Build regularisers from ``{name: weight}`` or ``{name: {"weight": w, **options}}``.

    Args:
        config: E.g. ``{"l1_entropy": {"weight": 1e-3, "entropy": 2.0}, "coef_l1": 1e-4}``.
            ``None`` or ``{}``: no regularisation.
        registry: Where to look the names up (``None``: the default registry).

    Returns:
        The regularisers in the given order.

    Raises:
        UnknownComponentError: A name no plugin provides (the message lists the known names).
        ValueError: A negative or non-finite weight, or an option the regulariser does not accept.
    """
    if config is None:
        return []
    if not isinstance(config, Mapping):
        raise TypeError(
            "regularisers must be a dict such as {'l1_entropy': 1e-3} or "
            f"{{'l1_entropy': {{'weight': 1e-3, 'entropy': 2.0}}}}, got {config!r}"
        )
    table = resolve_registry(registry).regularisers
    out = []
    for name, entry in config.items():
        spec = table.get(name)
        if isinstance(entry, Mapping):
            options = dict(entry)
            weight = options.pop("weight", 1.0)
        else:
            weight, options = entry, {}
        weight = check_number(f"regulariser {name!r} weight", weight, 0, finite=True)
        check_options("regulariser", name, spec.factory, options, also_accepted=("weight",))
        plugin = table.owner(name)
        with plugin_call("regulariser", name, plugin):
            fn = spec.factory(**options)
        if not callable(fn):
            raise TypeError(
                f"regulariser plugin {name!r} built a {type(fn).__name__}, not a callable regulariser"
            )
        out.append(WeightedRegulariser(name, weight, fn, plugin))
    return out


def regularisation(
    regularisers: Sequence[WeightedRegulariser],
    model: torch.nn.Module,
    x: torch.Tensor,
    layer_inputs: Sequence[torch.Tensor] | None = None,
    sync: bool = False,
    terms: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The weighted sum of the penalties for a batch ``x`` (batch, widths[0]); 0 when none.

    ``sync=True`` (every rank of an initialised ``torch.distributed`` group must call it then):
    regularisers that support it take their batch statistics over all ranks' batches.
    ``terms``: filled with each regulariser's penalty by name (detached scalars, unweighted).
    """
    total = x.new_zeros(())
    for reg in regularisers:
        if reg.weight == 0:
            continue
        options: dict[str, Any] = {"sync": True} if sync and reg.supports_sync else {}
        with plugin_call("regulariser", reg.name, reg.plugin):
            if reg.needs_layer_inputs and layer_inputs is not None:
                value = reg.fn(model, x, layer_inputs=layer_inputs, **options)
            else:
                value = reg.fn(model, x, **options)
        # while training, a penalty must carry a gradient: a plugin ending in .item() or .detach()
        # was logged as "reg" and regularised nothing (0, "nothing to penalise", is fine)
        training = torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if training and value != 0:
                warn_at_user(_not_differentiable(reg.name, f"the number {value!r}"))
            value = x.new_tensor(float(value))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"regulariser {reg.name!r} returned {shape}; a regulariser returns one number "
                "(a scalar tensor) for the batch"
            )
        if training and not value.requires_grad and bool(value.detach().reshape(()) != 0):
            # a warning, not an error: a built-in penalty on frozen tensors (coef_l1 with coef
            # frozen) has no gradient either, and is harmless
            warn_at_user(_not_differentiable(reg.name, "a tensor without a gradient"))
        if terms is not None:
            terms[reg.name] = value.detach().reshape(())
        total = total + reg.weight * value.reshape(())
    return total


def _not_differentiable(name: str, what: str) -> str:
    return (
        f"regulariser {name!r} returned {what}, which trains nothing (a float, .item() or .detach() "
        "cuts the gradient, and frozen parameters have none); a plugin returns a scalar tensor "
        "computed from the model's trainable parameters (0 when there is nothing to penalise)"
    )


__all__ = [
    "CoefficientL1Regulariser",
    "CoefficientSmoothnessRegulariser",
    "L1EntropyRegulariser",
    "WeightedRegulariser",
    "build_regularisers",
    "regularisation",
]
