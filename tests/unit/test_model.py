from __future__ import annotations

import pytest
import torch

import kantk


def test_widths_layers_and_shapes():
    model = kantk.KAN([2, 5, 1])
    assert model.widths == [2, 5, 1]
    assert [(l.in_features, l.out_features) for l in model.layers] == [(2, 5), (5, 1)]
    assert model(torch.rand(10, 2)).shape == (10, 1)
    assert model(torch.rand(3, 4, 2)).shape == (3, 4, 1)  # leading dims like nn.Linear
    assert model(torch.rand(2)).shape == (1,)


def test_mixed_bases_per_layer():
    model = kantk.KAN(
        [2, 3, 1],
        basis=["chebyshev", "rbf"],
        basis_kwargs=[{"degree": 4}, {"num_centers": 6}],
        base_activation=["silu", "zero"],
    )
    assert [l.basis_name for l in model.layers] == ["chebyshev", "rbf"]
    assert model.layers[0].num_functions == 5 and model.layers[1].num_functions == 6
    assert model(torch.rand(4, 2)).shape == (4, 1)


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = kantk.KAN([2, 3, 1], seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    b = kantk.KAN([2, 3, 1], seed=3)
    c = kantk.KAN([2, 3, 1], seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.layers[0].coef, c.layers[0].coef)


@pytest.mark.parametrize("widths", [[2], [], [2, 0, 1], [2, -1], [2, 1.5], "2,1", 3])
def test_bad_widths(widths):
    with pytest.raises(ValueError, match="widths"):
        kantk.KAN(widths)


def test_bad_per_layer_lists_and_input():
    with pytest.raises(ValueError, match="2 layers"):
        kantk.KAN([2, 3, 1], basis=["bspline"])
    with pytest.raises(kantk.UnknownComponentError, match="known basis names: bspline, chebyshev"):
        kantk.KAN([2, 1], basis="splines")
    model = kantk.KAN([2, 3, 1])
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 2\), got \(4, 3\)"):
        model(torch.rand(4, 3))
    with pytest.raises(TypeError):
        model([[0.0, 1.0]])


def test_config_rebuilds_same_structure():
    model = kantk.KAN([3, 2, 2], basis=["bspline", "rbf"], basis_kwargs=[{"grid_size": 7}, None])
    again = kantk.KAN.from_config(model.config())
    assert again.config() == model.config()
    with pytest.raises(ValueError, match="not a valid KAN config"):
        kantk.KAN.from_config({"widths": [2, 1]})


def test_cuda_or_meta_device_follow_tensors():
    model = kantk.KAN([2, 2, 1]).to("meta")
    assert model(torch.empty(5, 2, device="meta")).device.type == "meta"


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 1.5, True, "3"])
def test_a_seed_outside_torchs_range_or_not_an_int_is_one_line(seed):
    """2**64 gave torch's "Overflow when unpacking long long"; 1.5 and "3" were truncated/converted."""
    for build in (
        lambda: kantk.KAN([2, 1], seed=seed),
        lambda: kantk.create_dataset("x1", n_vars=1, train_num=4, test_num=4, seed=seed),
    ):
        with pytest.raises(ValueError, match=r"seed must be a whole number from -2\*\*63 to 2\*\*64-1, got "):
            build()
    assert kantk.KAN([2, 1], seed=2**64 - 1).widths == [2, 1]  # torch's whole range stays accepted


def test_whole_seeds_of_any_number_type_are_accepted_as_before():
    import numpy as np

    want = kantk.KAN([2, 3, 1], seed=3).layers[0].coef
    for seed in (3.0, np.float64(3.0), np.int64(3), torch.tensor(3)):
        assert torch.equal(kantk.KAN([2, 3, 1], seed=seed).layers[0].coef, want), seed


def test_pykans_argument_names_get_kantks_spelling():
    """A notebook moved from pykan got Python's answer, naming a class the user never called:
    "KANLayer.__init__() got an unexpected keyword argument 'grid'"."""
    import inspect

    import kantk

    cases = [
        (
            lambda: kantk.KAN([2, 5, 1], grid=3, k=3),
            r"^KAN\(\) takes no argument 'grid' \(pykan's\); kantk: basis_kwargs=\{\"grid_size\": G\}",
        ),
        (
            lambda: kantk.KAN(width=[2, 5, 1]),
            r"KAN\(\) takes no argument 'width' \(pykan's\); kantk: widths, the first argument",
        ),
        (lambda: kantk.KAN([2, 1], device="cpu"), r"'device' \(pykan's\); kantk: model.to\(device\)"),
        (
            lambda: kantk.fit(kantk.KAN([1, 1]), {}, opt="LBFGS"),
            r"^fit\(\) takes no argument 'opt' \(pykan's\); kantk: optimizer=",
        ),
        (
            lambda: kantk.fit(kantk.KAN([1, 1]), {}, lamb=0.01),
            r"'lamb' \(pykan's\); kantk: regularisers=\{\"l1_entropy\"",
        ),
        (
            lambda: kantk.auto_symbolic(kantk.KAN([1, 1]), torch.zeros(3, 1), lib=["x"]),
            r"^auto_symbolic\(\) takes no argument 'lib'",
        ),
        (
            lambda: kantk.symbolic_formula(kantk.KAN([1, 1]), var=["a"]),
            r"'var' \(pykan's\); kantk: var_names=",
        ),
        (lambda: kantk.create_dataset("x1", n_var=1), r"'n_var' \(pykan's\); kantk: n_vars="),
        (lambda: kantk.refine(kantk.KAN([1, 1]), new_grid=10), r"^refine\(\) takes no argument 'new_grid'"),
        # these gave Python's "unexpected keyword argument" alone
        (
            lambda: kantk.surgery.expand_width(kantk.KAN([1, 1, 1]), 1, 1, sum_bool=False),
            r"^expand_width\(\) takes no argument 'sum_bool' \(pykan's\); kantk: op=\"sum\"",
        ),
        (
            lambda: kantk.suggest_symbolic(kantk.KAN([1, 1]), 0, 0, 0, torch.zeros(3, 1), lib=["x"]),
            r"^suggest_symbolic\(\) takes no argument 'lib'",
        ),
        (
            lambda: kantk.fix_symbolic(kantk.KAN([1, 1]), 0, 0, 0, "x", fit_params_bool=False),
            r"'fit_params_bool' \(pykan's\); kantk: fit_params=",
        ),
        (
            lambda: kantk.plot_activations(kantk.KAN([1, 1]), torch.zeros(3, 1), folder="figures"),
            r"^plot_activations\(\) takes no argument 'folder' \(pykan's\); kantk: path=",
        ),
    ]
    for call, message in cases:
        with pytest.raises(TypeError, match=message):
            call()
    assert "widths" in inspect.signature(kantk.KAN).parameters  # signatures still read through
    assert "optimizer" in inspect.signature(kantk.fit).parameters
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        kantk.fit(kantk.KAN([1, 1]), {}, colour=1)  # other names: Python's own error
