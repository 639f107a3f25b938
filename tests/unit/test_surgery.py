from __future__ import annotations

import pytest
import torch

import kantk
from kantk import surgery
from kantk.model import default_dtype


def _state(model: kantk.KAN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def model() -> kantk.KAN:
    with default_dtype(torch.float64):
        m = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(m, 1, 0, 0, "sin")
    return m


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1


OPS = {
    "remove_edge": lambda m: surgery.remove_edge(m, 0, 1, 2),
    "remove_node": lambda m: surgery.remove_node(m, 1, 1),
    "expand_depth": surgery.expand_depth,
    "expand_width": lambda m: surgery.expand_width(m, 1, 2),
    "perturb": surgery.perturb,
    "unfix_symbolic_all": surgery.unfix_symbolic_all,
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_returns_a_new_model_and_leaves_the_original_bit_identical(op, model, x):
    before, out_before = _state(model), model(x).detach().clone()
    new = OPS[op](model)
    assert isinstance(new, kantk.KAN) and new is not model
    assert _same(before, _state(model))
    assert torch.equal(model(x), out_before)
    assert model.layers[1].symbolic_names[0][0] == "sin"


def test_remove_edge_and_node_mask(model, x):
    cut = surgery.remove_edge(model, 0, 1, 2)
    assert cut.layers[0].mask[2, 1] == 0 and model.layers[0].mask[2, 1] == 1
    gone = surgery.remove_node(model, 1, 2)
    assert gone.layers[0].mask[2].sum() == 0 and gone.layers[1].mask[:, 2].sum() == 0
    down = surgery.remove_node(model, 1, 2, mode="down")
    assert down.layers[1].mask[0, 2] == 1
    with pytest.raises(ValueError, match="mode"):
        surgery.remove_node(model, 1, 0, mode="sideways")
    with pytest.raises(IndexError):
        surgery.remove_edge(model, 3, 0, 0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda m: surgery.remove_edge(m, 3, 0, 0),
            IndexError,
            r"layer must be an int in \[0, 1\] for KAN\[2, 3, 1\]",
        ),
        (
            lambda m: surgery.remove_edge(m, 0, 2, 0),
            IndexError,
            r"i \(input node of layer 0\) must be an int in \[0, 1\], got 2",
        ),
        (
            lambda m: surgery.get_fun(m, 0, 0, 3),
            IndexError,
            r"j \(output node of layer 0\) must be an int in \[0, 2\], got 3",
        ),
        # True is an int to Python: these used to reach edge 1 -> 0 / layer 1 / node 1
        (
            lambda m: surgery.remove_edge(m, 0, True, 0),
            IndexError,
            r"i \(input node of layer 0\) .*, got True",
        ),
        (
            lambda m: surgery.edge_range(m, torch.zeros(3, 2), 0, 0, True),
            IndexError,
            r"j \(output node.*, got True",
        ),
        (
            lambda m: surgery.remove_node(m, True, 0),
            IndexError,
            r"layer \(a node layer, 0 = inputs\) must be an int in \[0, 2\]",
        ),
        (
            lambda m: surgery.remove_node(m, 1, True),
            IndexError,
            r"i \(node of node layer 1\) must be an int in \[0, 2\]",
        ),
        (lambda m: surgery.remove_node(m, 1, 3), IndexError, r"i \(node of node layer 1\) .*, got 3"),
        (
            lambda m: surgery.expand_width(m, True, 1),
            IndexError,
            r"hidden node layer in \[1, 1\] of KAN\[2, 3, 1\], got True",
        ),
        (lambda m: surgery.expand_width(m, 1, True), ValueError, "n_added must be an int >= 1, got True"),
        (lambda m: surgery.expand_width(m, 1, 0), ValueError, "n_added must be an int >= 1, got 0"),
        (
            lambda m: surgery.expand_width(m, 1, 1, op="mult", arity=True),
            ValueError,
            "arity must be an int >= 1, got True",
        ),
        (
            lambda m: surgery.remove_node(m, 1, 0, mode="sideways"),
            ValueError,
            "unknown mode 'sideways'; valid modes: all, up, down",
        ),
        (
            lambda m: surgery.perturb(m, mode="max"),
            ValueError,
            "unknown mode 'max'; valid modes: all, non-intrusive, minimal",
        ),
    ],
)
def test_bad_indices_and_options_say_what_is_accepted(model, call, error, message):
    before = _state(model)
    with pytest.raises(error, match=message):
        call(model)
    assert _same(before, _state(model))


