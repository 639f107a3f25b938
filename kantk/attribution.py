"""Edge, node and input-feature importance of a KAN on data (pykan 0.2's ``attribute``).

The score of an edge is how much of its output node's spread it carries, times that node's own
importance; importance flows back from the outputs to the inputs::

    s^L_q = w_q                                     (output node scores; w_q = 1 / n_out by default)
    E^l_{q,p} = std(phi^l_{q,p}(x^l_p)) / (std(x^{l+1}_q) + 1e-4 * S^{l+1}) * s^{l+1}_q  (out, in)
    s^l_p = sum_q E^l_{q,p}                                                        (in,)

``std`` is taken over the samples (0 when it is round-off: at most
:data:`ROUNDOFF_EPS` machine epsilons of its largest value); ``S^{l+1} = max_q std(x^{l+1}_q)``
(1 when every node of the layer is constant). pykan adds an absolute 1e-4, which makes the
scores depend on the units of the data: a target given as ``1e-5 * f`` scored every edge near 0
and ``prune`` removed all but two of an exact model's edges (at ``1e-7`` all). Scaled by the
layer's largest spread, the guard is pykan's on data of unit spread and no longer depends on the
units.

The feature score of input ``p`` is ``s^0_p``. With product nodes (KAN 2.0) ``q`` runs over the
sub-nodes of layer ``l``'s outputs: a sub-node takes the score of the node it feeds and
``x^{l+1}_q`` is the sub-node's value, as in pykan's MultKAN. Averaging over the outputs
(``w_q = 1 / n_out``) follows pykan, so its thresholds (``node_th=1e-2``, ``edge_th=3e-2``) mean
the same here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kantk.model import KAN, select_inputs_hint

#: Added to a node's standard deviation before dividing by it, times the largest standard deviation
#: of its layer's nodes (pykan's constant, there absolute).
NODE_STD_EPS = 1e-4
#: A node or edge whose standard deviation is at most this many machine epsilons of its largest
#: |value| is constant (its spread is round-off): an output constant to 2e-18 had its one edge
#: scored 1.0.
ROUNDOFF_EPS = 4


def _spread(values: torch.Tensor) -> torch.Tensor:
    """The standard deviation over the samples (dim 0), 0 where it is round-off."""
    std = values.std(dim=0)
    floor = ROUNDOFF_EPS * torch.finfo(values.dtype).eps * values.abs().amax(dim=0)
    return torch.where(std <= floor, torch.zeros_like(std), std)  # NaN stays NaN (unknown)


@dataclass(frozen=True)
class Attribution:
    """Importance scores of one model on one batch of data.

    Attributes:
        edge_scores: One tensor per layer ``l``, shaped like its mask, (out_l, in_l): the
            importance of edge ``p -> q``. Masked (pruned) edges score 0.
        node_scores: One tensor per node layer, inputs first (``len(widths)`` tensors), each
            (widths[l],): the sum of the node's outgoing edge scores; the output layer holds the
            output weights the scores were propagated from.
        feature_scores: (widths[0],) the input features' scores, ``node_scores[0]``.
        in_scores: One tensor per node layer, (widths[l],): the sum of each node's *incoming*
            edge scores (over all its sub-nodes for a product node; zeros for the inputs, which
            have none). Pruners use it together with ``node_scores`` to decide whether a hidden
            node is alive.
        subnode_scores: One tensor per layer, (out_l,): the score each output of layer ``l``
            (a sub-node, for product nodes) was propagated from; ``node_scores[l + 1]`` itself
            where every node sums.
    """

    edge_scores: tuple[torch.Tensor, ...]
    node_scores: tuple[torch.Tensor, ...]
    feature_scores: torch.Tensor
    in_scores: tuple[torch.Tensor, ...]
    subnode_scores: tuple[torch.Tensor, ...] = ()

    @property
    def widths(self) -> list[int]:
        """The node counts the scores belong to, inputs first."""
        return [int(s.shape[0]) for s in self.node_scores]


@torch.no_grad()
def attribution(model: KAN, x: torch.Tensor, out_scores: torch.Tensor | None = None) -> Attribution:
    """Score every edge, node and input feature of ``model`` on the samples ``x``.

    Args:
        model: The KAN to analyse (left unchanged; evaluated without gradients).
        x: (batch, widths[0]) samples, batch >= 2 (scores are standard deviations over them),
            in the model's dtype.
        out_scores: (widths[-1],) importance of each output to start from; default
            ``1 / widths[-1]`` for every output (pykan's average over the outputs).

    Returns:
        An :class:`Attribution`.

    Raises:
        TypeError: ``model`` is not a :class:`kantk.KAN` or ``x`` not a tensor.
        ValueError: ``x`` has the wrong shape or fewer than 2 samples, holds NaN/Inf, or
            ``out_scores`` has the wrong shape or a score that is negative or not finite.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"kantk.attribution expects a kantk.KAN, got {type(model).__name__}")
    x = check_samples(model, x, "kantk.attribution")
    n_out = model.widths[-1]
    if out_scores is None:
        node = x.new_full((n_out,), 1.0 / n_out)
    else:
        node = torch.as_tensor(out_scores, dtype=x.dtype, device=x.device)
        if node.shape != (n_out,):
            raise ValueError(
                f"out_scores must have shape ({n_out},) (one per output), got {tuple(node.shape)}"
            )
        if not bool((torch.isfinite(node) & (node >= 0)).all()):  # NaN or negative scores came out
            raise ValueError(f"out_scores must be finite numbers >= 0, got {node.tolist()}")

    xs = model.layer_inputs(x)  # widths[0], ..., widths[-1] columns, each (batch, width)
    edges: list[torch.Tensor] = []
    nodes: list[torch.Tensor] = [node]
    ins: list[torch.Tensor] = []
    subs: list[torch.Tensor] = []
    for l in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[l]
        acts = layer.activations(xs[l])  # (batch, out, in)
        edge_std = _spread(acts)  # (out, in)
        if layer.nodes is None:
            values = xs[l + 1]  # (batch, out)
            sub = node
        else:  # product nodes: the sub-nodes' spread, each with its node's score
            values = layer.subnode_values(xs[l])  # (batch, out) sub-nodes
            sub = layer.nodes.expand(node)  # (out,)
        out_std = _spread(values)
        spread = out_std.max()
        guard = NODE_STD_EPS * torch.where(spread > 0, spread, torch.ones_like(spread))
        edge = edge_std / (out_std + guard).unsqueeze(-1) * sub.unsqueeze(-1)  # (out, in)
        # a constant node passes nothing on: edges into it score 0 (edges that cancel there, or
        # carry less than its round-off, were divided by the guard alone and scored far above 1)
        edge = torch.where((out_std == 0).unsqueeze(-1), torch.zeros_like(edge), edge)
        edges.append(edge)
        subs.append(sub)
        incoming = edge.sum(dim=1)  # (out,)
        ins.append(incoming if layer.nodes is None else layer.nodes.reduce_sum(incoming))  # per node
        node = edge.sum(dim=0)  # (in,)
        nodes.append(node)
    ins.append(torch.zeros_like(node))  # the inputs have no incoming edges
    node_scores = tuple(reversed(nodes))
    return Attribution(
        edge_scores=tuple(reversed(edges)),
        node_scores=node_scores,
        feature_scores=node_scores[0],
        in_scores=tuple(reversed(ins)),
        subnode_scores=tuple(reversed(subs)),
    )


