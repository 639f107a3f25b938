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


def _reference(x, basis):
    """The bumps as plain autograd computes them: exp(-((x - c) / w)^2), clamped at |z| 100."""
    z = (x.unsqueeze(-1) - basis.centers) / basis.width.unsqueeze(-1)
    return torch.exp(-z.clamp(-100, 100).square())


def test_the_fused_bumps_equal_plain_autograd_in_value_and_both_derivatives():
    """RBFBasis.forward runs a custom autograd function (6 passes over the values forward, 3
    backward, against autograd's 17 kernels); it must give autograd's values, gradients and second
    derivatives, on moved (uneven) centres and inputs outside them."""
    torch.manual_seed(0)
    basis = RBFBasis(3, num_centers=6, grid_range=(-1, 2)).double()
    basis.centers = basis.centers + 0.1 * torch.rand_like(basis.centers)  # uneven, as update_grid's
    basis.width = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    x = (torch.rand(40, 3, dtype=torch.float64) * 8 - 3).requires_grad_()  # some beyond the centres
    g = torch.rand(40, 3, 6, dtype=torch.float64)
    ours, plain = basis(x), _reference(x, basis)
    torch.testing.assert_close(ours, plain, rtol=1e-14, atol=1e-15)  # (x - c) * (1/w): round-off only
    (d_ours,) = torch.autograd.grad((ours * g).sum(), x, create_graph=True)
    (d_plain,) = torch.autograd.grad((plain * g).sum(), x, create_graph=True)
    torch.testing.assert_close(d_ours, d_plain, rtol=1e-12, atol=1e-14)
    (dd_ours,) = torch.autograd.grad(d_ours.square().sum(), x)
    (dd_plain,) = torch.autograd.grad(d_plain.square().sum(), x)
    torch.testing.assert_close(dd_ours, dd_plain, rtol=1e-12, atol=1e-14)
    small = RBFBasis(2, num_centers=3).double()
    xs = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(small, (xs,)) and torch.autograd.gradgradcheck(small, (xs,))


def test_trainable_centres_and_widths_get_their_gradients():
    """The fused function gives no gradient for the centres or the width (buffers): a basis whose
    centres someone made trainable takes the differentiable ops instead."""
    basis = RBFBasis(2, num_centers=4).double()
    basis.centers.requires_grad_()
    x = torch.rand(7, 2, dtype=torch.float64)
    basis(x).sum().backward()
    assert basis.centers.grad is not None and bool(basis.centers.grad.abs().sum() > 0)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.bfloat16, 2e-2)])
def test_bumps_on_centres_far_from_zero_keep_their_precision(dtype, atol):
    """z was x/w - c/w: with centres near 1000 (update_grid's for raw inputs) the two terms
    cancelled, and float32 bumps were 4e-5 off, bfloat16 ones 1.0 (the difference comes first now).
    The bound is a few units of the dtype's rounding of x - c and of the bump."""
    torch.manual_seed(0)
    basis = RBFBasis(1, num_centers=8, grid_range=(1000, 1010)).to(dtype)
    x = (1000 + 10 * torch.rand(200, 1)).to(dtype)
    exact = RBFBasis(1, num_centers=8).double()  # the same numbers (as the dtype holds them), in float64
    exact.centers, exact.width = basis.centers.double(), basis.width.double()
    assert float((basis(x).double() - _reference(x.double(), exact)).abs().max()) < atol


def test_float16_bumps_on_a_wide_grid_do_not_overflow():
    """x - c overflowed float16 (6e4 minus -6e4): clamped, the bumps read 0 where they are 0.0183."""
    basis = RBFBasis(1, num_centers=8, grid_range=(-6e4, 6e4)).half()
    x = torch.tensor([[6e4]], dtype=torch.float16, requires_grad=True)
    exact = RBFBasis(1, num_centers=8).double()
    exact.centers, exact.width = basis.centers.double(), basis.width.double()
    got = basis(x)
    assert got.dtype == torch.float16
    assert float((got.detach().double() - _reference(x.detach().double(), exact)).abs().max()) < 2e-3
    got.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
