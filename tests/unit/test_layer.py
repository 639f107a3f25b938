from __future__ import annotations

import pytest
import torch

import kantk
from kantk.layer import KANLayer


def test_phi_definition_per_edge():
    """y_q = sum_p w_b silu(x_p) + w_s sum_i c_i B_i(x_p)."""
    layer = KANLayer(3, 2, basis="bspline", basis_kwargs={"grid_size": 4, "order": 2})
    x = torch.rand(7, 3) * 2 - 1
    feats = layer.basis(x)
    expected = torch.zeros(7, 2)
    for q in range(2):
        for p in range(3):
            spline = (feats[:, p, :] * layer.coef[q, p]).sum(-1)
            expected[:, q] += (
                layer.scale_base[q, p] * torch.nn.functional.silu(x[:, p]) + layer.scale_sp[q, p] * spline
            )
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("act", ["silu", "identity", "zero"])
def test_base_activations(act):
    layer = KANLayer(2, 2, base_activation=act)
    x = torch.full((1, 2), 5.0)  # outside the grid: only the base branch is left
    y = layer(x)
    base = {"silu": torch.nn.functional.silu(x), "identity": x, "zero": torch.zeros_like(x)}[act]
    torch.testing.assert_close(y, base @ layer.scale_base.t())


def test_mask_removes_edges():
    layer = KANLayer(2, 1)
    with torch.no_grad():
        layer.mask[0, 1] = 0
    x = torch.rand(5, 2)
    x2 = x.clone()
    x2[:, 1] = torch.rand(5)
    torch.testing.assert_close(layer(x), layer(x2))
    assert torch.equal(layer.activations(x)[:, 0, 1], torch.zeros(5))


def test_init_scales():
    layer = KANLayer(16, 4)
    assert torch.allclose(layer.scale_sp, torch.full((4, 16), 0.25))
    assert layer.scale_base.abs().max() <= 0.25
    assert layer.coef.abs().max() <= 0.5 / layer.num_functions


def test_never_builds_batch_out_in_n(monkeypatch):
    """The forward contracts the basis with one matmul; no 4-D tensor is made."""
    seen = []
    real_einsum = torch.einsum

    def spy(*args, **kwargs):
        seen.append(args[0])
        return real_einsum(*args, **kwargs)

    monkeypatch.setattr(torch, "einsum", spy)
    for name in kantk.list_bases():
        layer = KANLayer(3, 4, basis=name)
        x = torch.rand(8, 3, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: _check_dim(t), lambda t: t):
            layer(x).sum().backward()
    assert seen == []


def _check_dim(t):
    assert t.dim() <= 3, f"a {t.dim()}-D tensor {tuple(t.shape)} was saved for backward"
    return t


def test_errors():
    with pytest.raises(ValueError, match="in_features"):
        KANLayer(0, 2)
    with pytest.raises(ValueError, match="base_activation"):
        KANLayer(2, 2, base_activation="relu6")
    with pytest.raises(kantk.UnknownComponentError, match="bspline"):
        KANLayer(2, 2, basis="nope")
    with pytest.raises(ValueError, match="accepted basis_kwargs: extrapolate, grid_range, grid_size, order"):
        KANLayer(2, 2, basis_kwargs={"grid": 5})
    layer = KANLayer(3, 2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        layer(torch.rand(4, 2))
    with pytest.raises(TypeError, match=r"convert the input \(x.to\(torch.float32\)\) or the model"):
        layer(torch.rand(4, 3, dtype=torch.float64))
    # an integer input: model.to(torch.int64) would fail, so only the input's conversion is advised
    with pytest.raises(TypeError, match=r"convert the input \(x.to\(torch.float32\)\)$"):
        layer(torch.ones(4, 3, dtype=torch.int64))


def test_autocast_input_of_the_autocast_dtype_is_accepted():
    """Under autocast a preceding layer may hand over bf16: the layer computes in its own dtype."""
    layer = kantk.KANLayer(4, 3)
    x = torch.rand(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.to(torch.bfloat16))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, layer(x.to(torch.bfloat16).float()))


def test_edge_weights_basis_major_layout_and_base_branch():
    """The record's fused-kernel layout: (in, n [+1], out), the base weight last only with a base branch."""
    from kantk.bases import EdgeWeights

    layer = kantk.KANLayer(3, 2)
    w = layer.edge_weights()
    assert w.has_base
    wt = w.basis_major()
    assert wt.shape == (3, layer.num_functions + 1, 2)
    torch.testing.assert_close(wt[:, :-1].permute(2, 0, 1), w.spline_weight())
    torch.testing.assert_close(wt[:, -1].t(), w.base_weight)
    no_base = EdgeWeights(w.coef, w.scale, w.base_weight, "zero")
    assert not no_base.has_base and no_base.base(torch.rand(4, 3)) is None
    assert no_base.basis_major().shape == (3, layer.num_functions, 2)


