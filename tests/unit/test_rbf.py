from __future__ import annotations

import pytest
import torch

from kantk.bases.rbf import RBFBasis


def test_peaks_at_centres():
    basis = RBFBasis(1, num_centers=5, grid_range=(-2, 2))
    x = basis.centers[0].reshape(-1, 1)
    feats = basis(x)[:, 0, :]  # (5 centres as inputs, 5 functions)
    torch.testing.assert_close(torch.diagonal(feats), torch.ones(5))
    assert float(basis.width[0]) == pytest.approx(2.0)  # twice the spacing by default


def test_width_scale():
    fast_kan = RBFBasis(1, num_centers=5, grid_range=(-2, 2), width_scale=1.0)
    assert float(fast_kan.width[0]) == pytest.approx(1.0)
    assert fast_kan.config()["width_scale"] == 1.0
    x = torch.tensor([[0.5]])  # half a spacing from the centres at 0 and 1
    torch.testing.assert_close(fast_kan(x)[0, 0, 2:4], torch.exp(torch.tensor([-0.25, -0.25])))
    for bad in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError, match="width_scale"):
            RBFBasis(1, width_scale=bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_centers"):
        RBFBasis(1, num_centers=1)
    with pytest.raises(ValueError, match="grid_range"):
        RBFBasis(1, grid_range=(0, 0))


def test_far_inputs_get_zero_gradients_not_nan():
    """(x - c) / w squared overflowed (3e38 in float32, 4e4 in float16): inf * 0 gave NaN."""
    for dtype, far in ((torch.float32, 3e38), (torch.float16, 4e4), (torch.bfloat16, 3e38)):
        basis = RBFBasis(1, 3).to(dtype)
        x = torch.tensor([[far]], dtype=dtype, requires_grad=True)
        basis(x).sum().backward()
        assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad) == 0.0, dtype
