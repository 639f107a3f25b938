"""Wall time and accuracy of kantk.fit beside a plain LBFGS loop and pykan's ``model.fit``.

The job: a [2, 5, 1] B-spline KAN (G=5, k=3) on f(x1, x2) = exp(sin(pi*x1) + x2**2), 1000 training
and 1000 test samples, full-batch LBFGS (pykan's settings), float64, seed 0. Every run trains on
the same data, one after another in this process, and is reported as a ratio to the plain loop
(the anchor), so a loaded machine moves all rows together.

Run:  python benchmarks/fit_speed.py [--steps 100] [--repeats 1] [--threads 1] [--no-pykan]

pykan rows appear when ``kan`` (pip ``pykan``) is importable; pykan runs in a temporary
directory because it may write there. Nothing is written to the working directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

import kantk

FORMULA = "exp(sin(pi*x1) + x2**2)"


def rmse(pred: torch.Tensor, label: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((pred - label) ** 2)))


def plain_loop(data: dict, steps: int) -> float:
    model = kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 5, "order": 3}, seed=0)
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        history_size=10,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-32,
        tolerance_change=1e-32,
    )
    x, y = data["train_input"], data["train_label"]

    def closure():
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        with torch.no_grad():  # the per-step test evaluation both fits also do
            rmse(model(data["test_input"]), data["test_label"])
    with torch.no_grad():
        return rmse(model(data["test_input"]), data["test_label"])


def kantk_fit(data: dict, steps: int, grid_update_every: int | None = None) -> float:
    model = kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 5, "order": 3}, seed=0)
    history = kantk.fit(
        model,
        data,
        steps=steps,
        optimizer="lbfgs",
        progress=False,
        seed=0,
        grid_update_every=grid_update_every,
    )
    return history.test_rmse[-1]


def pykan_fit(data: dict, steps: int, update_grid: bool = True) -> float:
    from kan import KAN as PyKAN

    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.chdir(tmp),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        model = PyKAN(width=[2, 5, 1], grid=5, k=3, seed=0, auto_save=False)
        results = model.fit(data, opt="LBFGS", steps=steps, update_grid=update_grid)
    return float(results["test_loss"][-1])


def timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-pykan", action="store_true", help="skip pykan even if installed")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's); 1 is steadier on a shared machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.set_default_dtype(torch.float64)
    data = kantk.create_dataset(FORMULA, n_vars=2, train_num=1000, test_num=1000, seed=0)
    rows: list[tuple[str, Callable[[], float]]] = [
        ("plain LBFGS loop (anchor)", lambda: plain_loop(data, args.steps)),
        ("kantk.fit", lambda: kantk_fit(data, args.steps)),
        ("kantk.fit, grid updates 5/50", lambda: kantk_fit(data, args.steps, grid_update_every=5)),
    ]
    have_pykan = False
    if not args.no_pykan:
        try:
            import kan  # noqa: F401

            have_pykan = True
        except ImportError as exc:  # pykan missing: report and go on
            print(f"pykan not measured ({type(exc).__name__}: {exc})")
    if have_pykan:
        rows += [
            ("pykan 0.2.8 model.fit (grid updates 5/50, default)", lambda: pykan_fit(data, args.steps)),
            (
                "pykan 0.2.8 model.fit, update_grid=False",
                lambda: pykan_fit(data, args.steps, update_grid=False),
            ),
        ]

    print(
        f"{args.steps} LBFGS steps, [2, 5, 1], G=5, float64, torch threads={torch.get_num_threads()}, "
        f"cpus={os.cpu_count()}"
    )
    print(f"{'run':55s} {'seconds':>9s} {'x anchor':>9s} {'test RMSE':>10s}")
    anchor = None
    for name, fn in rows:
        seconds, value = timed(fn, args.repeats)
        anchor = anchor or seconds
        print(f"{name:55s} {seconds:9.2f} {seconds / anchor:9.2f} {value:10.3e}", flush=True)


if __name__ == "__main__":
    main()
