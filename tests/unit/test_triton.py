"""The Triton kernels (kantk.bases.gpu) against the PyTorch path, forward and both gradients.

Without a CUDA device they run in Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set
here before the kernels are defined); with one, on the GPU. Sizes are ragged on purpose (they do
not divide the tile sizes), and inputs reach beyond the grid.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from triton_env import interpreter_problem  # noqa: E402

if problem := interpreter_problem():
    pytest.skip(problem, allow_module_level=True)

import kantk  # noqa: E402
from kantk.bases import EdgeWeights, edge_sum, gpu  # noqa: E402
from kantk.bases.bspline import Path, choose_path  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True, params=["gemm", "fused"])
def triton_form(request, monkeypatch):
    """Every test runs on both forms of the kernels (see kantk.bases.gpu.launch.form)."""
    monkeypatch.setenv("KANTK_TRITON_FORM", request.param)
    return request.param


# the interpreter emulates float16 but not bfloat16
LOW = torch.bfloat16 if DEVICE == "cuda" else torch.float16
TOL = {torch.float32: 3e-5, torch.float64: 1e-11}


def _grads(fn, x, params):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    w = torch.linspace(-1.0, 2.0, y.shape[-1], dtype=y.dtype, device=y.device)
    grads = torch.autograd.grad((y * w).sum(), [x, *params], allow_unused=True)
    return y.detach(), grads


def _assert_same_run(y, grads, y_ref, grads_ref):
    """Values and gradients (float64) of one computation run two ways (e.g. in chunks of rows and
    in one piece): equal to round-off; a gradient missing from the reference is absent or zero."""
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    for a, b in zip(grads, grads_ref):
        if b is None:
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def _compare(layer, x, reference_path: str, tol: float, path: str = "triton"):
    params = [p for p in layer.parameters() if p.requires_grad]
    layer.basis.path = path
    assert choose_path(layer.basis, x, layer.edge_weights()) is Path(path)
    y, g = _grads(layer, x, params)
    layer.basis.path = reference_path
    y_ref, g_ref = _grads(layer, x, params)
    scale = y_ref.abs().max().clamp_min(1.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=tol * scale)
    for a, b in zip(g, g_ref):
        if b is None:  # e.g. the base weight of a layer without a base branch
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10 * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kwargs, base",
    [
        ({}, "silu"),
        ({"grid_size": 40}, "silu"),  # large grid
        ({"grid_size": 7, "grid_range": (-3.0, 0.5)}, "zero"),
        ({"extrapolate": "clamp"}, "identity"),
        ({"extrapolate": "extend"}, "silu"),
    ],
)
def test_bspline_kernels_match_the_pytorch_path_on_uniform_grids(dtype, kwargs, base):
    torch.manual_seed(0)
    layer = kantk.KANLayer(19, 23, basis_kwargs=kwargs, base_activation=base).to(device=DEVICE, dtype=dtype)
    x = torch.randn(37, 19, dtype=dtype, device=DEVICE) * 1.6  # inside, on the extension, beyond
    _compare(layer, x, "torch_dense", TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("extrapolate", ["zero", "extend"])
def test_bspline_kernels_match_de_boor_on_moved_knots(dtype, extrapolate):
    torch.manual_seed(1)
    layer = kantk.KANLayer(5, 17, basis_kwargs={"grid_size": 6, "extrapolate": extrapolate})
    layer = layer.to(device=DEVICE, dtype=dtype)
    layer.update_grid(torch.randn(300, 5, dtype=dtype, device=DEVICE) ** 3)  # uneven knots
    assert not layer.basis.is_uniform()
    x = torch.randn(41, 5, dtype=dtype, device=DEVICE) * 2
    _compare(layer, x, "torch_knots", TOL[dtype])


def test_nan_input_gives_nan_output_and_huge_inputs_stay_finite():
    layer = kantk.KANLayer(3, 2).to(DEVICE)
    layer.basis.path = "triton"
    x = torch.tensor([[float("nan"), 0.1, 0.2], [1e30, -1e30, 0.3]], device=DEVICE)
    y = layer(x)
    assert torch.isnan(y[0]).all()
    assert torch.isfinite(y[1]).all()


@pytest.mark.parametrize("path", ["triton", "triton_sparse"])
@pytest.mark.parametrize("moved", [False, True], ids=["uniform", "knots"])
def test_inputs_far_outside_the_grid_have_zero_input_gradient(path, moved):
    """From |x| ~ 1e19 (float32) and at +-inf the backward gave NaN for dy/dx (every other path:
    0): the uniform kernels built the local pieces from the unclamped position (their derivatives
    overflowed, and inf times the zero of a missing basis is NaN), the knots kernels from inf."""
    torch.manual_seed(0)
    layer = kantk.KANLayer(1, 2, base_activation="zero").to(DEVICE)  # silu'(inf) is NaN itself
    if moved:
        layer.update_grid(torch.randn(100, 1, device=DEVICE) ** 3)
    x = torch.tensor([[0.3], [1e20], [-1e20], [float("inf")], [-float("inf")]], device=DEVICE)
    layer.basis.path = "torch_knots" if moved else "torch_dense"
    _, (g_ref, *_) = _grads(layer, x, [])
    layer.basis.path = path
    _, (g, *_) = _grads(layer, x, [])
    assert torch.isfinite(g).all(), g
    torch.testing.assert_close(g, g_ref, rtol=TOL[torch.float32], atol=1e-6)


def test_double_backward_falls_back_to_the_differentiable_path():
    torch.manual_seed(2)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 4}).to(device=DEVICE, dtype=torch.float64)
    layer.basis.path = "triton"
    x = (torch.rand(6, 3, dtype=torch.float64, device=DEVICE) * 2.4 - 1.2).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("basis, kwargs", [("chebyshev", {"degree": 7}), ("rbf", {"num_centers": 9})])
def test_chebyshev_and_rbf_kernels_match_their_pytorch_form(dtype, basis, kwargs):
    torch.manual_seed(3)
    layer = kantk.KANLayer(21, 18, basis=basis, basis_kwargs=kwargs).to(device=DEVICE, dtype=dtype)
    x = torch.randn(35, 21, dtype=dtype, device=DEVICE) * 1.5
    params = list(layer.parameters())
    fused = getattr(gpu, basis)
    y, g = _grads(lambda inp: fused(layer.basis, inp, layer.edge_weights()), x, params)
    y_ref, g_ref = _grads(lambda inp: edge_sum(layer.basis, inp, layer.edge_weights()), x, params)
    tol = TOL[dtype]
    scale = y_ref.abs().max().clamp_min(1.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=tol * scale)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10 * scale)


def test_low_precision_products_stay_close_to_float32(triton_form):
    """Under autocast the kernels multiply in bf16 (fp16 in the interpreter) with float32
    accumulation (on a GPU: tensor cores) and return float32 values and gradients: within their
    rounding of the float32 ones."""
    from kantk.bases.gpu import common, launch

    torch.manual_seed(4)
    layer = kantk.KANLayer(33, 20).to(DEVICE)
    x = torch.rand(50, 33, device=DEVICE) * 2 - 1
    w = layer.edge_weights()
    basis = layer.basis
    grid = basis.grid.double()
    p0, p1 = grid[:, 0], (grid.shape[1] - 1) / (grid[:, -1] - grid[:, 0])
    spec = common.KernelSpec(
        common.BSPLINE_UNIFORM, basis.num_functions, common.BASE_SILU, False, lambda *a: None
    )

    def run(low):
        def edges(inp):
            ww = layer.edge_weights()
            return launch.layer_edges(inp, inp, ww.coef, ww.scale, ww.base_weight, spec, p0, p1, low=low)

        return _grads(edges, x, [layer.coef, layer.scale_sp, layer.scale_base])

    (y32, g32), (y16, g16) = run(None), run(LOW)
    assert y16.dtype == torch.float32
    assert w.base_weight is not None
    scale = float(y32.abs().max())
    torch.testing.assert_close(y16, y32, rtol=0, atol=3e-2 * scale)
    for a, b in zip(g16, g32):  # input and weight gradients (float32 results of low products)
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=3e-2 * float(b.abs().max()))


def test_edge_weights_record_gives_the_generic_edge_sum():
    layer = kantk.KANLayer(3, 2, basis="chebyshev")
    x = torch.rand(4, 3)
    w: EdgeWeights = layer.edge_weights()
    expected = layer.basis(x).reshape(4, -1) @ w.spline_weight().reshape(2, -1).t()
    expected = expected + torch.nn.functional.silu(x) @ w.base_weight.t()
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kwargs, base, moved",
    [
        ({"grid_size": 40}, "silu", False),
        ({"grid_size": 7, "extrapolate": "extend"}, "zero", False),
        ({"grid_size": 9, "extrapolate": "clamp"}, "identity", True),
        ({"grid_size": 6}, "silu", True),
    ],
)
@pytest.mark.xfail(
    DEVICE == "cuda",
    reason="triton_sparse gave wrong forward values on an H200 (2026-12-04, 3-D tiles); rewritten "
    "in 2-D tiles (2026-12-06), passes in the interpreter, not yet run on a GPU; opt-in until it is",
    strict=False,
)
def test_sparse_kernels_match_the_pytorch_path(dtype, kwargs, base, moved, triton_form):
    if triton_form != "gemm":
        pytest.skip("the sparse kernels have one form")
    torch.manual_seed(5)
    layer = kantk.KANLayer(11, 37, basis_kwargs=kwargs, base_activation=base).to(device=DEVICE, dtype=dtype)
    if moved:
        layer.update_grid(torch.randn(200, 11, dtype=dtype, device=DEVICE) ** 3)
    x = torch.randn(45, 11, dtype=dtype, device=DEVICE) * 1.6
    x[:12, 0] = 0.1  # many rows in one interval
    _compare(layer, x, "torch_knots" if moved else "torch_dense", TOL[dtype], path="triton_sparse")


@pytest.mark.xfail(DEVICE == "cuda", reason="as test_sparse_kernels_match_the_pytorch_path", strict=False)
def test_sparse_kernels_on_several_tiles_of_rows_and_outputs(triton_form, monkeypatch):
    """70 outputs and 40 rows in tiles of 32 outputs and 16 rows: three tiles of each, the last
    ones ragged."""
    if triton_form != "gemm":
        pytest.skip("the sparse kernels have one form")
    from kantk.bases.gpu import sparse

    monkeypatch.setattr(sparse, "SPARSE_TILES", {"forward": (16, 32, 4), "grad_input": (16, 32, 4)})
    torch.manual_seed(9)
    layer = kantk.KANLayer(3, 70, basis_kwargs={"grid_size": 12}).to(DEVICE)
    x = torch.randn(40, 3, device=DEVICE) * 1.6
    _compare(layer, x, "torch_dense", TOL[torch.float32], path="triton_sparse")


@pytest.mark.parametrize(
    "basis, kwargs",
    [
        ("bspline", {"extrapolate": "clamp"}),
        ("bspline", {"extrapolate": "extend"}),
        ("chebyshev", {"degree": 4}),
    ],
)
def test_double_backward_when_the_basis_sees_a_transformed_input(basis, kwargs):
    """Clamped B-spline inputs reach the kernels beside the raw input of the base branch, and
    Chebyshev's kernels squash the raw input themselves (one tensor in both slots): the second
    derivative must count the basis once, and the squash's own derivative."""
    torch.manual_seed(6)
    layer = kantk.KANLayer(3, 2, basis=basis, basis_kwargs=kwargs).to(device=DEVICE, dtype=torch.float64)
    x = (torch.rand(5, 3, dtype=torch.float64, device=DEVICE) * 2.8 - 1.4).requires_grad_()
    if basis == "bspline":
        layer.basis.path = "triton"
        run = layer
    else:

        def run(inp):
            return gpu.chebyshev(layer.basis, inp, layer.edge_weights())

    assert torch.autograd.gradcheck(run, (x,))
    assert torch.autograd.gradgradcheck(run, (x,))


