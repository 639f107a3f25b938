"""L1 penalty on the basis coefficients: pulls every edge's spline towards zero."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk.plugins import hookimpl
from kantk.types import RegulariserSpec

if TYPE_CHECKING:
    from kantk.model import KAN


class CoefficientL1Regulariser:
    """``sum_l mean_{q,p,i} |c_{q,p,i}|`` over the layers' coefficients ``layer.coef`` (out, in, n).

    pykan's ``lamb_coef`` term (pykan averages over one axis and sums the others; kantk takes the
    mean per layer so the value does not grow with the width or the grid size).
    """

    def __call__(self, model: KAN, x: torch.Tensor | None = None) -> torch.Tensor:
        """Args: model: a :class:`kantk.KAN`; x: unused. Returns: scalar tensor."""
        total = torch.zeros((), dtype=model.dtype, device=model.device)
        for layer in model.layers:
            total = total + layer.coef.abs().mean()  # (out, in, n) -> ()
        return total


@hookimpl
def kantk_regularisers():
    yield RegulariserSpec("coef_l1", CoefficientL1Regulariser, "mean absolute basis coefficient")
