"""The B-spline path chooser: one case per path, and the choice seen from a real layer."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.bases.bspline import Case, Path, choose, choose_path

F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize(
    "case, path",
    [
        (Case("cuda", F32, uniform=True, order=3, triton=True), Path.TRITON),
        (Case("cuda", F32, uniform=False, order=3, triton=True), Path.TRITON),  # moved knots too
        (Case("cuda", F32, uniform=True, order=2, triton=True), Path.TORCH_DENSE),  # cubic only
        (Case("cuda", F64, uniform=True, order=3, triton=False), Path.TORCH_DENSE),
        (Case("cuda", F32, uniform=True, order=3, triton=True, compiling=True), Path.TORCH_COMPILED),
        (Case("cuda", F32, uniform=True, order=3, num_functions=203), Path.TORCH_SPARSE),
        (Case("cuda", F32, uniform=True, order=3, num_functions=203, triton=True), Path.TORCH_SPARSE),
        (Case("cuda", F32, uniform=True, order=3, triton=True, force="triton_sparse"), Path.TRITON_SPARSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, out_features=64), Path.NATIVE_SPARSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, out_features=1024), Path.NATIVE_DENSE),
        (
            Case("cpu", F32, uniform=True, order=3, native=True, out_features=1024, num_functions=203),
            Path.NATIVE_SPARSE,
        ),
        (Case("cpu", F64, uniform=True, order=3, native=True, sparse=False), Path.NATIVE_DENSE),
        (Case("cpu", F32, uniform=False, order=3, native=False), Path.TORCH_KNOTS),
        (Case("cpu", F32, uniform=True, order=3, compiling=True), Path.TORCH_COMPILED),
        (Case("cpu", F32, uniform=True, order=3, compiling=True, extrapolate="extend"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=3, sparse=True), Path.TORCH_SPARSE),
        (Case("cpu", F32, uniform=True, order=3), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=True, order=3, native=True, force="torch_dense"), Path.TORCH_DENSE),
        (Case("cpu", F32, uniform=False, order=3, force="torch_sparse"), Path.TORCH_KNOTS),
        (Case("cpu", F32, uniform=True, order=3, force="triton"), Path.TRITON),
    ],
)
def test_each_case_gets_its_path(case, path):
    assert choose(case) is path


def test_a_real_layer_reports_its_path(monkeypatch):
    from kantk.bases.bspline import native_build

    layer = kantk.KANLayer(3, 4)
    x = torch.rand(5, 3)
    expected = Path.NATIVE_SPARSE if native_build.library() is not None else Path.TORCH_DENSE
    assert choose_path(layer.basis, x, layer.edge_weights()) is expected
    monkeypatch.setenv(native_build.ENV_SWITCH, "0")
    assert choose_path(layer.basis, x, layer.edge_weights()) is Path.TORCH_DENSE
    layer.update_grid(torch.randn(50, 3) ** 3)
    assert choose_path(layer.basis, x, layer.edge_weights()) is Path.TORCH_KNOTS


def test_unknown_forced_path_is_a_clear_error():
    layer = kantk.KANLayer(3, 4)
    layer.basis.path = "gpu"
    with pytest.raises(ValueError, match="gpu"):
        layer(torch.rand(2, 3))