def test_edge_weights_record_applies_the_mask_when_read():
    """The layer's record keeps w_s, w_b and the mask apart (kernels that apply the mask read them);
    a basis reading ``scale`` / ``base_weight`` gets the masked products, made once, with their
    gradients; the record stays frozen."""
    import dataclasses

    from kantk.bases import EdgeWeights, MaskedEdgeWeights

    torch.manual_seed(0)
    layer = kantk.KANLayer(3, 2)
    with torch.no_grad():
        layer.mask[1, 2] = 0.0
    w = layer.edge_weights()
    assert isinstance(w, EdgeWeights) and isinstance(w, MaskedEdgeWeights)
    assert w.factors[0] is layer.scale_sp and w.factors[1] is layer.scale_base and w.factors[2] is layer.mask
    assert w.has_base and not w._products
    torch.testing.assert_close(w.scale, layer.scale_sp * layer.mask)
    torch.testing.assert_close(w.base_weight, layer.scale_base * layer.mask)
    assert w.scale is w.scale and w.base_weight is w.base_weight
    assert len(w.tensors()) == 4
    w.scale.sum().backward()
    assert layer.scale_sp.grad[1, 2] == 0 and layer.scale_sp.grad[0, 0] == 1
    for name in ("coef", "factors", "scale"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(w, name, layer.coef)
    no_base = kantk.KANLayer(3, 2, base_activation="zero").edge_weights()
    assert not no_base.has_base and no_base.base_weight is None and no_base.base(torch.rand(2, 3)) is None
    # a product first read without grad does not serve a later backward
    layer.zero_grad()
    w = layer.edge_weights()
    with torch.no_grad():
        assert not w.scale.requires_grad
    w.spline_weight().sum().backward()
    assert layer.scale_sp.grad is not None and layer.scale_sp.grad[0, 0] != 0
    # dataclasses.replace (and EdgeWeights' own arguments) give a plain record of the given tensors
    coef2 = layer.coef.detach() * 2
    r = dataclasses.replace(w, coef=coef2)
    assert r.coef is coef2 and r.factors is None and r.has_base
    torch.testing.assert_close(r.scale, w.scale)
    torch.testing.assert_close(r.base_weight, w.base_weight)
    with pytest.raises(TypeError, match="either scale"):
        MaskedEdgeWeights(layer.coef)


def test_subclass_base_weight_override_reaches_the_forward_pass():
    """A KANLayer subclass that overrides base_weight() changes what the layer computes (the
    record then carries the override's product instead of the factors)."""

    class HalfBase(kantk.KANLayer):
        def base_weight(self) -> torch.Tensor:
            return 0.5 * super().base_weight()

    torch.manual_seed(0)
    plain = kantk.KANLayer(3, 2)
    half = HalfBase(3, 2)
    half.load_state_dict(plain.state_dict())
    w = half.edge_weights()
    assert w.factors is None
    torch.testing.assert_close(w.base_weight, 0.5 * plain.scale_base * plain.mask)
    x = torch.rand(5, 3) * 2 - 1
    base = torch.nn.functional.silu(x)  # (5, 3)
    expected = plain(x) - 0.5 * base @ (plain.scale_base * plain.mask).T
    torch.testing.assert_close(half(x), expected)


def test_a_fused_edges_result_of_the_wrong_shape_or_dtype_is_named():
    """(out, batch) was reshaped silently into wrong outputs; float64 was blamed on the next layer."""
    layer = KANLayer(2, 3, basis="chebyshev")
    x = torch.rand(6, 2)
    layer.basis.fused_edges = lambda x, w: torch.zeros(3, x.shape[0])
    with pytest.raises(
        ValueError, match=r"ChebyshevBasis.fused_edges returned \(3, 6\) .* \(batch, out\) = \(6, 3\)"
    ):
        layer(x)
    layer.basis.fused_edges = lambda x, w: torch.zeros(x.shape[0], 3, dtype=torch.float64)
    with pytest.raises(
        TypeError, match="fused_edges returned torch.float64 on cpu for a torch.float32 input"
    ):
        layer(x)


def test_a_float16_layer_on_close_knots_has_finite_input_gradients():
    # de Boor's (x - t_i) / (t_j - t_i) on knots 5e-4 apart: its gradient overflowed float16 and
    # every input gradient was NaN while the values were finite (a "16-true" run on a hidden node's
    # narrow range); float16 is now computed in float32
    gen = torch.Generator().manual_seed(0)
    layer = kantk.KANLayer(1, 1, "bspline", {"grid_size": 20}, generator=gen)
    x = torch.rand(200, 1, generator=gen) * 0.02 - 0.01
    layer.update_grid(x)
    full = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(layer(full).sum(), full)
    layer.to(torch.float16)
    half = x.half().requires_grad_()
    (got,) = torch.autograd.grad(layer(half).float().sum(), half)
    assert torch.isfinite(got).all()
    # float16's own rounding of x and of the parameters: 1e-2 of the largest slope is its scale here
    torch.testing.assert_close(got.float(), want, rtol=0, atol=1e-2 * float(want.abs().max()))
