"""Interpretable supervised tasks (a subset of the KAN paper's section 4.1): fit, prune, make
every edge symbolic, refit, and print the formula kantk recovers.

Tasks (float64, 1000 train / 1000 test points):

* ``mult``: ``x*y`` on [-1, 1]^2 with a ``[2, 2, 1]`` KAN; the paper's KAN learns
  ``xy = ((x + y)^2 - (x - y)^2) / 4`` (or ``(x + y)^2 - x^2 - y^2`` up to scale) from ``x`` and
  ``x^2`` edges.
* ``div``: ``x/y`` on x, y in [0.5, 2] with a ``[2, 1, 1]`` KAN; the paper's KAN learns
  ``exp(log x - log y)``. The symbolic library is ``x, log, exp``.
* ``dist``: ``sqrt((x1 - x2)^2 + (x3 - x4)^2)`` on [-1, 1]^4 with a ``[4, 2, 1, 1]`` KAN: linear
  edges, then squares, then a square root. The symbolic library is ``x, x^2, sqrt``.

Recipe, per task:

1. from each of ``--seeds`` initialisations, fit on G = 5 without regularisation (LBFGS via
   ``kantk.fit``, grids moved to the data every 5 steps); keep the one with the lowest training
   loss (``dist`` lands in a poor local minimum, RMSE ~0.25, from about half the seeds);
2. fit with the ``l1_entropy`` sparsity regulariser, ``kantk.prune``, refit, ``update_grid`` and
   ``kantk.refine`` to G = 10, refit;
3. ``kantk.auto_symbolic`` with the task's small library, candidates in their real domain on the
   training inputs (``domain_margin=0``; see the comment at the call);
4. refit the affine parameters ``(a, b, c, d)`` of every symbolic edge, all at once, by
   Levenberg-Marquardt (``scipy.optimize.least_squares``, trust region, exact Jacobian from
   ``torch.func.jacfwd``). This replaces a ``kantk.fit`` refit: torch's LBFGS stalls once the
   loss is tiny (its curvature test ``y.s > 1e-10`` is absolute) and, on ``dist``, steps the
   argument of ``sqrt`` below 0 (NaN), while the trust region simply shrinks there;
5. ``kantk.symbolic_formula``, then a tidied form: full-precision formula expanded, constant
   factors moved out of fractional powers (``c * sqrt(k * u) = c sqrt(k) * sqrt(u)``), constants
   rounded to 4 digits. ``exact`` means that form has no floating-point constant left and equals
   the target on the test points.

Run:  python examples/interpretable_tasks.py [--tasks mult div dist] [--seeds 4] [--quick]

``--quick`` runs ``mult`` only, one seed, short fits, in seconds. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy
import torch
from scipy.optimize import least_squares

import kantk
from kantk.symbolic.formula import round_constants

TASKS: dict[str, dict[str, Any]] = {
    "mult": {
        "formula": "x1*x2",
        "n_vars": 2,
        "ranges": (-1.0, 1.0),
        "widths": [2, 2, 1],
        "library": ["x", "x^2"],
        "lamb": 1e-3,
        "paper": "xy via (x+y)^2 - (x-y)^2 (or -x^2-y^2), exact",
    },
    "div": {
        "formula": "x1/x2",
        "n_vars": 2,
        "ranges": (0.5, 2.0),
        "widths": [2, 1, 1],
        "library": ["x", "log", "exp"],
        "lamb": 1e-3,
        "paper": "x/y = exp(log x - log y), exact",
    },
    "dist": {
        "formula": "sqrt((x1-x2)**2 + (x3-x4)**2)",
        "n_vars": 4,
        "ranges": (-1.0, 1.0),
        "widths": [4, 2, 1, 1],
        "library": ["x", "x^2", "sqrt"],
        "lamb": 1e-4,
        "paper": "sqrt((x1-x2)^2+(x3-x4)^2): linear, x^2, sqrt, exact",
    },
}


def rmse(model: kantk.KAN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return math.sqrt(float(torch.mean((model(x) - y) ** 2)))


def symbolic_entries(model: kantk.KAN) -> list[tuple[int, int, int]]:
    """``(layer, q, p)`` of every live symbolic edge (q: output node, p: input node)."""
    return [
        (l, q, p)
        for l, layer in enumerate(model.layers)
        if layer.has_symbolic
        for q, p in layer.symbolic_edges()
        if float(layer.symbolic_mask[q, p]) != 0
    ]


@torch.no_grad()
def make_finite(model: kantk.KAN, x: torch.Tensor) -> int:
    """Shift ``b`` of every symbolic edge whose function is not finite on the samples.

    ``auto_symbolic`` can leave the argument of ``sqrt`` or ``log`` a rounding error below the
    domain (-6e-17) on the sample where the fit put the kink. Returns how many edges moved.
    """
    moved, h = 0, x
    for layer in model.layers:
        if layer.has_symbolic:
            for q, p in layer.symbolic_edges():
                a, b = layer.symbolic_affine[q, p, :2].tolist()
                z = a * h[:, p] + b
                if not torch.isfinite(layer.symbolic_function(q, p).torch_fn(z)).all():
                    layer.symbolic_affine[q, p, 1] += -float(z.min()) + 1e-9 * float(z.max() - z.min())
                    moved += 1
        h = layer(h)
    return moved


def refit_affine(model: kantk.KAN, x: torch.Tensor, y: torch.Tensor, max_nfev: int = 200) -> int:
    """Least-squares refit of ``(a, b, c, d)`` of every symbolic edge (trust-region LM).

    Returns the number of evaluations."""
    entries = symbolic_entries(model)
    layers = sorted({l for l, _, _ in entries})
    base = {l: model.layers[l].symbolic_affine.detach().clone() for l in layers}
    index = {
        l: tuple(torch.tensor(v) for v in zip(*[(q, p) for ll, q, p in entries if ll == l])) for l in layers
    }
    theta0 = torch.cat([base[l][index[l]].reshape(-1) for l in layers])

    def params(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, k = {}, 0
        for l in layers:
            n = index[l][0].numel()
            out[f"layers.{l}.symbolic_affine"] = base[l].index_put(
                index[l], theta[k : k + 4 * n].reshape(n, 4)
            )
            k += 4 * n
        return out

    def residual(theta: torch.Tensor) -> torch.Tensor:
        return (torch.func.functional_call(model, params(theta), (x,)) - y).reshape(-1)

    result = least_squares(
        lambda t: residual(torch.from_numpy(t)).detach().numpy(),
        theta0.numpy(),
        jac=lambda t: torch.func.jacfwd(residual)(torch.from_numpy(t)).detach().numpy(),
        method="trf",
        x_scale="jac",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=max_nfev,
    )
    with torch.no_grad():
        for name, value in params(torch.from_numpy(result.x)).items():
            model.get_parameter(name).copy_(value)
    return int(result.nfev)


def tidy(expr: sympy.Expr, digits: int = 4) -> sympy.Expr:
    """Expand, move constant factors out of fractional powers of sums, round constants."""
    expr = sympy.expand(round_constants(expr, 12))  # drops 1e-17 leftovers, keeps the rest

    def pull(power: sympy.Pow) -> sympy.Expr:
        base = sympy.expand(power.base)
        coeffs = [abs(float(t.as_coeff_Mul()[0])) for t in sympy.Add.make_args(base)]
        k = min((c for c in coeffs if c > 1e-6 * max(coeffs)), default=1.0)
        return sympy.Float(k) ** power.exp * sympy.expand(base / k) ** power.exp

    expr = expr.replace(lambda e: e.is_Pow and e.base.is_Add and not e.exp.is_Integer, pull)
    expr = round_constants(sympy.expand(expr), digits)
    expr = (
        round_constants(sympy.powsimp(sympy.simplify(expr)), digits) if sympy.count_ops(expr) <= 40 else expr
    )
    return expr


def is_exact(expr: sympy.Expr, target: str, names: Sequence[str], x: torch.Tensor) -> bool:
    """No float constant left, and equal to the target on the samples ``x``."""
    if expr.atoms(sympy.Float):
        return False
    symbols = sympy.symbols(list(names))
    f = sympy.lambdify(symbols, [expr, sympy.sympify(target)], modules="numpy")
    got, want = (np.asarray(v, dtype=float) for v in f(*x.double().numpy().T))
    return bool(np.allclose(got, want, rtol=1e-12, atol=1e-12))


def first_fit(
    spec: dict[str, Any], data: dict[str, torch.Tensor], steps: int, seeds: Sequence[int]
) -> tuple[kantk.KAN, int, list[float]]:
    """Step 1: fit from every seed without regularisation; the model with the lowest training loss."""
    best, best_seed, losses = None, seeds[0], []
    for seed in seeds:
        model = kantk.KAN(spec["widths"], basis_kwargs={"grid_size": 5, "order": 3}, seed=seed).to(
            torch.float64
        )
        kantk.fit(
            model, data, steps=steps, grid_update_every=5, grid_update_until=steps, progress=False, seed=seed
        )
        losses.append(rmse(model, data["train_input"], data["train_label"]))
        if losses[-1] == min(losses):
            best, best_seed = model, seed
    assert best is not None
    return best, best_seed, losses


def run_task(name: str, steps: int, samples: int, seeds: Sequence[int]) -> dict[str, Any]:
    spec = TASKS[name]
    start = time.perf_counter()
    data = kantk.create_dataset(
        spec["formula"],
        n_vars=spec["n_vars"],
        ranges=spec["ranges"],
        train_num=samples,
        test_num=samples,
        seed=0,
        dtype=torch.float64,
    )
    x, y = data["train_input"], data["train_label"]
    x_test, y_test = data["test_input"], data["test_label"]
    model, seed, seed_rmse = first_fit(spec, data, steps, seeds)
    fit = {"progress": False, "seed": seed}
    kantk.fit(
        model,
        data,
        steps=steps,
        regularisers={"l1_entropy": {"weight": spec["lamb"]}},
        grid_update_every=5,
        grid_update_until=steps,
        **fit,
    )
    model = kantk.prune(model, x)
    pruned_widths = list(model.widths)
    kantk.fit(model, data, steps=steps, **fit)
    model.update_grid(x)
    model = kantk.refine(model, grid_size=10)
    kantk.fit(model, data, steps=steps, **fit)
    numeric_rmse = rmse(model, x_test, y_test)

    # domain_margin=0: each candidate must stay in its real domain on the training inputs only.
    # The default widens an edge's input range by 10% each side (for inputs all <= 0, up to 0).
    # dist's sqrt edge reads a hidden node whose value at distance 0 is a little below 0 (an
    # offset the affine parameters absorb): the widened range reached past it, where the right
    # sqrt leaves its domain, so sqrt fitted only shifted and the simpler x won (not exact since
    # commit ec9949a)
    report = kantk.auto_symbolic(model, x, library=spec["library"], domain_margin=0.0)
    moved = make_finite(model, x)
    fixed_rmse = rmse(model, x_test, y_test)
    names = [f"x{i + 1}" for i in range(spec["n_vars"])]
    formula = tidied = "not found: some edges stayed numeric"
    exact, evaluations = False, 0
    if all(r.fixed for r in report):
        evaluations = refit_affine(model, x, y)
        formula = kantk.symbolic_formula(model, var_names=names)[0]
        tidied = tidy(kantk.symbolic_formula(model, var_names=names, simplify=False, digits=None)[0])
        exact = is_exact(tidied, spec["formula"], names, x_test)
    symbolic_rmse = rmse(model, x_test, y_test)
    return {
        "task": name,
        "target": spec["formula"],
        "widths": spec["widths"],
        "pruned": pruned_widths,
        "seed": seed,
        "seed_rmse": seed_rmse,
        "edges": [(r.layer, r.i, r.j, r.name) for r in report],
        "numeric_rmse": numeric_rmse,
        "fixed_rmse": fixed_rmse,
        "moved": moved,
        "evaluations": evaluations,
        "symbolic_rmse": symbolic_rmse,
        "formula": str(formula),
        "tidy": str(tidied),
        "exact": exact,
        "paper": spec["paper"],
        "seconds": time.perf_counter() - start,
    }


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "| task | KAN (after prune) | seed (train RMSE per seed) | numeric test RMSE | symbolic test RMSE "
        "(before / after refit) | formula (tidied) | exact | time |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        seeds = ", ".join(f"{v:.1e}" for v in r["seed_rmse"])
        lines.append(
            f"| {r['task']} | {r['widths']} ({r['pruned']}) | {r['seed']} ({seeds}) | "
            f"{r['numeric_rmse']:.1e} | "
            f"{r['fixed_rmse']:.1e} / {r['symbolic_rmse']:.1e} | `{r['tidy']}` | "
            f"{'yes' if r['exact'] else 'no'} | "
            f"{r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per fit (default 50)")
    parser.add_argument("--samples", type=int, default=1000, help="training and test samples (default 1000)")
    parser.add_argument(
        "--seeds", type=int, default=4, help="initialisations tried in step 1 (default 4: seeds 0..3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: mult only, 1 seed, 8 steps per fit, 200 samples"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.steps, args.samples, args.seeds = ["mult"], 8, 200, 1
    torch.set_num_threads(1)

    results = []
    for name in args.tasks:
        r = run_task(name, args.steps, args.samples, list(range(args.seeds)))
        results.append(r)
        print(f"task {r['task']}: target {r['target']}, KAN {r['widths']} pruned to {r['pruned']}")
        print(
            f"  step 1: train RMSE per seed {', '.join(f'{v:.2e}' for v in r['seed_rmse'])}; kept seed "
            f"{r['seed']}"
        )
        print(f"  edges: {', '.join(f'({l},{i},{j}) {n}' for l, i, j, n in r['edges'])}")
        print(
            f"  numeric test RMSE {r['numeric_rmse']:.2e}; symbolic test RMSE {r['symbolic_rmse']:.2e} "
            f"(before the affine refit {r['fixed_rmse']:.2e}; {r['evaluations']} evaluations; "
            f"{r['moved']} edge(s) shifted into their domain)"
        )
        print(f"  formula: {r['formula']}")
        print(f"  tidied: {r['tidy']} ({'exact' if r['exact'] else 'not exact'})")
        print(f"  paper: {r['paper']}")
        print(f"  time: {r['seconds']:.1f} s", flush=True)
    print()
    print(table(results))
    return results


if __name__ == "__main__":
    main()
