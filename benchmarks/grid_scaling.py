"""Forward+backward time of kantk's B-spline layer as the grid grows (G = 5, 50, 200, 1000).

The dense fused path does a matmul over all G+k functions per input (time linear in G); the
sparse path gathers the order+1 non-zero coefficient rows per input (time flat in G).
``sparse="auto"`` (the default) picks by size. Ratios are to the G=5 default time, from one run.
Run:  python benchmarks/grid_scaling.py [--width 128] [--batch 1024] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import kantk


def _median_ms(fn, repeats: int, budget_s: float = 5.0) -> float:
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--grids", type=int, nargs="+", default=[5, 50, 200, 1000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.width) * 2 - 1).requires_grad_()
    print(f"width {args.width}, batch {args.batch}, order 3, threads {args.threads}, torch {torch.__version__}")
    print(f"{'G':>6s} {'auto ms':>10s} {'dense ms':>10s} {'sparse ms':>10s} {'auto / auto@G=5':>16s}")
    base = None
    for grid in args.grids:
        layer = kantk.KANLayer(args.width, args.width, basis_kwargs={"grid_size": grid})
        step = lambda: layer(x).sum().backward()  # noqa: E731
        row = {}
        for mode in ("auto", False, True):
            layer.basis.sparse = mode
            row[mode] = _median_ms(step, args.repeats)
        base = base or row["auto"]
        print(f"{grid:>6d} {row['auto']:>10.2f} {row[False]:>10.2f} {row[True]:>10.2f} {row['auto'] / base:>16.2f}")


if __name__ == "__main__":
    main()
