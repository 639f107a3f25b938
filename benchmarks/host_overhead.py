"""Host (Python) time of one training step of a layer on the Triton path, the kernels stubbed out.

Small layers on a GPU are bound by the host: while the CPU prepares and launches a step's kernels,
the GPU waits. This measures kantk's own share of that host time on a machine without a GPU:
the Triton kernels of the GEMM form are replaced by no-ops, the path chooser is told Triton is
available, and tiny CPU tensors stand in for CUDA ones (so the PyTorch ops cost little).
``nn.Linear`` under the same loop is the reference. Not measured: Triton's own launch cost and
CUDA's per-op cost, which only a GPU shows (``layer_speed.py --device cuda``).

    python benchmarks/host_overhead.py [--rounds 7] [--steps 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRITON_INTERPRET", "1")  # importable without a GPU

import torch  # noqa: E402

import kantk  # noqa: E402
import kantk.bases.gpu as gpu  # noqa: E402
from kantk.bases.gpu import gemm  # noqa: E402


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in [n for n in vars(gemm) if n.endswith("_kernel")]:  # the GEMM form's Triton kernels
        setattr(gemm, name, _NoLaunch())
    gpu.available = lambda x: True  # the chooser takes the Triton path on these CPU tensors
    x = torch.randn(16, 8)
    cases = {"nn.Linear": torch.nn.Linear(8, 8)}
    for basis in ("bspline", "chebyshev", "rbf"):
        cases[f"kantk {basis}"] = kantk.KANLayer(8, 8, basis=basis)

    def step(module: torch.nn.Module) -> None:
        for p in module.parameters():
            p.grad = None
        module(x).sum().backward()

    times: dict[str, list[float]] = {name: [] for name in cases}
    for module in cases.values():
        for _ in range(50):
            step(module)
    for _ in range(args.rounds):  # round-robin: load hits every case alike
        for name, module in cases.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(module)
            times[name].append((time.perf_counter() - start) / args.steps * 1e6)
    floor = statistics.median(times["nn.Linear"])
    print(f"host time per training step, kernels stubbed, median of {args.rounds} rounds")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:16s} {med:7.1f} us  ({med / floor:.2f}x nn.Linear)")


if __name__ == "__main__":
    main()
