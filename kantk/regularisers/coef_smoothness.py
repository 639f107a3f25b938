"""Smoothness penalty: neighbouring basis coefficients should be close."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kantk.plugins import hookimpl
from kantk.types import RegulariserSpec

if TYPE_CHECKING:
    from kantk.model import KAN


class CoefficientSmoothnessRegulariser:
    """``sum_l mean_{q,p,i} |c_{q,p,i+1} - c_{q,p,i}|`` over ``layer.coef`` (out, in, n).

    pykan's ``lamb_coefdiff`` term. Meaningful for local bases ordered along the input (B-splines,
    RBFs); layers with a single basis function contribute nothing.
    """

    def __call__(self, model: KAN, x: torch.Tensor | None = None) -> torch.Tensor:
        """Args: model: a :class:`kantk.KAN`; x: unused. Returns: scalar tensor."""
        total = torch.zeros((), dtype=model.dtype, device=model.device)
        for layer in model.layers:
            if layer.coef.shape[-1] >= 2:
                total = total + layer.coef.diff(dim=-1).abs().mean()  # (out, in, n-1) -> ()
        return total


@hookimpl
def kantk_regularisers():
    yield RegulariserSpec(
        "coef_smoothness",
        CoefficientSmoothnessRegulariser,
        "mean absolute difference of neighbouring coefficients",
    )
