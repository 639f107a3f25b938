"""pykan's sparsity regulariser: L1 norm and entropy of the per-edge activation scales."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from kantk._validation import check_number
from kantk.plugins import hookimpl
from kantk.types import RegulariserSpec

if TYPE_CHECKING:
    from kantk.model import KAN


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
    supports_sync = True

    def __init__(self, l1: float = 1.0, entropy: float = 2.0, input_eps: float = 0.1):
        self.l1 = check_number("l1_entropy option l1", l1, 0, finite=True)
        self.entropy = check_number("l1_entropy option entropy", entropy, 0, finite=True)
        self.input_eps = check_number("l1_entropy option input_eps", input_eps, 0, finite=True)

    def __call__(
        self,
        model: KAN,
        x: torch.Tensor,
        layer_inputs: Sequence[torch.Tensor] | None = None,
        sync: bool = False,
    ) -> torch.Tensor:
        """Args:
            model: A :class:`kantk.KAN`.
            x: (batch, widths[0]), batch >= 2 (a standard deviation is taken over it).
            layer_inputs: ``model.layer_inputs(x)`` when already computed.
            sync: Take the standard deviations over every rank's batch (``torch.distributed``,
                initialised; all ranks must call it), differentiably: data-parallel training
                then sees the statistics of the whole batch, as one process would.

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
            std = _synced_std if sync else _std
            scale = std(acts) / (std(h) + self.input_eps)  # (out, in) / (in,) -> (out, in)
            total = (
                total
                + self.l1 * scale.sum()
                + self.entropy * (_entropy(scale, dim=1) + _entropy(scale, dim=0))
            )
        return total


def _std(v: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation over the batch (dim 0)."""
    return v.std(dim=0)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: forward sums ``v`` over every rank, backward sums the
    gradients likewise (each rank's value depends on every rank's ``v``)."""

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor) -> torch.Tensor:
        out = v.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        grad = grads[0].clone()
        torch.distributed.all_reduce(grad)
        return grad


def _synced_std(v: torch.Tensor) -> torch.Tensor:
    """Sample standard deviation over dim 0 of every rank's ``v`` together (two passes: the mean,
    then the squared deviations). Backward sums the ranks' gradients, which data-parallel
    averaging turns into the gradient of the one-process value."""
    count = torch.tensor(float(v.shape[0]), dtype=v.dtype, device=v.device)
    torch.distributed.all_reduce(count)
    mean = _AllReduceSum.apply(v.sum(dim=0)) / count
    return (_AllReduceSum.apply((v - mean).square().sum(dim=0)) / (count - 1)).sqrt()


def _entropy(scale: torch.Tensor, dim: int) -> torch.Tensor:
    """pykan's normalised entropy of an (out, in) scale matrix along ``dim``, averaged over the other."""
    p = scale / (scale.sum(dim=dim, keepdim=True) + 1)
    return -(p * torch.log2(p + 1e-4)).sum(dim=dim).mean()


@hookimpl
def kantk_regularisers():
    yield RegulariserSpec(
        "l1_entropy", L1EntropyRegulariser, "pykan's L1 + entropy sparsity penalty on edge activation scales"
    )