class _CountLaunches:
    """Stands in for a Triton kernel and counts its launches (then runs it)."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]


@pytest.fixture
def gemm_launches(monkeypatch):
    """The GEMM form's two Triton kernels, counted: {"prepare": counter, "finish": counter}."""
    from kantk.bases.gpu import gemm

    counters = {}
    for name in ("prepare", "finish"):
        counters[name] = _CountLaunches(getattr(gemm, f"_{name}_kernel"))
        monkeypatch.setattr(gemm, f"_{name}_kernel", counters[name])
    return counters


@pytest.mark.parametrize("train_weights", [True, False])
def test_gemm_form_step_launches_two_kernels_and_keeps_a_small_basis_matrix(
    train_weights, triton_form, gemm_launches, monkeypatch
):
    """A small layer's training step launches two Triton kernels: one writes the basis matrix and
    composes the weight, one contracts the input gradient and splits the weight gradient (on a
    GPU small layers are bound by launches). The matrix is kept from the forward for the weight
    gradient's GEMM; above the size limit it is written again (one launch more); without weight
    gradients (frozen weights, a PDE's input gradient) nothing is kept or written again. Same
    values and gradients either way."""
    if triton_form != "gemm":
        pytest.skip("the fused form keeps no basis matrix")
    from kantk.bases.gpu import gemm

    torch.manual_seed(7)
    layer = kantk.KANLayer(9, 13).to(DEVICE)
    layer.basis.path = "triton"
    for p in layer.parameters():
        p.requires_grad_(train_weights)
    x = torch.randn(21, 9, device=DEVICE)

    def step():
        for counter in gemm_launches.values():
            counter.launches = 0
        params = [p for p in layer.parameters() if p.requires_grad]
        result = _grads(layer, x, params)
        return result, {name: c.launches for name, c in gemm_launches.items()}

    (y, grads), launches = step()
    assert launches == {"prepare": 1, "finish": 1}
    monkeypatch.setattr(gemm, "GEMM_KEEP_ELEMENTS", 0)
    (y2, grads2), launches = step()
    assert launches == {"prepare": 2 if train_weights else 1, "finish": 1}
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("base", ["silu", "zero"])
def test_gemm_form_in_chunks_of_rows_matches_one_chunk(base, triton_form, gemm_launches, monkeypatch):
    """A batch whose basis matrix exceeds GEMM_CHUNK_ELEMENTS runs in chunks of rows (the last one
    ragged): the weight is composed with the first chunk's matrix, its gradient split in the last
    chunk's launch (the edge mask applied in both); values and gradients as in one chunk."""
    if triton_form != "gemm":
        pytest.skip("chunks of rows are the GEMM form's")
    from kantk.bases.gpu import gemm

    torch.manual_seed(10)
    layer = kantk.KANLayer(5, 7, base_activation=base).to(device=DEVICE, dtype=torch.float64)
    layer.basis.path = "triton"
    with torch.no_grad():  # the mask is applied in the first chunk's compose and the last's split
        layer.mask[1, :] = 0.0
        layer.mask[3, 2] = -2.0
    x = torch.randn(23, 5, device=DEVICE, dtype=torch.float64) * 1.4
    params = list(layer.parameters())
    y, g = _grads(layer, x, params)
    n_w = layer.basis.num_functions + (base != "zero")
    monkeypatch.setattr(gemm, "GEMM_CHUNK_ELEMENTS", 8 * n_w * 5)  # 8 rows a chunk: 8, 8, 7
    for counter in gemm_launches.values():
        counter.launches = 0
    y2, g2 = _grads(layer, x, params)
    assert gemm_launches["prepare"].launches == 3 + 3  # forward, then again for dL/dw
    assert gemm_launches["finish"].launches == 3
    _assert_same_run(y2, g2, y, g)


