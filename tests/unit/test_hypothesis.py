from __future__ import annotations

import math

import pytest
import torch

import kantk
from kantk import hypothesis
from kantk.model import default_dtype


def _x(n: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(200, n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def seed_f(x):
    return torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)


def product3(x):
    return x[:, 0] * x[:, 1] * x[:, 2]


def sin_prod_plus(x):
    return torch.sin(x[:, 0] * x[:, 1]) + x[:, 2]


def test_seed_formula_is_multiplicatively_not_additively_separable():
    x = _x(2)
    assert hypothesis.separability(seed_f, x, "mul").groups == [[0], [1]]  # additive inside exp
    assert hypothesis.separability(seed_f, x, "add").groups == [[0, 1]]


def test_product_is_multiplicatively_separable():
    x = _x(3, 0.5, 2.0)
    result = hypothesis.separability(product3, x, "mul")
    assert result.separable and result.groups == [[0], [1], [2]]
    assert hypothesis.test_separability(product3, x, [[0], [1, 2]], mode="mul")


def test_sin_of_product_does_not_separate_x1_x2():
    x = _x(3)
    add = hypothesis.separability(sin_prod_plus, x, "add")
    assert add.groups == [[0, 1], [2]]  # x3 additive, x1 and x2 bound together
    assert hypothesis.separability(sin_prod_plus, x, "mul").groups == [[0, 1, 2]]
    assert not hypothesis.test_separability(sin_prod_plus, x, [[0], [1], [2]])


def test_symmetry_and_tree():
    x = _x(3)
    assert hypothesis.test_symmetry(sin_prod_plus, x, [0, 1])
    assert not hypothesis.test_symmetry(sin_prod_plus, x, [1, 2])
    t = hypothesis.tree(sin_prod_plus, x)
    assert t.levels == [[[0], [1], [2]], [[0, 1], [2]], [[0, 1, 2]]]
    assert t.operations[(0, 1, 2)] == "+"
    seed = hypothesis.tree(seed_f, _x(2))
    assert seed.levels[-1] == [[0, 1]] and seed.operations[(0, 1)] == "*"


def test_works_on_a_model():
    model = kantk.formula_to_kan("exp(sin(pi*x1) + x2**2)", dtype=torch.float64)
    assert hypothesis.separability(model, _x(2), "mul").groups == [[0], [1]]
    assert hypothesis.feature_interaction(model, _x(2), 1) == {(0, 1): 1}
    assert hypothesis.feature_interaction(
        kantk.formula_to_kan("sin(x1) + x2**2", dtype=torch.float64), _x(2), 1
    ) == {(0, 1): 1}


def test_feature_interaction_counts_only_nodes_the_output_uses():
    """Every node was scored from a weight of 1, so hidden nodes cut off from the output still
    counted ({(0, 1): 3}); pykan's attribute(l, i) starts from the node's importance."""
    from kantk import surgery

    with default_dtype(torch.float64):
        model = kantk.KAN([2, 3, 1], seed=0)
    model = surgery.remove_edge(surgery.remove_edge(model, 1, 1, 0), 1, 2, 0)
    assert hypothesis.feature_interaction(model, _x(2), 1) == {(0, 1): 1}


def test_bad_arguments_say_what_is_accepted():
    with pytest.raises(ValueError, match="unknown mode 'plus'; valid modes: add, mul"):
        hypothesis.separability(seed_f, _x(2), "plus")
    model = kantk.formula_to_kan("sin(x1) + x2**2", dtype=torch.float64)
    for layer in (0, 2, True):  # True is an int to Python, not layer 1
        with pytest.raises(IndexError, match=rf"layer must be a node layer in \[1, 1\], got {layer}"):
            hypothesis.feature_interaction(model, _x(2), layer)


def test_plot_writes_only_where_asked(tmp_path):
    result = hypothesis.separability(seed_f, _x(2), "mul")
    path = tmp_path / "scores.png"
    fig = hypothesis.plot_scores(result, path=path)
    assert path.exists() and fig is not None


def test_plot_scores_leaves_matplotlibs_backend_alone():
    """plot_scores switched the backend to Agg: a notebook's later pyplot figures stopped showing."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        fig = hypothesis.plot_scores(hypothesis.separability(seed_f, _x(2), "mul"))
        assert matplotlib.get_backend() == "svg" and fig.axes
    finally:
        matplotlib.use(before)
    tree = hypothesis.tree(seed_f, _x(2))
    with pytest.raises(TypeError, match="plot_scores draws a Separability .*got GroupingTree"):
        hypothesis.plot_scores(tree)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: x[:, 0] + 2 * x[:, 1] - x[:, 2],
        lambda x: x[:, 0],
        lambda x: 0 * x[:, 0] + 1,
    ],
    ids=["linear", "one_input", "constant"],
)
def test_functions_without_curvature_score_zero(f):
    """A callable linear in its inputs (or constant in them) has a constant gradient with no graph:
    every test scores it 0 (separable, symmetric) instead of failing in autograd."""
    x = _x(3).double()
    sep = hypothesis.separability(f, x)
    assert sep.separable and sep.groups == [[0], [1], [2]]
    assert torch.equal(sep.scores, torch.zeros(3, 3, dtype=x.dtype))
    assert hypothesis.symmetry_score(f, x, [0, 1]) == 0.0
    hypothesis.tree(f, x)  # runs


def test_a_function_zero_everywhere_is_a_one_line_error_in_mul_mode():
    """log|f| of f = 0 has no finite second derivative anywhere: median() of nothing raised an
    IndexError."""
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    with pytest.raises(ValueError, match=r"log\|f\| \(mode='mul'\) are not finite on any sample"):
        hypothesis.separability(lambda v: v[:, 0] * 0, x, mode="mul")


def test_bad_variable_indices_and_constant_samples_are_one_line_errors():
    """Out-of-range indices ended in a bare torch IndexError (or were taken, when negative); samples
    constant in every variable scored 0 everywhere and read as 'separable'."""
    x = torch.rand(40, 3, dtype=torch.float64)

    def f(v):
        return v[:, 0] * v[:, 1] + v[:, 2]

    with pytest.raises(ValueError, match=r"group must list variable indices in \[0, 2\]"):
        hypothesis.symmetry_score(f, x, [0, 5])
    with pytest.raises(ValueError, match=r"groups must list variable indices in \[0, 2\]"):
        hypothesis.test_separability(f, x, [[0], [-1]])
    with pytest.raises(ValueError, match="same value in every row for every variable"):
        hypothesis.separability(f, torch.ones(40, 3, dtype=torch.float64))


def _pair(x):
    return x[:, 0] * x[:, 1] + torch.sin(x[:, 2])


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_answers_are_the_same_with_autograd_switched_off(context):
    """Under no_grad every derivative was 0, and every function read as separable and symmetric."""
    x = _x(3)
    model = kantk.formula_to_kan("x1*x2 + x3", dtype=torch.float64)
    with context():
        x_in = _x(3)  # an inference tensor under inference_mode
        assert hypothesis.separability(_pair, x_in).groups == [[0, 1], [2]]
        assert not hypothesis.test_symmetry(_pair, x_in, [1, 2])
        assert hypothesis.separability(model, x_in).groups == [[0, 1], [2]]
        assert hypothesis.tree(_pair, x_in).levels == hypothesis.tree(_pair, x).levels


def test_a_detached_function_and_non_finite_samples_are_refused():
    """Both read as 'separable, symmetric' (every score 0) without a word."""
    x = _x(3)
    for detached in (lambda v: _pair(v).detach(), lambda v: torch.ones(v.shape[0], dtype=v.dtype)):
        with pytest.raises(ValueError, match="f\\(x\\) does not require grad"):
            hypothesis.separability(detached, x)
    for bad in (math.nan, math.inf):
        x_bad = x.clone()
        x_bad[5, 1] = bad
        with pytest.raises(ValueError, match="x must be finite"):
            hypothesis.separability(_pair, x_bad)
        with pytest.raises(ValueError, match="x must be finite"):
            hypothesis.symmetry_score(_pair, x_bad, [0, 1])
        with pytest.raises(ValueError, match="x must be finite"):
            hypothesis.test_separability(_pair, x_bad, [[0], [1]])


def test_scores_are_shares_of_the_weaker_variable_s_effect():
    """Scores were divided by the largest of the matrix (then by f's spread): x2*x3 beside
    100*x1**2 or 100*x1 scored 0.005 (not linked; 0.47 and more now, the floor of 1 % of f's
    spread included: 47 times the threshold), and a 1e-9 interaction alone in an additive
    function scored 1 (linked). A variable f hardly depends on links with nothing."""
    x = _x(3)
    for big in (lambda v: 100 * v[:, 0] ** 2, lambda v: 100 * v[:, 0]):
        strong = hypothesis.separability(lambda v, big=big: big(v) + v[:, 1] * v[:, 2], x)
        assert strong.groups == [[0], [1, 2]] and float(strong.scores[1, 2]) > 0.1
    nuisance = hypothesis.separability(
        lambda v: v[:, 0] * v[:, 1] + v[:, 2] + 1e-4 * v[:, 3] ** 2 * v[:, 0], _x(4)
    )
    assert nuisance.groups == [[0, 1], [2], [3]]
    tiny = hypothesis.separability(lambda v: v.sum(dim=1) + 1e-9 * v[:, 0] * v[:, 1], x)
    assert tiny.groups == [[0], [1], [2]]
    # free of the units of f and x
    scaled = hypothesis.hessian_scores(lambda v: 1e3 * _pair(v / 1e-2), x * 1e-2)
    torch.testing.assert_close(scaled, hypothesis.hessian_scores(_pair, x))


def test_variables_in_no_group_are_one_more_group_as_in_pykan():
    """[[0]] asked nothing (True for any f); pykan's test also compares the listed variables
    with the rest."""
    x = _x(3)

    def f(v):
        return v[:, 0] * v[:, 2] + v[:, 1]

    assert not hypothesis.test_separability(f, x, [[0]])
    assert not hypothesis.test_separability(f, x, [[0], [1]])
    assert hypothesis.test_separability(f, x, [[1]])
    assert hypothesis.test_separability(f, x, [[0, 2], [1]])


def test_tree_levels_follow_pykan_s_molecules():
    """One pair was merged per level: [[0], [1], [2, 3]] sat between pykan's first two levels."""
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def f(v):
        return ((v[:, 0] ** 2 + v[:, 1] ** 2) ** 2 + (v[:, 2] ** 2 + v[:, 3] ** 2) ** 2) ** 2

    t = hypothesis.tree(f, x)
    assert t.levels == [[[0], [1], [2], [3]], [[0, 1], [2, 3]], [[0, 1, 2, 3]]]
    # a merge is labelled by what f itself does across its parts
    t = hypothesis.tree(_pair, _x(3))
    assert t.operations == {(0, 1): "?", (0, 1, 2): "+"}


def test_indices_as_numpy_gives_them_and_bad_groups_are_one_line_errors():
    import numpy as np

    x = _x(3)
    assert hypothesis.test_separability(_pair, x, [list(np.where([1, 1, 0])[0]), [np.int64(2)]])
    assert hypothesis.test_symmetry(_pair, x, torch.tensor([0, 1]))
    for groups in ([0, 1], "01", [[0], [0, 1]], [[True]]):
        with pytest.raises(ValueError, match="groups must"):
            hypothesis.test_separability(_pair, x, groups)
    with pytest.raises(ValueError, match="x must be a float tensor"):
        hypothesis.symmetry_score(_pair, x.tolist(), [0])
    for call in (
        lambda: hypothesis.separability(_pair, x, threshold=math.nan),
        lambda: hypothesis.test_symmetry(_pair, x, [0, 1], threshold=-1),
        lambda: hypothesis.tree(_pair, x, sym_threshold=math.nan),
    ):
        with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
            call()


def test_the_symmetry_score_does_not_depend_on_the_units_of_the_group():
    """The score was multiplied by the group's own spread: the same function, its x1 and x2 given
    in units 10x smaller or larger, scored 100x less or more, and test_symmetry changed its answer;
    one variable of the group in other units alone changed the gradient's direction."""
    from kantk.hypothesis import symmetry_score

    x = torch.rand(400, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    scores = []
    for s, t in ((0.1, 0.1), (1.0, 1.0), (10.0, 10.0), (1000.0, 1000.0), (0.01, 1.0), (1.0, 100.0)):

        def f(z, s=s, t=t):
            return (z[:, 0] / s + z[:, 1] / t) ** 2 + 0.02 * (z[:, 0] / s) * z[:, 2]

        scores.append(symmetry_score(f, x * torch.tensor([s, t, 1.0], dtype=torch.float64), [0, 1]))
    assert max(scores) == pytest.approx(min(scores), rel=1e-6)  # float64 round-off of the rescaled inputs
    assert min(scores) > 1e-3  # the small x1*x3 term is an asymmetry at every scale


@pytest.mark.parametrize("unit", [1e-9, 1e-6, 1e3])
def test_symmetry_and_the_tree_do_not_depend_on_the_units_of_f(unit):
    # an absolute 1e-12 guard on the gradient's norm made 1e-9 * (x1 + x2)**2 * x3 asymmetric in
    # x1, x2 (score 2.3e-3), and tree() then merged all three variables at once
    x = _x(3)

    def f(z):
        return unit * (z[:, 0] + z[:, 1]) ** 2 * z[:, 2]

    assert hypothesis.symmetry_score(f, x, [0, 1]) < 1e-9  # round-off (2.4e-12 at unit = 1)
    assert hypothesis.tree(f, x).levels[1] == [[0, 1], [2]]


def test_groups_that_split_nothing_and_half_precision_samples_are_refused():
    x = _x(3)
    for groups in ([], [[]], [[0, 1, 2]]):  # answered True for x1*x2: nothing was tested
        with pytest.raises(ValueError, match="groups must split the variables into at least two parts"):
            hypothesis.test_separability(_pair, x, groups)
    for dtype in (torch.float16, torch.bfloat16):  # torch.quantile failed deep inside
        with pytest.raises(ValueError, match="x must be float32 or float64"):
            hypothesis.separability(_pair, x.to(dtype))
    model = kantk.KAN([3, 2, 1], seed=0)
    for name in ("neuron_th", "feature_th"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            hypothesis.feature_interaction(model, x.float(), 1, **{name: math.nan})


def test_a_function_that_is_nan_on_most_samples_is_refused():
    """f = sum * nan scored 0 everywhere: separable into single variables, and symmetric."""
    from kantk.hypothesis import separability, symmetry_score

    x = torch.rand(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or infinite on 50 of the 50 samples"):
        separability(lambda z: z.sum(1) * float("nan"), x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        symmetry_score(lambda z: z.sum(1) / 0.0, x, [0, 1])
