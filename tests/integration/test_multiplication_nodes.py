"""KAN 2.0's multiplication nodes recover products exactly through the documented workflow
(docs/node-operations.md): fit -> prune -> fit -> refine -> fit -> auto_symbolic -> fit ->
symbolic_formula."""

from __future__ import annotations

import pytest
import sympy
import torch

import kantk
from kantk.model import default_dtype


def _workflow(formula: str, n_vars: int, widths: list, steps: int, samples: int = 300) -> tuple:
    data = kantk.create_dataset(formula, n_vars=n_vars, train_num=samples, test_num=samples, seed=0)
    data = {k: v.to(torch.float64) for k, v in data.items()}
    x = data["train_input"]
    fit = {"progress": False, "seed": 0}
    with default_dtype(torch.float64):
        model = kantk.KAN(widths, basis_kwargs={"grid_size": 3}, seed=0)
        kantk.fit(model, data, steps=steps, **fit)
        model = kantk.prune(model, x)
        kantk.fit(model, data, steps=steps, **fit)
        model = kantk.refine(model, grid_size=10)
        kantk.fit(model, data, steps=steps, **fit)
        kantk.auto_symbolic(model, x, library="minimal")
        kantk.fit(model, data, steps=steps, **fit)
    (expr,) = kantk.symbolic_formula(model, x=x)
    with torch.no_grad():
        rmse = float((model(data["test_input"]) - data["test_label"]).square().mean().sqrt())
    return model, expr, rmse


@pytest.mark.parametrize(
    ("formula", "n_vars", "widths", "steps"),
    [("x1*x2", 2, [2, [0, 1], 1], 20), ("x1*x2 + x3*x4", 4, [4, [0, 2], 1], 50)],
)
def test_products_are_recovered_exactly(formula, n_vars, widths, steps):
    model, expr, rmse = _workflow(formula, n_vars, widths, steps)
    assert model.width_spec == widths  # pruning kept the product nodes and nothing else
    names = [f"x{i + 1}" for i in range(n_vars)]
    assert sympy.simplify(expr - kantk.parse_formula(formula, names)) == 0, expr
    # the refit moves the symbolic edges' constants to the exact ones (1e-8 after 50 steps on 300
    # samples for the sum of products, 1e-16 for x1*x2): 1e-6 leaves room for other CPUs' rounding
    assert rmse < 1e-6