@pytest.mark.parametrize("frozen", [False, True])
def test_an_empty_batch_gives_empty_values_and_zero_gradients(frozen, triton_form):
    """No rows (an empty last batch, an empty collocation mask): empty output, empty input
    gradient, zero weight gradients, on both forms."""
    layer = kantk.KANLayer(4, 3).to(DEVICE)
    layer.basis.path = "triton"
    for p in layer.parameters():
        p.requires_grad_(not frozen)
    x = torch.randn(0, 4, device=DEVICE)
    params = [p for p in layer.parameters() if p.requires_grad]
    y, grads = _grads(layer, x, params)
    assert y.shape == (0, 3) and grads[0].shape == (0, 4)
    for g in grads[1:]:
        assert g is not None and not g.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chebyshev_kernels_squash_moved_inputs_inside(dtype):
    """The kernels compute tanh((x - center) / halfwidth) themselves: after a grid update (centre
    and half width per input), on saturating inputs (|u| >> 1) and NaN, as the PyTorch form."""
    torch.manual_seed(8)
    layer = kantk.KANLayer(6, 5, basis="chebyshev", basis_kwargs={"degree": 5}).to(device=DEVICE, dtype=dtype)
    layer.update_grid(torch.randn(100, 6, dtype=dtype, device=DEVICE) * 3 + 1)
    assert not torch.allclose(layer.basis.halfwidth, torch.ones_like(layer.basis.halfwidth))
    x = torch.randn(29, 6, dtype=dtype, device=DEVICE) * 4
    x[0, :3] = torch.tensor([40.0, -60.0, 1e4])  # tanh saturated: z = +-1 exactly
    params = list(layer.parameters())
    y, g = _grads(lambda inp: gpu.chebyshev(layer.basis, inp, layer.edge_weights()), x, params)
    y_ref, g_ref = _grads(lambda inp: edge_sum(layer.basis, inp, layer.edge_weights()), x, params)
    scale = y_ref.abs().max().clamp_min(1.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=TOL[dtype] * scale)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * scale)
    x[1, 2] = float("nan")
    out = gpu.chebyshev(layer.basis, x, layer.edge_weights())
    assert torch.isnan(out[1]).all() and torch.isfinite(out[torch.arange(29) != 1]).all()


