"""Multiplication nodes (KAN 2.0, Liu et al. 2024, arXiv 2408.10205): products recovered exactly.

A sum-only KAN can only approximate ``x1*x2`` (or build it from squares, ``((x1 + x2)^2 -
(x1 - x2)^2) / 4``); a KAN with a multiplication node, pykan's ``width=[2, [0, 1], 1]``, holds it
in one node. This script runs kantk's documented workflow (docs/node-operations.md) on

* ``x1*x2`` with ``KAN([2, [0, 1], 1])``,
* ``x1*x2 + x3*x4`` with ``KAN([4, [0, 2], 1])``,
* ``x1*x2*x3`` with ``KAN([3, [0, 1], 1], mult_arity=3)``,

for a few initialisation seeds: fit, prune, refit, refine the grid, refit, ``auto_symbolic``,
refit the affine parameters, ``symbolic_formula``. A formula is *exact* when sympy finds it
equal to the target. It prints one Markdown row per (task, seed) with the formula, the model's
and the formula's test RMSE and the time taken.

Run:  python examples/multiplication_nodes.py [--seeds 0 1 2] [--quick]

``--quick`` (300 samples, 20 steps per fit, seed 0 only) runs in seconds. Nothing is written.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch

import kantk

TASKS: tuple[tuple[str, str, int, list[Any], int], ...] = (
    ("x1*x2", "x1*x2", 2, [2, [0, 1], 1], 2),
    ("x1*x2 + x3*x4", "x1*x2 + x3*x4", 4, [4, [0, 2], 1], 2),
    ("x1*x2*x3", "x1*x2*x3", 3, [3, [0, 1], 1], 3),
)


def recover(
    formula: str, n_vars: int, widths: list[Any], arity: int, seed: int, samples: int, steps: int
) -> dict[str, Any]:
    """The documented workflow on one task; returns the formula, RMSEs, seconds and the widths."""
    import sympy

    start = time.perf_counter()
    data = kantk.create_dataset(formula, n_vars=n_vars, train_num=samples, test_num=samples, seed=0)
    data = {k: v.to(torch.float64) for k, v in data.items()}
    x = data["train_input"]
    fit = {"progress": False, "seed": 0}
    model = kantk.KAN(widths, mult_arity=arity, basis_kwargs={"grid_size": 3}, seed=seed)
    kantk.fit(model, data, steps=steps, **fit)
    model = kantk.prune(model, x)
    kantk.fit(model, data, steps=steps, **fit)
    model = kantk.refine(model, grid_size=10)
    kantk.fit(model, data, steps=steps, **fit)
    kantk.auto_symbolic(model, x, library="minimal")
    kantk.fit(model, data, steps=steps, **fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a numeric edge left over is reported in the row
        (expr,) = kantk.symbolic_formula(model, x=x)
    names = [f"x{i + 1}" for i in range(n_vars)]
    f = kantk.formula_to_callable(expr, names)
    test_x, test_y = data["test_input"], data["test_label"][:, 0]
    with torch.no_grad():
        model_rmse = float((model(test_x)[:, 0] - test_y).square().mean().sqrt())
    formula_rmse = float((torch.as_tensor(f(test_x.numpy())) - test_y).square().mean().sqrt())
    target = kantk.parse_formula(formula, names)
    exact = sympy.simplify(expr - target) == 0
    return {
        "formula": expr,
        "exact": exact,
        "model_rmse": model_rmse,
        "formula_rmse": formula_rmse,
        "seconds": time.perf_counter() - start,
        "widths": model.width_spec,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    samples, steps, seeds = (300, 20, [0]) if args.quick else (1000, 50, args.seeds)
    print(f"# {samples} samples, {steps} LBFGS steps per fit, float64, torch threads 1")
    print(
        "| target | widths | seed | pruned to | formula | exact | model test RMSE | formula test RMSE | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, formula, n_vars, widths, arity in TASKS:
        for seed in seeds:
            r = recover(formula, n_vars, widths, arity, seed, samples, steps)
            spelled = f"{widths}" + (f", mult_arity={arity}" if arity != 2 else "")
            print(
                f"| {label} | {spelled} | {seed} | {r['widths']} | {r['formula']} | "
                f"{'yes' if r['exact'] else 'no'} | {r['model_rmse']:.1e} | {r['formula_rmse']:.1e} | "
                f"{r['seconds']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
