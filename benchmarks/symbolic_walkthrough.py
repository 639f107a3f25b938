"""Symbolic regression speed: the affine fit per (edge, function) pair and the seed's walkthrough.

1. Per pair: the time to fit ``y ~ c * f(a * x + b) + d`` for one (edge, function) pair, over
   the ``default`` library (29 functions), 1000 samples per edge: kantk's vectorised
   :func:`kantk.symbolic.fitting.fit_affine` for 1 edge and for ``--edges`` edges at once, beside
   pykan 0.2.8's ``kan.utils.fit_params`` (what its ``suggest_symbolic`` runs per function).
2. The walkthrough on f = exp(sin(pi*x1) + x2^2), float64, 1000 training and 1000 test samples,
   pykan's "hello KAN" recipe: [2, 5, 1] B-spline KAN (G=3, k=3, seed 1), fit 50 LBFGS steps with
   l1_entropy (1e-3), prune, fit 50, refine to G=10, fit 50, auto_symbolic with the ``minimal``
   library, fit 50, formula. Each stage is timed; the formula and its largest error against f on
   the test inputs are printed. With pykan installed the same recipe runs in pykan (in a
   temporary directory, as pykan writes checkpoints) for the side-by-side wall time.

Run:  python benchmarks/symbolic_walkthrough.py [--threads 1] [--steps 50] [--edges 20] [--no-pykan]

Ratios are to pykan's time measured in the same run. The default of one thread keeps the numbers
meaningful on a shared machine (many small ops stall on busy threads); both toolkits get the same
setting. Nothing is written outside the temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import math
import os
import sys
import tempfile
import time
from typing import Any

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import kantk
from kantk.symbolic import get_library
from kantk.symbolic.fitting import fit_affine

FORMULA = "exp(sin(pi*x1) + x2**2)"
MINIMAL = ["x", "x^2", "x^3", "x^4", "exp", "log", "sqrt", "tanh", "sin", "abs"]


def synthetic_edges(n_edges: int, n: int = 1000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_edges, n) inputs in [-1, 1] and outputs of known affine-wrapped functions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_edges, n, generator=g, dtype=torch.float64) * 2 - 1
    shapes = [
        lambda t: 5 * torch.sin(3 * t + 2) + 0.7,
        lambda t: 0.5 * (1.3 * t - 0.2) ** 2 - 1,
        lambda t: torch.exp(-1.5 * t + 0.3),
        lambda t: 2 * torch.tanh(4 * t - 1),
    ]
    y = torch.stack([shapes[e % len(shapes)](x[e]) for e in range(n_edges)])
    return x, y


def time_it(fn: Any, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def per_pair(n_edges: int, repeats: int, pykan: bool) -> dict[str, float]:
    functions = get_library("default").functions
    x, y = synthetic_edges(max(n_edges, 1))
    fit_affine(x[:1], y[:1], functions[:2])  # warm up
    out = {
        "kantk, 1 edge x 29 functions": time_it(lambda: fit_affine(x[:1], y[:1], functions), repeats)
        / len(functions),
        f"kantk, {n_edges} edges x 29 functions": time_it(lambda: fit_affine(x, y, functions), repeats)
        / (len(functions) * n_edges),
    }
    if pykan:
        from kan.utils import SYMBOLIC_LIB, fit_params

        names = ["sin", "x^2", "exp", "tanh", "log"]  # a sample; pykan's cost barely depends on f
        xs, ys = x[0], y[0]
        with contextlib.redirect_stdout(io.StringIO()):
            t = time_it(lambda: [fit_params(xs, ys, SYMBOLIC_LIB[n][0], verbose=False) for n in names], 1)
        out["pykan fit_params (its suggest_symbolic, per function)"] = t / len(names)
    return out


def kantk_walkthrough(steps: int) -> dict[str, Any]:
    t_import = time.perf_counter()
    importlib.import_module("kantk.training")  # Lightning: imported before the clock, like pykan's modules

    import_seconds = time.perf_counter() - t_import
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def mark(stage: str) -> None:
        times[stage] = time.perf_counter() - t0 - sum(times.values())

    data = kantk.create_dataset(FORMULA, n_vars=2, train_num=1000, test_num=1000, seed=0)
    data = {k: v.to(torch.float64) for k, v in data.items()}
    fit = {"progress": False, "seed": 0}
    model = kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 3, "order": 3}, seed=1)
    mark("data + model")
    kantk.fit(model, data, steps=steps, regularisers={"l1_entropy": {"weight": 1e-3}}, **fit)
    mark("fit (l1_entropy)")
    model = kantk.prune(model, data["train_input"])
    widths = list(model.widths)
    mark("prune")
    kantk.fit(model, data, steps=steps, **fit)
    mark("fit")
    model = kantk.refine(model, grid_size=10)
    mark("refine")
    kantk.fit(model, data, steps=steps, **fit)
    mark("fit ")
    report = kantk.auto_symbolic(model, data["train_input"], library="minimal")
    mark("auto_symbolic")
    history = kantk.fit(model, data, steps=steps, **fit)
    mark("fit  ")
    (expr,) = kantk.symbolic_formula(model)
    mark("symbolic_formula")
    f = kantk.formula_to_callable(expr, ["x1", "x2"], backend="torch")
    err = float((f(data["test_input"]) - data["test_label"][:, 0]).abs().max())
    return {
        "times": times,
        "total": sum(times.values()),
        "import": import_seconds,
        "widths": widths,
        "edges": [(r.layer, r.i, r.j, r.name, r.r2) for r in report],
        "test_rmse": history.test_rmse[-1],
        "formula": expr,
        "max_error": err,
    }


def pykan_walkthrough(steps: int) -> dict[str, Any]:
    from kan import KAN
    from kan.utils import create_dataset

    def f(x):
        return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)

    quiet = contextlib.ExitStack()
    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
    quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))  # pykan's progress bars
    with tempfile.TemporaryDirectory() as tmp, quiet:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            t0 = time.perf_counter()
            dataset = create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)
            dataset = {k: v.to(torch.float64) for k, v in dataset.items()}
            model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1, ckpt_path=os.path.join(tmp, "model"))
            model.fit(dataset, opt="LBFGS", steps=steps, lamb=0.001)
            model = model.prune()
            model.fit(dataset, opt="LBFGS", steps=steps)
            model = model.refine(10)
            model.fit(dataset, opt="LBFGS", steps=steps)
            model.auto_symbolic(lib=MINIMAL)
            results = model.fit(dataset, opt="LBFGS", steps=steps)
            expr = model.symbolic_formula()[0][0]
            total = time.perf_counter() - t0
        finally:
            os.chdir(cwd)
    return {"total": total, "formula": expr, "test_rmse": float(results["test_loss"][-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per fit in the walkthrough")
    parser.add_argument("--edges", type=int, default=20, help="edges fitted at once in the batched case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pykan", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    pykan = not args.no_pykan
    if pykan:
        try:
            import kan  # noqa: F401
        except ImportError as exc:
            print(f"pykan: not installed ({exc})")
            pykan = False
    print(f"threads={args.threads}  load average={os.getloadavg()[0]:.1f}  torch {torch.__version__}")

    print("\n== affine fit, time per (edge, function) pair, 1000 samples ==")
    pairs = per_pair(args.edges, args.repeats, pykan)
    anchor = pairs.get("pykan fit_params (its suggest_symbolic, per function)")
    for name, seconds in pairs.items():
        ratio = (
            f"  ({anchor / seconds:6.0f}x faster than pykan)"
            if anchor and not name.startswith("pykan")
            else ""
        )
        print(f"{name:58s} {seconds * 1e3:9.2f} ms{ratio}")

    print(f"\n== walkthrough: {FORMULA}, float64, {args.steps} LBFGS steps per fit ==")
    ours = kantk_walkthrough(args.steps)
    for stage, seconds in ours["times"].items():
        print(f"  kantk {stage.strip():18s} {seconds:7.2f} s")
    print(
        f"kantk total: {ours['total']:.1f} s (importing Lightning before it: {ours['import']:.1f} s); "
        f"pruned widths {ours['widths']}; edges {ours['edges']}"
    )
    print(
        f"kantk formula: {ours['formula']}   (max |formula - f| on the test inputs: {ours['max_error']:.2e}; "
        f"test rmse after the symbolic refit {ours['test_rmse']:.2e})"
    )
    if pykan:
        theirs = pykan_walkthrough(args.steps)
        print(
            f"pykan total: {theirs['total']:.1f} s; formula: {theirs['formula']}; test rmse "
            f"{theirs['test_rmse']:.2e}"
        )
        print(f"kantk / pykan wall time: {ours['total'] / theirs['total']:.2f}")


if __name__ == "__main__":
    main()