@pytest.mark.parametrize("base, kwargs", [("silu", {"extrapolate": "clamp"}), ("zero", {})])
def test_row_offsets_past_32_bits_run_in_chunks_of_rows(base, kwargs, triton_form, monkeypatch, request):
    """The fused and sparse kernels address rows with 32-bit offsets: a batch with rows * width
    at the limit runs in chunks of rows below it (here a limit of 4 rows of the widest side: 23
    rows in 6 chunks), with the values and gradients of one call; clamped inputs reach the kernels
    beside the raw ones of the base branch, chunked alike. On the GEMM form's run this takes the
    sparse kernels (the GEMM form is chunked by its own limit)."""
    from kantk.bases.gpu import fused, launch, sparse

    path = "triton_sparse" if triton_form == "gemm" else "triton"
    if path == "triton_sparse" and DEVICE == "cuda":
        request.applymarker(
            pytest.mark.xfail(reason="as test_sparse_kernels_match_the_pytorch_path", strict=False)
        )
    kernel = (sparse, "_sparse_forward_kernel") if path == "triton_sparse" else (fused, "_forward_kernel")
    counter = _CountLaunches(getattr(*kernel))
    monkeypatch.setattr(*kernel, counter)
    torch.manual_seed(12)
    layer = kantk.KANLayer(5, 7, basis_kwargs=kwargs, base_activation=base)
    layer = layer.to(device=DEVICE, dtype=torch.float64)
    layer.basis.path = path
    x = torch.randn(23, 5, device=DEVICE, dtype=torch.float64) * 1.4
    params = list(layer.parameters())
    y, g = _grads(layer, x, params)
    assert counter.launches == 1
    monkeypatch.setattr(launch, "ROW_INDEX_LIMIT", 4 * 7 + 3)  # 4 rows of 7 outputs
    y2, g2 = _grads(layer, x, params)
    assert counter.launches == 1 + 6
    _assert_same_run(y2, g2, y, g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("basis, base", [("bspline", "silu"), ("bspline", "zero"), ("chebyshev", "silu")])
def test_pruned_edges_are_masked_inside_the_kernels(dtype, basis, base, triton_form):
    """The layer hands its mask to the kernels instead of multiplying w_s and w_b by it (two ops
    and two autograd nodes fewer a step): edges masked to 0 or scaled give the PyTorch path's
    values, and w_s and w_b of a masked edge get no gradient. No product of the record is made."""
    from kantk.bases.base import edge_sum

    torch.manual_seed(13)
    layer = kantk.KANLayer(6, 5, basis=basis, base_activation=base).to(device=DEVICE, dtype=dtype)
    with torch.no_grad():
        layer.mask[0, :] = 0.0  # a pruned output's edges
        layer.mask[2, 3] = 0.0
        layer.mask[4, 1] = 0.5  # any factor, as pykan users write mask.data
    x = torch.randn(17, 6, dtype=dtype, device=DEVICE) * 1.4
    params = [layer.coef, layer.scale_sp, layer.scale_base]
    records = []

    def triton(inp):
        w = layer.edge_weights()
        records.append(w)
        return getattr(gpu, basis)(layer.basis, inp, w)

    def reference(inp):
        return edge_sum(layer.basis, inp, layer.edge_weights())

    y, g = _grads(triton, x, params)
    y_ref, g_ref = _grads(reference, x, params)
    assert records and not records[0]._products  # scale and base weight never multiplied out
    scale = y_ref.abs().max().clamp_min(1.0)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=TOL[dtype] * scale)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10 * scale)
    g_coef, g_scale, g_base = g[1:]  # g[0]: the input's
    for grad in (g_coef, g_scale, g_base):  # masked edges: no gradient (no base branch: None)
        assert grad is None or not (grad[0].any() or grad[2, 3].any())
    assert g_scale[4, 1] != 0


