"""Wall time of kantk.fit beside a plain PyTorch loop doing the same optimizer steps.

Two jobs, each run with 1 and then 2 torch threads, in this process, the rows interleaved (anchor,
kantk, anchor, kantk, ...) and the median of each taken; each row
reported as a ratio to the plain loop of its job and thread count (the anchor), so a loaded
machine moves all rows together:

- **Adam**: a [100, 64, 1] B-spline KAN (G=10, k=3, float32), 100k training and 10k test rows
  (inputs uniform in [-1, 1], label sum_{i<10} sin(pi x_i) / 3), 30 Adam steps (lr 1e-2) on
  shuffled batches of 4096. The plain loop shuffles the same way and evaluates the test split once
  at the end; ``kantk.fit`` evaluates on its default schedule (after steps 10 and 20 on a 4096-row
  subset, after step 30 on the whole split).
- **LBFGS**: the README's [2, 5, 1] KAN (G=5, k=3, float64) on exp(sin(pi*x1) + x2**2), 1000
  training and 1000 test rows, 100 full-batch LBFGS steps with kantk's settings (lr 1, history 30,
  strong Wolfe, no tolerance stop). Both evaluate the test split after every step (kantk.fit's
  default for LBFGS, as pykan).

``kantk.fit`` runs with ``progress=False`` and ``seed=0``. pykan rows (LBFGS job, ``--pykan``)
appear when ``kan`` (pip ``pykan``) is importable; pykan runs in a temporary directory because it
may write there. Nothing is written to the working directory.

Run:  python benchmarks/fit_speed.py [--repeats 3] [--threads 1 2] [--lbfgs-steps 100] [--pykan]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import kantk
from kantk.lightning.module import LBFGS_DEFAULTS

FORMULA = "exp(sin(pi*x1) + x2**2)"
ADAM = {"widths": [100, 64, 1], "grid": 10, "train": 100_000, "test": 10_000, "batch": 4096, "steps": 30}


def rmse(pred: torch.Tensor, label: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((pred - label) ** 2)))


# -- Adam job ------------------------------------------------------------------------------------


def adam_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = ADAM["train"] + ADAM["test"]
    x = torch.rand(n, ADAM["widths"][0], generator=g, dtype=torch.float32) * 2 - 1
    y = torch.sin(torch.pi * x[:, :10]).sum(1, keepdim=True) / 3
    t = ADAM["train"]
    return {"train_input": x[:t], "train_label": y[:t], "test_input": x[t:], "test_label": y[t:]}


def adam_model() -> kantk.KAN:
    return kantk.KAN(ADAM["widths"], basis_kwargs={"grid_size": ADAM["grid"], "order": 3}, seed=0)


def adam_plain(data: dict[str, torch.Tensor]) -> float:
    model = adam_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data["train_input"], data["train_label"]
    g = torch.Generator().manual_seed(0)
    batch, order, pos = ADAM["batch"], torch.randperm(x.shape[0], generator=g), 0
    for _ in range(ADAM["steps"]):
        if pos >= x.shape[0]:
            order, pos = torch.randperm(x.shape[0], generator=g), 0
        rows = order[pos : pos + batch]
        pos += batch
        opt.zero_grad()
        F.mse_loss(model(x[rows]), y[rows]).backward()
        opt.step()
    with torch.no_grad():
        return rmse(model(data["test_input"]), data["test_label"])


def adam_fit(data: dict[str, torch.Tensor]) -> float:
    model = adam_model()
    history = kantk.fit(
        model, data, steps=ADAM["steps"], optimizer="adam", batch=ADAM["batch"], progress=False, seed=0
    )
    return history.test_rmse[-1]


# -- LBFGS job -----------------------------------------------------------------------------------


def lbfgs_model() -> kantk.KAN:
    return kantk.KAN([2, 5, 1], basis_kwargs={"grid_size": 5, "order": 3}, seed=0).to(torch.float64)


def lbfgs_plain(data: dict[str, torch.Tensor], steps: int) -> float:
    model = lbfgs_model()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, **LBFGS_DEFAULTS)
    x, y = data["train_input"], data["train_label"]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        return loss

    value = float("nan")
    for _ in range(steps):
        opt.step(closure)
        with torch.no_grad():  # the per-step test evaluation kantk.fit also does for LBFGS
            value = rmse(model(data["test_input"]), data["test_label"])
    return value


def lbfgs_fit(data: dict[str, torch.Tensor], steps: int) -> float:
    history = kantk.fit(lbfgs_model(), data, steps=steps, optimizer="lbfgs", progress=False, seed=0)
    return history.test_rmse[-1]


def pykan_fit(data: dict[str, torch.Tensor], steps: int, update_grid: bool = True) -> float:
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is reported")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    parser.add_argument("--lbfgs-steps", type=int, default=100)
    parser.add_argument("--pykan", action="store_true", help="add pykan rows to the LBFGS job")
    args = parser.parse_args()

    adam = adam_data()
    lbfgs = kantk.create_dataset(
        FORMULA, n_vars=2, train_num=1000, test_num=1000, seed=0, dtype=torch.float64
    )
    jobs: list[tuple[str, list[tuple[str, Callable[[], float]]]]] = [
        (
            f"Adam, {ADAM['steps']} steps, batch {ADAM['batch']}, {ADAM['widths']} G={ADAM['grid']}, "
            f"{ADAM['train'] // 1000}k rows, float32",
            [("plain Adam loop (anchor)", lambda: adam_plain(adam)), ("kantk.fit", lambda: adam_fit(adam))],
        ),
        (
            f"LBFGS, {args.lbfgs_steps} full-batch steps, [2, 5, 1] G=5, 1000 rows, float64",
            [
                ("plain LBFGS loop (anchor)", lambda: lbfgs_plain(lbfgs, args.lbfgs_steps)),
                ("kantk.fit", lambda: lbfgs_fit(lbfgs, args.lbfgs_steps)),
            ],
        ),
    ]
    if args.pykan:
        try:
            import kan  # noqa: F401

            jobs[1][1].append(
                ("pykan model.fit (grid updates 5/50)", lambda: pykan_fit(lbfgs, args.lbfgs_steps))
            )
        except ImportError as exc:  # pykan missing: report and go on
            print(f"pykan not measured ({type(exc).__name__}: {exc})")

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, cpus={os.cpu_count()}, "
        f"median of {args.repeats} interleaved runs, kantk native kernels: {kantk.native_status()}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        for title, rows in jobs:
            print(f"\n{title}; torch threads={torch.get_num_threads()}")
            print(f"{'run':42s} {'seconds':>9s} {'x anchor':>9s} {'test RMSE':>10s}")
            for _, fn in rows:
                fn()  # warm-up: native kernel load, first-call allocations
            # interleaved (anchor, kantk, anchor, kantk, ...): load that drifts hits both alike
            times: list[list[float]] = [[] for _ in rows]
            values = [float("nan")] * len(rows)
            for _ in range(args.repeats):
                for i, (_, fn) in enumerate(rows):
                    seconds, values[i] = timed(fn, 1)
                    times[i].append(seconds)
            anchor = statistics.median(times[0])
            for (name, _), row_times, value in zip(rows, times, values, strict=True):
                seconds = statistics.median(row_times)
                print(f"{name:42s} {seconds:9.3f} {seconds / anchor:9.2f} {value:10.3e}", flush=True)


if __name__ == "__main__":
    main()
