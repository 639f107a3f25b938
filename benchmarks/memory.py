"""Peak memory of one training step: kantk's B-spline layer beside an MLP block and the dense form.

Each case runs in its own subprocess; the figure is the peak resident memory during the first
forward+backward (Linux VmHWM, reset through /proc/self/clear_refs) minus the resident memory
just before it, so gradients, saved activations, temporaries and kantk's reusable scratch
buffers all count. Run:  python benchmarks/memory.py [--batch 8192] [--width 256] [--grid 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = ("kantk", "dense", "mlp")


def _step(case: str, batch: int, width: int, grid: int, order: int) -> float:
    import torch
    import torch.nn.functional as F

    import kantk
    from kantk.bases.bspline import cox_de_boor

    torch.manual_seed(0)
    x = (torch.rand(batch, width) * 2 - 1).requires_grad_()
    if case == "kantk":
        model = kantk.KANLayer(width, width, basis_kwargs={"grid_size": grid, "order": order})
        run = lambda: model(x).sum().backward()  # noqa: E731
    elif case == "dense":  # efficient-kan's form: dense basis tensor kept by autograd
        model = kantk.KANLayer(width, width, basis_kwargs={"grid_size": grid, "order": order})

        def run():
            feats = cox_de_boor(x, model.basis.grid, order).reshape(batch, -1)
            y = feats @ model.spline_weight().reshape(width, -1).t() + F.silu(x) @ model.base_weight().t()
            y.sum().backward()
    else:  # MLP block with about the same parameter count as the KAN layer
        hidden = width * (grid + order + 1) // 2
        model = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, width)
        )
        run = lambda: model(x).sum().backward()  # noqa: E731
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS high-water mark
    before = _status_kib("VmRSS")
    run()
    peak = _status_kib("VmHWM")
    params = sum(p.numel() for p in model.parameters())
    return (peak - before) / 1024.0, params  # MiB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        import torch

        torch.set_num_threads(args.threads)
        peak, params = _step(args.case, args.batch, args.width, args.grid, args.order)
        print(json.dumps({"peak_mib": peak, "params": params}))
        return
    print(f"batch {args.batch}, width {args.width}, G={args.grid}, k={args.order}, threads {args.threads}")
    results = {}
    for case in CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                case,
                *[
                    f"--{k}={v}"
                    for k, v in (
                        ("batch", args.batch),
                        ("width", args.width),
                        ("grid", args.grid),
                        ("order", args.order),
                        ("threads", args.threads),
                    )
                ],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
    mlp = results["mlp"]["peak_mib"]
    print(f"{'case':28s} {'params':>10s} {'step peak MiB':>14s} {'x MLP':>7s}")
    names = {
        "kantk": "kantk KANLayer (default path)",
        "dense": "dense basis + matmul",
        "mlp": "MLP block (Linear-SiLU-Linear)",
    }
    for case in CASES:
        r = results[case]
        print(f"{names[case]:28s} {r['params']:>10d} {r['peak_mib']:>14.1f} {r['peak_mib'] / mlp:>7.2f}")


if __name__ == "__main__":
    main()
