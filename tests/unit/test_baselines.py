"""kantk.MLP (pykan's MLP baseline), count_parameters, and training an MLP on kantk.fit's engine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kantk
from kantk.baselines import ACTIVATIONS, MLP, count_parameters
from kantk.lightning import GridExtension, GridUpdateCallback, KANModule
from kantk.lightning.module import MLPModule


@pytest.fixture(scope="module")
def product_data():
    return kantk.create_dataset("x1*x2", n_vars=2, train_num=200, test_num=200, seed=0)


def _rmse(model: nn.Module, data: dict) -> float:
    with torch.no_grad():
        return float((model(data["test_input"]) - data["test_label"]).square().mean().sqrt())


# --- the model ---------------------------------------------------------------------------------


def test_shapes_and_leading_dimensions():
    model = MLP([3, 8, 8, 2])
    assert model(torch.rand(5, 3)).shape == (5, 2)
    assert model(torch.rand(4, 5, 3)).shape == (4, 5, 2)
    assert [(layer.in_features, layer.out_features) for layer in model.layers] == [(3, 8), (8, 8), (8, 2)]
    with pytest.raises(ValueError, match=r"MLP\[3, 8, 8, 2\] expects input of shape \(\.\.\., 3\)"):
        model(torch.rand(5, 2))


def test_layers_and_activation_placement():
    """Linear, activation, Linear, ...: no activation after the last layer."""
    model = MLP([2, 4, 3], activation="relu", seed=1)
    x = torch.randn(16, 2)
    first, last = model.layers
    expected = last(torch.relu(first(x)))
    assert torch.equal(model(x), expected)


def test_seed_is_deterministic_and_leaves_the_global_state_alone():
    state = torch.get_rng_state()
    a, b, c = MLP([2, 5, 1], seed=1), MLP([2, 5, 1], seed=1), MLP([2, 5, 1], seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


@pytest.mark.parametrize("dtype", [None, torch.float64])
def test_init_is_torch_default_under_the_seed(dtype):
    """The same parameters as torch.manual_seed(seed) and nn.Linear layers in order (pykan's MLP)."""
    model = MLP([3, 7, 2], seed=4, dtype=dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        reference = [nn.Linear(3, 7, dtype=dtype), nn.Linear(7, 2, dtype=dtype)]
    for ours, theirs in zip(model.layers, reference):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


def test_seed_none_draws_from_the_global_state():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        a = MLP([2, 3, 1], seed=None)
        torch.manual_seed(0)
        b = MLP([2, 3, 1], seed=None)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)


def test_dtype():
    model = MLP([2, 3, 1], dtype=torch.float64)
    assert model.dtype == torch.float64 and all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.rand(4, 2, dtype=torch.float64)).dtype == torch.float64
    assert MLP([2, 3, 1]).dtype == torch.get_default_dtype()
    # drawn in float64, not float32 values cast up
    assert not torch.equal(model.layers[0].weight, MLP([2, 3, 1]).layers[0].weight.double())
    with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
        MLP([2, 3, 1], dtype=torch.int64)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds_and_runs(name):
    model = MLP([2, 4, 1], activation=name)
    assert model.activation == name and torch.isfinite(model(torch.randn(8, 2))).all()


@pytest.mark.parametrize(
    "widths",
    [[2], [2, 0, 1], [2, True, 1], [2.0, 1], "21", 3],
    ids=["one", "zero", "bool", "float", "str", "int"],
)
def test_bad_widths(widths):
    with pytest.raises(ValueError, match="MLP widths must be a list of at least two ints >= 1"):
        MLP(widths)


def test_bad_activation_and_seed():
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid activations: silu, relu"):
        MLP([2, 1], activation="swish")
    with pytest.raises(ValueError, match="seed must be an int"):
        MLP([2, 1], seed=1.5)