def check_finite_through(model: KAN, x: torch.Tensor, last: int, who: str, verb: str) -> None:
    """Refuse samples on which the output of a layer up to ``last`` is not finite, before anything
    changes: their scores are NaN (one symbolic ``sqrt`` edge on negative samples made every edge's
    score NaN, and ``kantk.prune`` then removed every edge), and the fits of a later layer fail
    after the earlier ones were changed. ``verb`` says what to do on finite samples ("fit",
    "prune")."""
    with torch.no_grad():
        h = x
        for l, layer in enumerate(model.layers[: last + 1]):
            h = layer(h)
            bad = int((~torch.isfinite(h)).any(dim=1).sum())
            if bad:
                raise ValueError(
                    f"{who}: layer {l}'s outputs are NaN or infinite on {bad} of the {h.shape[0]} samples "
                    f"(e.g. a symbolic edge evaluated outside its domain); {verb} on samples where the "
                    "model is finite. Nothing was changed"
                )


def check_samples(model: KAN, x: torch.Tensor, who: str, min_samples: int = 2) -> torch.Tensor:
    """Validate a batch of samples for an analysis of ``model``; returns ``x`` (batch, widths[0])."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects samples as a torch.Tensor, got {type(x).__name__}")
    n_in = model.widths[0]
    if x.dim() != 2 or x.shape[1] != n_in:
        raise ValueError(
            f"{who} expects samples of shape (batch, {n_in}), got {tuple(x.shape)}"
            + select_inputs_hint(model, x.shape[-1] if x.dim() else 0)
        )
    if x.shape[0] < min_samples:
        raise ValueError(
            f"{who} needs at least {min_samples} samples (scores are spreads over the data), got {x.shape[0]}"
        )
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{who} needs finite samples; the input holds NaN or Inf")
    return x