def test_masked_double_backward_and_a_mask_that_requires_grad():
    """The double backward (differentiable reference) applies the mask too; a mask that requires
    grad (not the layer's buffer) is multiplied out by PyTorch so it gets its gradient."""
    torch.manual_seed(14)
    layer = kantk.KANLayer(3, 2, basis_kwargs={"grid_size": 4}).to(device=DEVICE, dtype=torch.float64)
    layer.basis.path = "triton"
    with torch.no_grad():
        layer.mask[1, 0] = 0.0
        layer.mask[0, 2] = 0.3
    x = (torch.rand(6, 3, dtype=torch.float64, device=DEVICE) * 2.4 - 1.2).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))
    params = [x, *layer.parameters()]
    plain = torch.autograd.grad(layer(x).sum(), params)
    graphed = torch.autograd.grad(layer(x).sum(), params, create_graph=True)  # the reference's
    for a, b in zip(graphed, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    mask = layer.mask.clone().requires_grad_()
    w = kantk.bases.MaskedEdgeWeights.of(layer.coef, layer.scale_sp, layer.scale_base, mask, "silu")
    y = gpu.bspline(layer.basis, x.detach(), w)
    (grad,) = torch.autograd.grad(y.sum(), mask)
    layer.basis.path = "torch_dense"
    y_ref = layer.basis.fused_edges(x.detach(), w)
    (grad_ref,) = torch.autograd.grad(y_ref.sum(), mask)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-12)
    assert grad.abs().sum() > 0


