from __future__ import annotations

import pytest
import torch

from kantk.bases.rbf import RBFBasis


def test_peaks_at_centres():
    basis = RBFBasis(1, num_centers=5, grid_range=(-2, 2))
    x = basis.centers[0].reshape(-1, 1)
    feats = basis(x)[:, 0, :]  # (5 centres as inputs, 5 functions)
    torch.testing.assert_close(torch.diagonal(feats), torch.ones(5))
    assert float(basis.width[0]) == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_centers"):
        RBFBasis(1, num_centers=1)
    with pytest.raises(ValueError, match="grid_range"):
        RBFBasis(1, grid_range=(0, 0))
