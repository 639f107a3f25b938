"""Baselines to compare a KAN against: :class:`MLP`, pykan's ``kan.MLP``, and
:func:`count_parameters`, for tables that put the two side by side.

The MLP is a plain ``nn.Module`` (``Linear`` layers with an activation between them); train it with
:func:`kantk.fit` (the same engine, History and options as a KAN, minus the KAN-only ones) or with
:class:`kantk.lightning.MLPModule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from kantk._validation import check_choice, check_optional_int, is_int

#: The activations an :class:`MLP` takes by name (pykan's ``act`` has ``silu``, ``relu`` and
#: ``identity``; ``tanh`` is the PDE baselines', ``gelu`` and ``sigmoid`` are common elsewhere).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


class MLP(nn.Module):
    """A multilayer perceptron ``MLP([2, 64, 64, 1])``: pykan's ``kan.MLP(width, act, seed)``.

    ``Linear(widths[0], widths[1])``, the activation, ``Linear(widths[1], widths[2])``, ... with no
    activation after the last layer.

    Initialisation: torch's default for ``nn.Linear`` (weights and biases uniform in
    ``±1/sqrt(fan_in)``), drawn layer by layer, weight then bias, from a generator seeded with
    ``seed``: the same parameters as ``torch.manual_seed(seed)`` followed by the ``nn.Linear``
    layers in order (which is what pykan's ``MLP(width, seed=seed)`` does), without touching
    torch's global random state. The same seed gives the same parameters on every run.

    Args:
        widths: Nodes per layer, inputs first; at least two ints >= 1.
        activation: One of :data:`ACTIVATIONS` (``"silu"``, ``"relu"``, ``"tanh"``, ``"gelu"``,
            ``"sigmoid"``, ``"identity"``).
        seed: Seeds the initialisation (default 0, pykan's). ``None``: draw from torch's global
            random state, as a bare ``nn.Linear`` does.
        dtype: The parameters' dtype (default: torch's default dtype). The initial values are
            drawn in that dtype, so a float64 MLP is not a float32 one cast.

    Input (..., widths[0]) -> output (..., widths[-1]).

    Attributes:
        widths: Nodes per layer, inputs first.
        activation: The activation's name.
        layers: The ``nn.Linear`` layers.

    Raises:
        ValueError: Bad widths, an unknown activation (the message lists the valid ones), a bad
            seed or a dtype that is not floating.
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "silu",
        seed: int | None = 0,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if (
            isinstance(widths, (str, bytes))
            or not isinstance(widths, Sequence)
            or len(widths) < 2
            or not all(is_int(w) and w >= 1 for w in widths)
        ):
            raise ValueError(f"MLP widths must be a list of at least two ints >= 1, got {widths!r}")
        check_choice("activation", activation, ACTIVATIONS)
        seed = check_optional_int("seed", seed, integral=True)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.widths: list[int] = [int(w) for w in widths]
        self.activation = activation
        self.layers = nn.ModuleList(
            _linear(n_in, n_out, dtype, generator) for n_in, n_out in zip(self.widths[:-1], self.widths[1:])
        )
        self.act = ACTIVATIONS[activation]()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters (the first layer's weight's: ``model.double()`` converts all)."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """The device the parameters are on (the first layer's weight's)."""
        return next(self.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., widths[0]). Returns: (..., widths[-1])."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"MLP expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.widths[0]:
            raise ValueError(
                f"MLP{self.widths} expects input of shape (..., {self.widths[0]}), got {tuple(x.shape)}"
            )
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x

    def config(self) -> dict[str, Any]:
        """The structure, ``{"widths": [...], "activation": name}`` (plain, YAML-friendly values)."""
        return {"widths": list(self.widths), "activation": self.activation}

    def extra_repr(self) -> str:
        return f"widths={self.widths}, activation={self.activation!r}"


def _linear(n_in: int, n_out: int, dtype: torch.dtype | None, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear(n_in, n_out)`` with torch's default initialisation drawn from ``generator``
    (torch's global random state when None): what ``nn.Linear.reset_parameters`` does."""
    if generator is None:
        return nn.Linear(n_in, n_out, dtype=dtype)
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=dtype)  # no draw from the global state
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(n_in)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def count_parameters(model: nn.Module, trainable: bool = True) -> int:
    """The number of parameter values of ``model`` (each shared tensor counted once).

    For a KAN that is every edge's basis coefficients and its two scales (``coef``,
    ``scale_base``, ``scale_sp``): ``edges * (G + k + 2)`` for B-splines of order k on G
    intervals; grids and masks are buffers, not parameters. For an :class:`MLP`, every weight and
    bias.

    Args:
        model: Any ``nn.Module``.
        trainable: Count only the parameters with ``requires_grad`` (default), else all.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or ``trainable`` not a bool.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters takes an nn.Module, got {type(model).__name__}")
    if not isinstance(trainable, bool):
        raise TypeError(f"trainable must be True or False, got {trainable!r}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
