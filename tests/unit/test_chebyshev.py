from __future__ import annotations

import math

import pytest
import torch

from kantk.bases.chebyshev import ChebyshevBasis


def test_matches_cosine_form_inside():
    torch.set_default_dtype(torch.float64)
    basis = ChebyshevBasis(2, degree=6)
    x = torch.rand(50, 2) * 2 - 1
    z = torch.tanh(x)
    expected = torch.stack([torch.cos(n * torch.acos(z)) for n in range(7)], dim=-1)
    torch.testing.assert_close(basis(x), expected)


@pytest.mark.parametrize("value", [10.0, -10.0, 50.0, 1e6, -1e30])
def test_gradients_finite_for_large_inputs(value):
    basis = ChebyshevBasis(1, degree=8)
    x = torch.full((4, 1), value, requires_grad=True)
    basis(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bad_degree():
    with pytest.raises(ValueError, match="degree"):
        ChebyshevBasis(2, degree=-1)
    assert ChebyshevBasis(2, degree=0).num_functions == 1
    assert math.isclose(float(ChebyshevBasis(1, degree=0)(torch.zeros(1, 1))), 1.0)
