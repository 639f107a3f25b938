"""One contract every registered node operation (built-in or plugin) must meet."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.nodes import NodeOperation, build_node_operation

OPERATIONS = kantk.list_node_operations()


def _arity(op: NodeOperation) -> int:
    return op.arity if op.arity is not None else 3


def test_the_builtins_are_registered():
    assert {"sum", "mult"} <= set(OPERATIONS)


@pytest.mark.parametrize("name", OPERATIONS)
def test_builds_a_node_operation_with_a_valid_arity(name):
    op = build_node_operation(name)
    assert isinstance(op, NodeOperation)
    assert op.arity is None or (isinstance(op.arity, int) and op.arity >= 1)
    assert not isinstance(op, torch.nn.Module) or not list(op.parameters())  # no learnable state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", OPERATIONS)
def test_shape_dtype_finite_and_gradient(name, dtype):
    op = build_node_operation(name)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(7, 4, _arity(op), generator=gen, dtype=dtype) * 2 - 1).requires_grad_()
    y = op(x)
    assert y.shape == (7, 4) and y.dtype == dtype and torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", OPERATIONS)
def test_sympy_form_agrees_with_forward(name):
    import sympy

    op = build_node_operation(name)
    arity = _arity(op)
    symbols = sympy.symbols(f"s0:{arity}")
    expr = op.sympy(list(symbols))
    f = sympy.lambdify(symbols, expr, modules="numpy")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, arity, generator=gen, dtype=torch.float64) * 4 - 2
    want = op(x)[:, 0].numpy()
    got = f(*[x[:, 0, k].numpy() for k in range(arity)])
    assert abs(got - want).max() <= 1e-12 * (1 + abs(want).max())  # same function, float64 rounding


@pytest.mark.parametrize("name", OPERATIONS)
def test_a_model_with_the_operation_trains_and_saves(name, tmp_path):
    model = kantk.KAN([2, {"sum": 1, name: 2}, 1], mult_arity=2, seed=0).double()
    x = torch.rand(16, 2, dtype=torch.float64) * 2 - 1
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    kantk.save(model, tmp_path / "m.kantk")
    loaded = kantk.load(tmp_path / "m.kantk")
    assert loaded.width_spec == model.width_spec
    assert torch.equal(loaded(x), model(x))
