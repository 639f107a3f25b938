"""pykan's sparsity regulariser: L1 norm and entropy of the per-edge activation scales."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kantk.plugins import hookimpl
from kantk.types import RegulariserSpec


class L1EntropyRegulariser:
    """``sum_l [l1 * sum_ji A_ji + entropy * (H_row + H_col)]`` over the layers of a KAN.

    Per layer, ``A_ji = std_batch(phi_ji(x_i)) / (std_batch(x_i) + input_eps)`` is the scale of
    edge i -> j relative to the spread of its input (pykan's ``edge_forward_spline_n``: the whole
    edge function, base branch included). ``p_row = A / (sum_i A + 1)`` normalises over each
    node's incoming edges and ``p_col = A / (sum_j A + 1)`` over each input's outgoing edges;
    ``H_row = -mean_j sum_i p_row log2(p_row + 1e-4)`` and ``H_col`` likewise. The defaults are
    pykan's (``lamb_l1=1``, ``lamb_entropy=2``); the training weight multiplies the whole sum
    (pykan's ``lamb``).

    It needs every edge's activations: one pass through :meth:`kantk.KAN.layer_inputs` and
    :meth:`kantk.KANLayer.activations` (the training module shares the layer inputs with the
    forward pass that computes the loss).

    Args:
        l1: Weight of the L1 term.
        entropy: Weight of the row and column entropies.
        input_eps: Added to the input standard deviation (pykan's 0.1).
    """

    needs_layer_inputs = True

    def __init__(self, l1: float = 1.0, entropy: float = 2.0, input_eps: float = 0.1):
        for name, value in (("l1", l1), ("entropy", entropy), ("input_eps", input_eps)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"l1_entropy option {name} must be a number >= 0, got {value!r}")
        self.l1 = float(l1)
        self.entropy = float(entropy)
        self.input_eps = float(input_eps)

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, layer_inputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Args:
            model: A :class:`kantk.KAN`.
            x: (batch, widths[0]), batch >= 2 (a standard deviation is taken over it).
            layer_inputs: ``model.layer_inputs(x)`` when already computed.

        Returns:
            Scalar tensor, differentiable in the model's parameters.
        """
        if x.shape[0] < 2:
            raise ValueError(
                f"l1_entropy needs at least 2 samples per batch (it uses their spread), got {x.shape[0]}"
            )
        xs = model.layer_inputs(x) if layer_inputs is None else layer_inputs
        total = x.new_zeros(())
        for layer, h in zip(model.layers, xs):
            acts = layer.activations(h)  # (batch, out, in)
            scale = acts.std(dim=0) / (h.std(dim=0) + self.input_eps)  # (out, in) / (in,) -> (out, in)
            total = (
                total
                + self.l1 * scale.sum()
                + self.entropy * (_entropy(scale, dim=1) + _entropy(scale, dim=0))
            )
        return total


def _entropy(scale: torch.Tensor, dim: int) -> torch.Tensor:
    """pykan's normalised entropy of an (out, in) scale matrix along ``dim``, averaged over the other."""
    p = scale / (scale.sum(dim=dim, keepdim=True) + 1)
    return -(p * torch.log2(p + 1e-4)).sum(dim=dim).mean()


@hookimpl
def kantk_regularisers():
    yield RegulariserSpec(
        "l1_entropy", L1EntropyRegulariser, "pykan's L1 + entropy sparsity penalty on edge activation scales"
    )
