"""Host (Python) time of one training step of a layer on the Triton path, the kernels not run.

Small layers on a GPU are bound by the host: while the CPU prepares and launches a step's kernels,
the GPU waits. This measures kantk's own share of that host time on a machine without a GPU:
the path chooser is told Triton is available, and tiny CPU tensors stand in for CUDA ones (so the
PyTorch ops cost little). By default the GEMM form's Triton kernels are replaced by no-ops;
with ``--dispatch`` they go through Triton's own launch path (its argument binding,
specialisation and cache look-up), compiled for sm_90 by a stand-in driver that launches
nothing. ``nn.Linear`` under the same loop is the reference. Not measured: CUDA's per-op and
per-launch cost, which only a GPU shows (``layer_speed.py --device cuda``).

    python benchmarks/host_overhead.py [--rounds 7] [--steps 500] [--dispatch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def _stand_in_driver() -> None:
    """Make Triton compile for sm_90 and launch nothing (no GPU or CUDA driver here): its
    dispatch runs as on a GPU up to the launch call."""
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase

    class Utils:
        def load_binary(self, name, kernel, shared, device):
            return (0, 0, 0, 0, 1024)  # module, function, registers, spills, max threads

        def get_device_properties(self, device):
            return {
                "max_shared_mem": 232448,
                "multiprocessor_count": 132,
                "max_num_regs": 65536,
                "warpSize": 32,
            }

    class StandIn(DriverBase):
        def __init__(self):
            self.utils = Utils()
            self.launcher_cls = lambda src, metadata: lambda *args: None

        @staticmethod
        def is_active():
            return True

        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def map_python_to_cpp_type(self, ty):
            return ty

        def get_benchmarker(self):
            raise NotImplementedError

    triton.runtime.driver.set_active(StandIn())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--dispatch", action="store_true", help="through Triton's launch path (see above)")
    args = parser.parse_args()
    if args.dispatch:
        os.environ.pop("TRITON_INTERPRET", None)
        _stand_in_driver()
    else:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # importable without a GPU
    import torch

    import kantk
    import kantk.bases.gpu as gpu
    from kantk.bases.gpu import gemm

    torch.set_num_threads(1)
    if not args.dispatch:
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
    how = "through Triton's dispatch, nothing launched" if args.dispatch else "kernels stubbed"
    print(f"host time per training step, {how}, median of {args.rounds} rounds")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:16s} {med:7.1f} us  ({med / floor:.2f}x nn.Linear)")


if __name__ == "__main__":
    main()
