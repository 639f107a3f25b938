"""Forward+backward time of kantk's B-spline layer as the grid grows (G = 5, 50, 200, 1000).

The dense fused path does a matmul over all G+k functions per input (time linear in G); the
sparse path gathers the order+1 non-zero coefficient rows per input (time flat in G).
``sparse="auto"`` (the default) picks by size. Ratios are to the G=5 default time, from one run
(the default paths of all grids are timed round-robin; the ratio is the median over rounds).
Gradients are set to None outside the timed region.
Run:  python benchmarks/grid_scaling.py [--width 128] [--batch 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import kantk


def _median_ms(fn, repeats: int, clear, budget_s: float = 5.0) -> float:
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        clear()
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
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, args.width) * 2 - 1).requires_grad_()
    print(
        f"width {args.width}, batch {args.batch}, order 3, threads {args.threads}, torch {torch.__version__}"
    )
    print(f"native kernels: {kantk.native_status()}")
    layers = {g: kantk.KANLayer(args.width, args.width, basis_kwargs={"grid_size": g}) for g in args.grids}
    steps = {g: (lambda layer=layer: layer(x).sum().backward()) for g, layer in layers.items()}

    def clear() -> None:  # gradients set to None outside the timed region, as in layer_speed.py
        x.grad = None
        for layer in layers.values():
            layer.zero_grad(set_to_none=True)

    # the default ("auto") path of every grid, round-robin so that drifting machine speed hits all
    # alike; the ratio is the median over rounds of time(G) / time(first G) within a round
    for step in steps.values():
        for _ in range(2):
            step()
    rounds = []
    for _ in range(args.repeats):
        times = {}
        for g, step in steps.items():
            clear()
            t = time.perf_counter()
            step()
            times[g] = (time.perf_counter() - t) * 1e3
        rounds.append(times)
    first = args.grids[0]
    print(f"{'G':>6s} {'auto ms':>10s} {'dense ms':>10s} {'sparse ms':>10s} {f'auto / auto@G={first}':>16s}")
    for g, layer in layers.items():
        auto = statistics.median(r[g] for r in rounds)
        ratio = statistics.median(r[g] / r[first] for r in rounds)
        forced = {}
        for mode in (False, True):  # each path forced, timed on its own
            layer.basis.sparse = mode
            forced[mode] = _median_ms(steps[g], args.repeats, clear)
        layer.basis.sparse = "auto"
        print(f"{g:>6d} {auto:>10.2f} {forced[False]:>10.2f} {forced[True]:>10.2f} {ratio:>16.2f}")


if __name__ == "__main__":
    main()