def test_count_parameters():
    assert count_parameters(MLP([2, 16, 1])) == 2 * 16 + 16 + 16 * 1 + 1
    # KAN [2, 5, 1], B-splines G=5, k=3: 15 edges x (G + k coefficients + scale_base + scale_sp)
    assert count_parameters(kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 5, "order": 3})) == 15 * 10
    frozen = MLP([2, 3, 1])
    frozen.layers[0].requires_grad_(False)
    assert count_parameters(frozen) == 3 + 1
    assert count_parameters(frozen, trainable=False) == 2 * 3 + 3 + 3 + 1
    with pytest.raises(TypeError, match="count_parameters takes an nn.Module"):
        count_parameters([1, 2])


def test_lazy_exports():
    assert kantk.MLP is MLP and kantk.count_parameters is count_parameters
    assert {"MLP", "count_parameters"} <= set(kantk.__all__)


# --- training on kantk.fit's engine ------------------------------------------------------------


def test_fit_lbfgs_reduces_the_loss(product_data):
    model = MLP([2, 16, 1], seed=0)
    before = _rmse(model, product_data)
    history = kantk.fit(model, product_data, steps=10, progress=False)
    # measured: 0.30 -> 0.003 (about 100x); 10x leaves room for other CPUs' round-off
    assert history.test_rmse[-1] < before / 10
    assert history.test_rmse[-1] == pytest.approx(_rmse(model, product_data), rel=1e-4)
    assert len(history.test_rmse) == 10 and history.regularisation == [0.0] * 10


def test_fit_adam_with_seed_is_reproducible(product_data):
    def run() -> list[torch.Tensor]:
        model = MLP([2, 8, 1], seed=0)
        history = kantk.fit(model, product_data, steps=12, optimizer="adam", batch=50, seed=3, progress=False)
        assert history.eval_step == [10, 12]
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


def test_fit_float64_model_on_float32_data(product_data):
    model = MLP([2, 4, 1], dtype=torch.float64)
    kantk.fit(model, product_data, steps=2, progress=False)
    assert model.dtype == torch.float64


def test_fit_classification_and_custom_loss():
    moons = kantk.create_dataset(
        "x2 > sin(pi*x1)/2", n_vars=2, task="classification", train_num=200, test_num=100, seed=0
    )
    history = kantk.fit(MLP([2, 16, 2], seed=0), moons, steps=10, loss="cross_entropy", progress=False)
    assert history.test_accuracy[-1] > 0.8  # measured 0.97 after 10 LBFGS steps

    seen = []

    def mse(model, batch):
        seen.append(model)
        x, y = batch
        return (model(x) - y).square().mean()

    model = MLP([2, 4, 1], seed=0)
    data = kantk.create_dataset("x1*x2", n_vars=2, train_num=50, test_num=20, seed=0)
    history = kantk.fit(model, data, steps=2, loss=mse, progress=False)
    assert seen and all(m is model for m in seen) and history.train_rmse == []