def test_product_node_edges_are_indexed_by_sub_node():
    model = kantk.KAN([2, [0, 1], 1], seed=0)  # one product node with two sub-nodes
    surgery.get_fun(model, 0, 1, 1)  # the edge x2 -> second sub-node exists
    with pytest.raises(
        IndexError, match=r"j \(output sub-node of layer 0\) must be an int in \[0, 1\], got 2"
    ):
        surgery.get_fun(model, 0, 0, 2)


@pytest.mark.parametrize("op", ["expand_depth", "expand_width"])
def test_expansions_keep_the_function(op, model, x):
    new = OPS[op](model)
    torch.testing.assert_close(new(x), model(x), rtol=1e-12, atol=1e-12)  # identity / masked edges only
    assert new.widths == ([2, 3, 1, 1] if op == "expand_depth" else [2, 5, 1])


def test_perturb_non_intrusive_keeps_the_function_and_unmasks(model, x):
    cut = surgery.remove_edge(model, 0, 0, 0)
    new = surgery.perturb(cut)
    torch.testing.assert_close(new(x), cut(x), rtol=1e-12, atol=1e-12)
    assert new.layers[0].mask[0, 0] == 1
    changed = surgery.perturb(cut, mode="all", mag=2.0)
    assert not torch.allclose(changed(x), cut(x))


def test_unfix_symbolic_all_restores_numeric_edges(model):
    new = surgery.unfix_symbolic_all(model)
    assert new.layers[1].symbolic_edges() == []
    assert new.layers[1].mask[0, 0] == 1


def test_get_fun_and_range(model, x):
    phi = surgery.get_fun(model, 0, 1, 2)
    t = x[:, 1]
    torch.testing.assert_close(phi(t), model.layers[0].activations(x)[:, 2, 1])
    sin_edge = surgery.get_fun(model, 1, 0, 0)
    h = model.layers[0](x)
    torch.testing.assert_close(sin_edge(h[:, 0]), torch.sin(h[:, 0]))  # the fixed (1, 0, 1, 0) sin
    r = surgery.edge_range(model, x, 0, 1, 2)
    assert r.x_min == pytest.approx(float(t.min())) and r.x_max == pytest.approx(float(t.max()))
    assert r.y_min <= r.y_max


def test_removed_symbolic_edges_are_not_brought_back_by_unfixing():
    """An edge removed by prune or remove_edge is no longer symbolic: unfix_symbolic_all leaves it
    removed and unfix_symbolic refuses it (both turned it live again with its old spline)."""
    torch.set_default_dtype(torch.float64)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pruned = kantk.prune(kantk.formula_to_kan("sin(x1) + 0.001*x2"), x)
    assert pruned.layers[0].live_edges().tolist() == [[True, False]]
    assert surgery.unfix_symbolic_all(pruned).layers[0].live_edges().tolist() == [[True, False]]
    removed = surgery.remove_edge(kantk.formula_to_kan("sin(x1) + x2"), 0, 0, 0)
    assert removed.layers[0].symbolic_edges() == [(0, 1)]
    with pytest.raises(ValueError, match="not symbolic"):
        kantk.unfix_symbolic(removed, 0, 0, 0)
    assert removed.layers[0].mask.tolist() == [[0.0, 0.0]]


def test_expand_width_keeps_a_symbolic_edge_with_its_numeric_branch_on():
    """A symbolic edge whose numeric branch was switched back on (both add up) keeps both."""
    torch.set_default_dtype(torch.float64)
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sin", x)
    with torch.no_grad():
        model.layers[0].mask[0, 0] = 1.0
    bigger = surgery.expand_width(model, 1, 1)
    assert bigger.layers[0].mask[0, 0] == 1.0
    torch.testing.assert_close(bigger(x), model(x), rtol=0, atol=1e-12)


