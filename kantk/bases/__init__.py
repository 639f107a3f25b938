"""Basis families. Each module ends with its ``kantk_bases`` hook implementation."""

from kantk.bases.base import (
    Basis,
    EdgeWeights,
    MaskedEdgeWeights,
    SupportsFusedEdges,
    SupportsGridUpdate,
    SupportsInputRange,
    SupportsRefine,
    data_range,
    edge_sum,
    edge_values,
    fit_coefficients,
)
from kantk.bases.bspline import BSplineBasis, cox_de_boor
from kantk.bases.chebyshev import ChebyshevBasis
from kantk.bases.rbf import RBFBasis

__all__ = [
    "Basis",
    "BSplineBasis",
    "EdgeWeights",
    "MaskedEdgeWeights",
    "SupportsFusedEdges",
    "ChebyshevBasis",
    "RBFBasis",
    "SupportsGridUpdate",
    "SupportsInputRange",
    "SupportsRefine",
    "cox_de_boor",
    "data_range",
    "edge_sum",
    "edge_values",
    "fit_coefficients",
]
