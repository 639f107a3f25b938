"""Feynman benchmark: ``kantk.discover`` at its default settings on the KAN paper's Feynman table.

For each of the 27 equations of :mod:`kantk.feynman` (Liu et al. 2024, Table 2, dimensionless
forms), samples 1000 training and 1000 test points on the equation's ranges (float64, data seed
0), runs :func:`kantk.discover` on them with nothing but the data and the variable names (every
other argument at its default), and reports per equation:

* **exact**: the formula is the true one after rounding its constants, as
  :func:`kantk.feynman.matches` decides: every float constant rounds to a simple number (0 below
  1e-3; else p/q times 1, pi, sqrt(2), sqrt(pi), sqrt(2 pi), their inverses or e, q <= 12, within
  1e-3 relative), and the rounded formula equals the truth to 1e-8 (relative to 1 + rms) on 1000
  fresh random points of the ranges. ``sympy`` column: whether ``sympy.simplify(rounded - truth)``
  also gives 0 within ``--sympy-seconds`` (a numeric match sympy cannot simplify, such as
  ``tanh(atanh(a) + atanh(b))``, still counts as exact);
* the formula discover returned (``-`` when some edge stayed numeric), the kept attempt's KAN
  (``[2,[0,1],1]``: one product node; plain widths are after pruning), the test RMSE of the final
  symbolic model, and the wall time of the discover call.

Run:  python benchmarks/feynman.py [--only I.16.6 II.38.3] [--seed 0] [--json PATH] [--markdown]

The summary line gives the share of equations recovered exactly (the target of issue 17: >= 70%).
``--quick`` runs three two-variable equations only. Nothing is written unless ``--json`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from kantk import feynman  # noqa: E402
from kantk.pipeline import discover  # noqa: E402

#: ``--quick``: three two-variable equations (a sum-like, a product-like and a quotient-like one).
QUICK = ("I.12.11", "II.38.3", "I.40.1")


class _Timeout(Exception):
    pass


def sympy_zero(found: Any, name: str, seconds: float) -> bool | None:
    """``simplify(round_constants(found) - truth) == 0``; None when sympy runs out of time."""
    import sympy

    eq = feynman.equation(name)
    rounded = feynman.round_constants(sympy.sympify(found))
    by_name = {s.name: s for s in eq.symbols()}
    rounded = rounded.xreplace({s: by_name.get(s.name, s) for s in rounded.free_symbols})
    use_alarm = hasattr(signal, "SIGALRM") and seconds > 0

    def stop(*_: Any) -> None:
        raise _Timeout

    if use_alarm:
        old = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return bool(sympy.simplify(rounded - eq.expression()) == 0)
    except _Timeout:
        return None
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def run_one(name: str, seed: int = 0, sympy_seconds: float = 10.0, **discover_kwargs: Any) -> dict[str, Any]:
    """discover on one equation (default settings unless ``discover_kwargs``); one result row."""
    eq = feynman.equation(name)
    data = feynman.dataset(name, n_train=1000, n_test=1000, seed=0)
    start = time.perf_counter()
    result = discover(data=data, var_names=list(eq.variables), seed=seed, **discover_kwargs)
    seconds = time.perf_counter() - start
    formula = result.formulas[0] if result.formulas else None
    exact = formula is not None and feynman.matches(formula, name)
    proved = sympy_zero(formula, name, sympy_seconds) if exact else None
    return {
        "name": name,
        "display": eq.display,
        "variables": list(eq.variables),
        "ranges": [list(r) for r in eq.ranges],
        "formula": None if formula is None else str(formula),
        "rounded": None if formula is None else str(feynman.round_constants(formula)),
        "exact": bool(exact),
        "sympy_zero": proved,
        "widths": list(result.widths),
        "structure": list(result.structure),
        "snapped": bool(result.exact),
        "test_rmse": float(result.test_rmse),
        "seconds": seconds,
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of rows (one per equation) and a summary line."""
    lines = [
        "| equation | dimensionless formula | exact | formula discover returns | KAN | test RMSE | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["exact"]:
            exact = "yes" if r["sympy_zero"] else "yes (numeric)"
        else:
            exact = "no"
        found = "-" if r["formula"] is None else f"`{r['formula']}`".replace("|", "\\|")
        rmse = "nan" if math.isnan(r["test_rmse"]) else f"{r['test_rmse']:.1e}"
        lines.append(
            f"| {r['name']} | `{r['display']}` | {exact} | {found} | {_shape(r)} | {rmse} | "
            f"{r['seconds']:.0f} s |"
        )
    lines.append("")
    lines.append(summary(rows))
    return "\n".join(lines)


def _shape(r: dict[str, Any]) -> str:
    """The kept attempt's KAN: ``[2, [0, 1], 1]`` (one product node) or pruned widths ``[2, 1, 1]``."""
    return str(r.get("structure") or r["widths"]).replace(" ", "")


def summary(rows: Sequence[dict[str, Any]]) -> str:
    n_exact = sum(r["exact"] for r in rows)
    n_formula = sum(r["formula"] is not None for r in rows)
    total = sum(r["seconds"] for r in rows)
    share = 100.0 * n_exact / max(len(rows), 1)
    return (
        f"Exact: {n_exact} of {len(rows)} equations ({share:.0f}%); a formula for {n_formula}; "
        f"discover time {total:.0f} s in all."
    )


def machine() -> dict[str, Any]:
    """CPU model, cores, torch version and threads: for the record beside the numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def commit() -> str:
    """The repository's commit (short hash), "+ uncommitted changes" when the tree differs; for the record."""
    import subprocess

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    try:
        sha = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (sha or "unknown") + (" (with uncommitted changes)" if dirty else "")


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these equations only (e.g. I.16.6)")
    parser.add_argument("--quick", action="store_true", help=f"three equations only: {', '.join(QUICK)}")
    parser.add_argument("--seed", type=int, default=0, help="discover's seed (default 0)")
    parser.add_argument("--sympy-seconds", type=float, default=10.0, help="time for sympy's check (10 s)")
    parser.add_argument("--json", metavar="PATH", help="also write every row and the machine here")
    parser.add_argument("--markdown", action="store_true", help="print only the markdown table at the end")
    args = parser.parse_args(argv)
    names = list(args.only or (QUICK if args.quick else feynman.names()))
    for name in names:
        feynman.equation(name)  # an unknown name fails before any work
    torch.set_num_threads(1)

    measured_at = commit()  # the code imported now: a commit made during a long run is not it
    rows = []
    for name in names:
        r = run_one(name, seed=args.seed, sympy_seconds=args.sympy_seconds)
        rows.append(r)
        if args.json:  # after every row, so a long run that is stopped keeps what it measured
            with open(args.json, "w", encoding="utf-8") as f:
                saved = {"machine": machine(), "commit": measured_at, "seed": args.seed, "rows": rows}
                json.dump(saved, f, indent=1)
        if not args.markdown:
            print(
                f"{name}: {'EXACT' if r['exact'] else 'no'} {r['formula']} (rounded {r['rounded']}); "
                f"{r['widths']}, test RMSE {r['test_rmse']:.2e}, {r['seconds']:.1f} s",
                flush=True,
            )
    print()
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