def test_a_perturbed_new_product_node_keeps_the_function_and_can_learn():
    """perturb() started the edges into a new product node at zero: each sub-node 0, so the
    gradient of each (the product of the others) was 0, and the node never learnt."""
    from kantk import surgery

    torch.manual_seed(0)
    x = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    base = kantk.KAN([2, 1, 1], seed=0).double()
    grown = surgery.perturb(surgery.expand_width(base, 1, 1, op="mult"))
    torch.testing.assert_close(grown(x), base(x), rtol=0, atol=1e-12)  # function unchanged
    layer = grown.layers[0]
    rows = layer.nodes.subnode_index([1])
    y = (x[:, 0] * x[:, 1])[:, None]
    data = {"train_input": x, "train_label": y, "test_input": x, "test_label": y}
    kantk.fit(grown, data, steps=5, progress=False, seed=0)
    with torch.no_grad():
        assert layer.subnode_values(x)[:, rows].std(0).min() > 1e-3  # its sub-nodes took shape


def test_expand_width_refuses_an_arity_a_sum_node_does_not_take():
    with pytest.raises(ValueError, match="a 'sum' node has arity 1; arity=3 does not apply"):
        surgery.expand_width(kantk.KAN([2, 2, 1], seed=0), 1, 1, op="sum", arity=3)
    assert surgery.expand_width(kantk.KAN([2, 2, 1], seed=0), 1, 1, op="sum", arity=1).widths == [2, 3, 1]


def test_edge_range_unpacks_as_pykans_get_range():
    """pykan's x_min, x_max, y_min, y_max = model.get_range(l, i, j) raised a TypeError here."""
    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(20, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    found = surgery.edge_range(model, x, 0, 1, 2)
    x_min, x_max, y_min, y_max = found
    assert (x_min, x_max, y_min, y_max) == (found.x_min, found.x_max, found.y_min, found.y_max)
    assert x_min == float(x[:, 1].min())


@pytest.mark.parametrize("mag", [float("nan"), float("inf"), "a", True])
def test_perturb_refuses_a_magnitude_that_is_not_a_finite_number(model, mag):
    """mag=nan returned a model whose every output was NaN; mag='a' failed inside torch."""
    from kantk.surgery import perturb

    with pytest.raises((ValueError, TypeError), match="mag"):
        perturb(model, mag=mag, mode="all")


def test_a_plugin_registry_reaches_every_surgery_and_an_unknown_basis_is_named(fixed_basis_registry):
    """expand_depth had no registry=: a model of a basis from Registry.with_plugins failed with
    "unknown basis"; and a rebuild without the registry (expand_width, prune) said "not a valid KAN
    config" around the whole config instead of the documented UnknownComponentError."""
    registry = fixed_basis_registry
    model = kantk.KAN([2, 3, 1], basis="fixed_test", registry=registry, seed=0)
    x = torch.rand(16, 2) * 2 - 1
    deeper = surgery.expand_depth(model, registry=registry)
    assert deeper.widths == [2, 3, 1, 1]
    torch.testing.assert_close(deeper(x), model(x))
    assert surgery.expand_width(model, 1, 2, registry=registry).widths == [2, 5, 1]
    with pytest.raises(kantk.UnknownComponentError, match="unknown basis 'fixed_test'"):
        surgery.expand_width(model, 1, 2)
    with pytest.raises(kantk.UnknownComponentError, match="unknown basis 'fixed_test'"):
        kantk.KAN.from_config(model.config())


def test_widening_a_basis_whose_per_input_buffer_is_not_first_is_refused_in_one_line():
    """A plugin buffer laid out (functions, in_features) failed with torch's "shape mismatch:
    value tensor of shape [4, 3] cannot be broadcast"; kantk.prune already refused it by name."""
    from kantk.bases import Basis

    class Transposed(Basis):
        def __init__(self, in_features: int):
            super().__init__(in_features)
            self.register_buffer("centres", torch.linspace(-1, 1, 4)[:, None].repeat(1, in_features))

        @property
        def num_functions(self) -> int:
            return 4

        def forward(self, x):
            return torch.exp(-((x.unsqueeze(-1) - self.centres.t().to(x.dtype)) ** 2))

        def config(self):
            return {}

    class Plugin:
        @kantk.hookimpl
        def kantk_bases(self):
            yield kantk.BasisSpec("transposed_test", Transposed)

    registry = kantk.Registry.with_plugins(Plugin())
    model = kantk.KAN([2, 3, 1], basis="transposed_test", registry=registry, seed=0)
    with pytest.raises(
        ValueError,
        match=r"cannot widen basis 'transposed_test' of layer 1: its tensor 'centres' has shape \(4, 3\)"
        r".*first dimension",
    ):
        surgery.expand_width(model, 1, 2, registry=registry)