def test_fit_nan_guard_restores_an_mlp(product_data):
    calls = 0

    def turns_nan(model, batch):
        nonlocal calls
        calls += 1
        x, y = batch
        value = (model(x) - y).square().mean()
        return value * float("nan") if calls >= 3 else value

    model = MLP([2, 4, 1], seed=0)
    with pytest.warns(UserWarning, match="kantk: training stopped at step 3"):
        history = kantk.fit(model, product_data, steps=6, optimizer="adam", loss=turns_nan, progress=False)
    assert len(history.train_loss) == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"regularisers": {"l1_entropy": 1e-3}}, "regularisers is KAN-only"),
        ({"grid_update_every": 5}, "grid_update_every is KAN-only"),
        ({"grid_update_until": 10}, "grid_update_until is KAN-only"),
        ({"grid_eps": 1.0}, "grid_eps is KAN-only"),
        ({"callbacks": [GridExtension([5, 10], every=2)]}, "GridExtension is KAN-only"),
        ({"callbacks": [GridUpdateCallback()]}, "GridUpdateCallback is KAN-only"),
        ({"regularisers": {"coef_l1": 1.0}, "grid_update_every": 1}, "regularisers, grid_update_every are"),
    ],
)
def test_fit_refuses_kan_only_options(product_data, kwargs, named):
    model = MLP([2, 3, 1], seed=0)
    start = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=named) as info:
        kantk.fit(model, product_data, steps=2, progress=False, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "an MLP trains with steps, optimizer, lr" in message
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_fit_accepts_empty_regularisers(product_data):
    kantk.fit(MLP([2, 3, 1]), product_data, steps=1, regularisers={}, progress=False)


def test_fit_refuses_other_modules(product_data):
    with pytest.raises(TypeError, match="kantk.fit trains a kantk.KAN or a kantk.MLP, got Sequential"):
        kantk.fit(nn.Sequential(nn.Linear(2, 1)), product_data, steps=1, progress=False)


# --- the Lightning module and checkpoints ------------------------------------------------------


def test_from_model_refusals():
    with pytest.raises(
        TypeError, match="KANModule.from_model expects a kantk.KAN, got MLP; train a kantk.MLP"
    ):
        KANModule.from_model(MLP([2, 1]))
    with pytest.raises(
        TypeError, match="MLPModule.from_model expects a kantk.MLP, got KAN; train a kantk.KAN"
    ):
        MLPModule.from_model(kantk.KAN([2, 1]))
    with pytest.raises(TypeError, match="grid_eps: KAN-only"):
        MLPModule.from_model(MLP([2, 1]), grid_eps=0.5)
    with pytest.raises(TypeError, match="do not pass activation"):
        MLPModule.from_model(MLP([2, 1]), activation="relu")


def test_checkpoint_round_trip_and_cross_refusals(tmp_path, product_data):
    model = MLP([2, 8, 1], activation="tanh", dtype=torch.float64, seed=0)
    kantk.fit(model, product_data, steps=3, log_dir=tmp_path / "mlp", progress=False)
    (path,) = (tmp_path / "mlp").rglob("*.ckpt")
    restored = MLPModule.load_from_checkpoint(path, weights_only=True)
    assert restored.model.config() == {"widths": [2, 8, 1], "activation": "tanh"}
    x = torch.rand(5, 2, dtype=torch.float64)
    assert torch.equal(restored.model(x), model(x))
    assert (tmp_path / "mlp" / "kantk" / "version_0" / "metrics.csv").is_file()

    with pytest.raises(ValueError, match="holds a kantk.MLP, not a KAN: load it with .*MLPModule"):
        KANModule.load_from_checkpoint(path, weights_only=True)
    kan = kantk.KAN([2, 3, 1], basis="chebyshev", seed=0)  # no native B-spline build needed
    kantk.fit(kan, product_data, steps=1, log_dir=tmp_path / "kan", progress=False)
    (kan_path,) = (tmp_path / "kan").rglob("*.ckpt")
    with pytest.raises(ValueError, match="holds a kantk.KAN, not an MLP: load it with .*KANModule"):
        MLPModule.load_from_checkpoint(kan_path, weights_only=True)


def test_kantk_save_stays_kan_only(tmp_path):
    with pytest.raises(TypeError, match="kantk.save expects a kantk.KAN, got MLP"):
        kantk.save(MLP([2, 1]), tmp_path / "m.kantk")
    assert list(tmp_path.iterdir()) == []


def test_mlp_module_with_a_trainer(tmp_path):
    """MLPModule built from plain arguments, trained by a Trainer of the unified package too."""
    lightning = pytest.importorskip("lightning")
    from kantk.lightning.unified.module import MLPModule as UnifiedMLPModule

    from kantk.lightning.unified import FunctionDataModule

    module = UnifiedMLPModule([2, 8, 1], optimizer="lbfgs", init_seed=0, dtype="float64")
    assert module.hparams["activation"] == "silu" and "basis" not in module.hparams
    trainer = lightning.Trainer(
        max_steps=3,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=FunctionDataModule("x1*x2", n_vars=2, train_num=64, test_num=16))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = MLPModule.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert restored.model.dtype == torch.float64
    x = torch.rand(4, 2, dtype=torch.float64)
    assert torch.equal(restored(x), module(x))