def test_a_float64_layer_under_autocast_stays_float64_on_the_forced_triton_path():
    """Autocast never lowers float64, and the other paths switch it off; the kernels ran the
    products in the autocast dtype (4e-4 off in the interpreter's float16)."""
    torch.manual_seed(0)
    layer = kantk.KANLayer(13, 7).double().to(DEVICE)
    x = torch.rand(20, 13, dtype=torch.float64, device=DEVICE) * 2 - 1
    ys = {}
    for path in ("torch_dense", "triton"):
        layer.basis.path = path
        with torch.autocast(DEVICE, dtype=LOW):
            ys[path] = layer(x)
    assert gpu.low_precision(x) is None
    torch.testing.assert_close(ys["triton"], ys["torch_dense"], rtol=0, atol=TOL[torch.float64])


def test_a_forced_triton_path_hands_over_what_the_kernels_cannot_take():
    """Half-precision tensors (the kernels' floor/exp take float32/float64 only) and layers whose
    weight-sized buffers would outgrow the kernels' 32-bit offsets take the path "auto" takes."""
    from kantk.bases.bspline import Case, choose

    layer = kantk.KANLayer(5, 4).half()
    layer.basis.path = "triton"
    x = torch.randn(9, 5).half()
    assert choose_path(layer.basis, x, layer.edge_weights()) is not Path.TRITON
    assert layer(x).dtype == torch.float16
    huge = torch.empty(4700, 4700, 100, device="meta")  # 4 * 104 * 4700**2 > 2**31: offsets wrap
    assert not gpu.kernels_fit(torch.empty(1, device="meta"), huge)
    assert gpu.kernels_fit(torch.empty(1, device="meta"), torch.empty(256, 256, 8, device="meta"))
    for force in ("triton", "triton_sparse"):
        case = Case("cuda", torch.float32, uniform=True, order=3, force=force, triton_fits=False)
        assert choose(case) not in (Path.TRITON, Path.TRITON_SPARSE)
        assert choose(Case("cuda", torch.float32, uniform=True, order=3, force=force)) is Path(force)


def test_kernels_launch_with_the_inputs_cuda_device_current(monkeypatch):
    """Triton launches on the current CUDA device: a layer on cuda:1 while device 0 is current ran
    its kernels on GPU 0. The entry points make the input's device current (checked with a stand-in
    for torch.cuda.device; the interpreter's CPU tensors need none)."""
    import contextlib
    from types import SimpleNamespace

    from kantk.bases.gpu import launch

    entered = []

    @contextlib.contextmanager
    def device(d):
        entered.append(d)
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    seen = []
    run = launch.on_input_device(lambda xs, *args: seen.append(list(entered)) or xs)
    on_gpu1 = SimpleNamespace(device=torch.device("cuda", 1))
    assert run(on_gpu1, 5) is on_gpu1 and seen == [[torch.device("cuda", 1)]]
    entered.clear()
    run(torch.zeros(1))
    assert entered == []
    assert launch.layer_edges.__wrapped__ and launch.fused_edges.__wrapped__  # both entry points
