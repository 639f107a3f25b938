"""A KAN: a stack of KAN layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast, overload

import torch
from torch import nn

from kantk._validation import is_int, is_number
from kantk.layer import KANLayer
from kantk.registry import Registry

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
    """A Kolmogorov-Arnold Network ``KAN([2, 5, 1])``.

    Args:
        widths: Nodes per layer, inputs first; at least two entries, each >= 1.
        basis: One registry name for every layer, or a list with one per layer (mixed bases).
        basis_kwargs: One dict for every layer, or a list with one (or ``None``) per layer.
        base_activation: ``"silu"``, ``"identity"`` or ``"zero"``, or a list with one per layer.
        seed: Seeds the initialisation (without touching torch's global random state).
        registry: Where to look bases up (``None``: the default registry).
        **layer_kwargs: Passed to every :class:`KANLayer` (``noise_scale``, ``scale_base_mu``, ...).

    Input (..., widths[0]) -> output (..., widths[-1]); leading dimensions work like ``nn.Linear``.
    """

    def __init__(
        self,
        widths: Sequence[int],
        basis: BasisArg = "bspline",
        basis_kwargs: KwargsArg = None,
        base_activation: str | Sequence[str] = "silu",
        seed: int | None = None,
        registry: Registry | None = None,
        **layer_kwargs: Any,
    ):
        super().__init__()
        widths = _check_widths(widths)
        n_layers = len(widths) - 1
        bases = _per_layer(basis, n_layers, "basis", str)
        kwargs_list = _per_layer(basis_kwargs, n_layers, "basis_kwargs", (Mapping, type(None)))
        activations = _per_layer(base_activation, n_layers, "base_activation", str)
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.widths: list[int] = list(widths)
        self.layers = KANLayers(
            KANLayer(
                widths[i],
                widths[i + 1],
                bases[i],
                kwargs_list[i],
                activations[i],
                generator=generator,
                registry=registry,
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
            raise ValueError(
                f"KAN{self.widths} expects input of shape (..., {self.widths[0]}), got {tuple(x.shape)}"
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
            ValueError: ``x`` is not (batch, widths[0]) with batch >= 1, or ``grid_eps`` is not a
                number in [0, 1]; nothing is changed.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"update_grid expects a torch.Tensor of samples, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.widths[0]:
            raise ValueError(
                f"update_grid expects samples of shape (batch, {self.widths[0]}), got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(
                "update_grid needs at least one sample to place the grid on, got an empty batch "
                f"{tuple(x.shape)}"
            )
        if not is_number(grid_eps) or not 0 <= grid_eps <= 1:
            raise ValueError(f"grid_eps must be a number in [0, 1], got {grid_eps!r}")
        for layer in self.layers:
            layer.update_grid(x, grid_eps=grid_eps)
            x = layer(x)
        return self

    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer (then the output) for a batch ``x`` (batch, widths[0])."""
        xs = [x]
        for layer in self.layers:
            xs.append(layer(xs[-1]))
        return xs

    def config(self) -> dict[str, Any]:
        """JSON-serialisable structure, enough to rebuild the model with :meth:`from_config`."""
        return {"widths": list(self.widths), "layers": [layer.config() for layer in self.layers]}

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
                registry=registry,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a valid KAN config ({exc!r}): {config!r}") from None
        for layer, layer_config in zip(model.layers, layers):  # symbolic edges (kantk.fix_symbolic)
            if layer_config.get("symbolic") is not None:
                layer.load_symbolic_config(layer_config["symbolic"], registry=registry)
        return model

    def extra_repr(self) -> str:
        return f"widths={self.widths}"


def _check_widths(widths: Sequence[int]) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"widths must be a list of ints such as [2, 5, 1], got {widths!r}")
    widths = list(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least two entries (inputs and outputs), got {widths!r}")
    for w in widths:
        if not is_int(w) or w < 1:
            raise ValueError(f"every entry of widths must be an int >= 1, got {widths!r}")
    return widths


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
