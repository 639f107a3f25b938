"""The seed's walkthrough: a trained KAN becomes the closed-form formula it was trained on."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest
import sympy
import torch

import kantk

DOCS = Path(__file__).resolve().parents[2] / "docs" / "symbolic.md"
x1, x2 = sympy.symbols("x1 x2")
TARGET = sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)  # the root conftest restores it


def _samples(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _f(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2)


def _lbfgs(model: kantk.KAN, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        history_size=10,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-32,
        tolerance_change=1e-32,
    )

    def closure():
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(x) - y) ** 2)))


def _assert_is_target(expr: sympy.Expr) -> None:
    assert sympy.simplify(expr - TARGET) == 0, f"recovered {expr}, expected {TARGET}"
    check = _samples(200, seed=7)
    got = kantk.formula_to_callable(expr, ["x1", "x2"])(check.numpy())
    assert abs(torch.as_tensor(got) - _f(check)[:, 0]).max() < 1e-6


def test_hand_pruned_model_recovers_the_formula():
    x = _samples(400, seed=0)
    y = _f(x)
    model = kantk.KAN([2, 1, 1], basis_kwargs={"grid_size": 5}, seed=1)
    for _ in range(4):  # the hidden node ranges over [-1, 2]: let the grids follow it (pykan's schedule)
        model.update_grid(x)
        _lbfgs(model, x, y, steps=5)
    if hasattr(kantk, "refine"):
        model = kantk.refine(model, grid_size=10)
    assert _lbfgs(model, x, y, steps=10) < 1e-2
    report = kantk.auto_symbolic(model, x, library="minimal")
    assert [(r.layer, r.i, r.j, r.name) for r in report] == [
        (0, 0, 0, "sin"),
        (0, 1, 0, "x^2"),
        (1, 0, 0, "exp"),
    ]
    # refit the affine parameters. The refit ends on a flat valley (the scales of the three edges
    # trade off) whose end point after 20 steps depends on round-off: RMSE 3e-6 here, 3.7e-5 on
    # another CPU model (issue 17). 1e-4 still asks for a refit that moved (1.6e-4 right after
    # auto_symbolic, 5e-4 before) with a margin for that; the exact check is the formula below.
    assert _lbfgs(model, x, y, steps=20) < 1e-4
    (expr,) = kantk.symbolic_formula(model)
    _assert_is_target(expr)


def test_multiplication_is_recovered_exactly():
    x = _samples(400, seed=1)
    y = x[:, :1] * x[:, 1:]
    model = kantk.KAN([2, 2, 1], seed=0)
    assert _lbfgs(model, x, y, steps=20) < 2e-2
    report = kantk.auto_symbolic(model, x, library=["x", "x^2"])
    assert all(r.fixed for r in report) and len(report) == 6
    assert _lbfgs(model, x, y, steps=10) < 1e-7
    (expr,) = kantk.symbolic_formula(model)
    assert sympy.expand(expr - x1 * x2) == 0, expr


@pytest.mark.parametrize("op", ["refine", "save_load"])
def test_symbolic_edges_survive(op, tmp_path):
    model = kantk.KAN([2, 2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 1, "sin")
    kantk.fix_symbolic(model, 1, 1, 0, "exp")
    with torch.no_grad():
        model.layers[0].symbolic_affine[1, 0] = torch.tensor([2.0, 0.5, 1.5, -0.25])
    if op == "refine":
        other = kantk.refine(model, grid_size=10)
    else:
        kantk.save(model, tmp_path / "m.kantk")
        other = kantk.load(tmp_path / "m.kantk")
    x = _samples(50, seed=3)
    torch.testing.assert_close(other(x), model(x), rtol=1e-6, atol=1e-6)
    assert other.layers[0].symbolic_names == [[None, None], ["sin", None]]
    assert other.layers[1].symbolic_names == [[None, "exp"]]


def test_symbolic_edges_survive_prune():
    model = kantk.KAN([2, 3, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 1, "sin")
    kantk.fix_symbolic(model, 1, 1, 0, "exp")
    with torch.no_grad():  # keep only the path x1 -> h1 -> y: hidden nodes 0 and 2 go
        for layer in model.layers:
            layer.mask.zero_()
    small = kantk.prune(model, pruner="magnitude", threshold=0.0)
    assert small.widths == [2, 1, 1]
    assert small.layers[0].symbolic_names == [["sin", None]]
    x = _samples(50, seed=3)
    torch.testing.assert_close(small(x), model(x))


def test_docs_walkthrough_with_fit_prune_refine_recovers_the_formula():
    """Runs docs/symbolic.md top to bottom: the seed's walkthrough with kantk.fit, prune, refine."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "symbolic_docs"}
    for k, code in enumerate(blocks):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"docs/symbolic.md, python block {k + 1}", "exec"), namespace)  # noqa: S102
    assert list(namespace["mine"])[-3:] == ["sin", "abs", "sinc"]
    assert [(r.layer, r.i, r.j, r.name) for r in namespace["report"]] == [
        (0, 0, 0, "sin"),
        (0, 1, 0, "x^2"),
        (1, 0, 0, "exp"),
    ]
    assert namespace["history"].test_rmse[-1] < 1e-6
    _assert_is_target(namespace["formula"])
    assert namespace["top"] and namespace["top"][0].score <= namespace["top"][-1].score
