#!/usr/bin/env python
"""Forward+backward speed and peak memory of one KAN layer on a GPU, against its GEMM floor and peers.

A benchmark, not a test. Run from the repository root on a machine with a CUDA device:

    python benchmarks/layer_speed.py --device cuda --peers DIR --json out.json

(``layer_speed.py --device cuda`` hands its remaining arguments to this script.)

For each configuration (width w = in = out, batch B, grid size G; default: w256/B8192 at G=5, 50,
200 and w1024/B65536 at G=5, 50), in one run, with float32 and TF32 off (``--tf32`` allows it):

* GEMM floor: ``nn.Linear(w*(G+k+1), w, bias=False)`` over a precomputed feature matrix that
  requires grad (the forward GEMM and both backward GEMMs the layer cannot avoid);
* MLP: ``nn.Linear(w, w)`` + SiLU;
* kantk's B-spline layer (the path the chooser takes, printed), at G=5 also under bf16 autocast,
  and kantk's RBF (8 centres) and Chebyshev (degree 7) layers;
* the peers when their layer files are importable (``--peers DIR`` adds DIR to ``sys.path``; the
  files are not part of kantk): efficient-kan's ``KANLinear`` (``efficient_kan_layer.py``),
  fast-kan's ``FastKANLayer`` with 8 centres (``fastkan_layer.py``) and ChebyKAN's
  ``ChebyKANLayer`` of degree 7 (``chebykan_layer.py``).

Each case: ``--warmup`` untimed calls (Triton compiles there), then ``--repeats`` calls timed
with CUDA events (median reported; slow cases get fewer, at least 3), and the peak memory one call
allocates beyond what was allocated before it (``torch.cuda.max_memory_allocated``), and the
host time: the CPU time to enqueue one step on an idle GPU (median of up to 10 calls, each after a
synchronize); a step whose host time reaches its GPU time is bound by the host (launches and
Python), not by the GPU. ``--profile`` prints torch.profiler tables of the default B-spline step
at G=5 (by CPU time) and of the ``triton_sparse`` step at G >= 200 (by GPU time). A case that
fails (e.g. out of memory) is reported and skipped. Last, the run judges issue 14's speed and
memory criteria from its own figures (``done_when``: met, not met, or not measured; also in the
JSON).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import kantk  # noqa: E402
from kantk.bases.bspline import choose_path  # noqa: E402

#: Other tiles of the sparse kernels (kantk.bases.gpu.sparse.SPARSE_TILES: rows, outputs, warps of
#: the forward and of the input gradient) timed beside the default at G >= 50; none spills
#: registers on sm_90 (``benchmarks/kernel_compile.py``).
SPARSE_TILE_VARIANTS = {
    "fwd 32x64 w4, grad 32x32 w4": {"forward": (32, 64, 4), "grad_input": (32, 32, 4)},
    "fwd 256x32 w8, grad 64x32 w8": {"forward": (256, 32, 8), "grad_input": (64, 32, 8)},
    "fwd 64x64 w8, grad 64x16 w4": {"forward": (64, 64, 8), "grad_input": (64, 16, 4)},
}

#: The GEMM form's tiles before 2026-12-06 (kantk.bases.gpu.gemm.GEMM_TILES), timed beside the
#: default at G = 5: 2048 elements a tile, 4 warps (255 registers; the backward's kernel spills).
#: Exactly the earlier tiles for more than 32 inputs (32 rows x 64 inputs), as at the quoted sizes.
GEMM_TILES_BEFORE = {"elements": 2048, "weight": (32, 64), "split": (32, 64), "warps": 4}

DEFAULT_CONFIGS = ["256x8192x5", "256x8192x50", "256x8192x200", "1024x65536x5", "1024x65536x50"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="WIDTHxBATCHxG entries")
    p.add_argument("--order", type=int, default=3, help="B-spline order k")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per case first")
    p.add_argument("--max-case-seconds", type=float, default=6.0, help="cap on one case's timed calls")
    p.add_argument("--peers", metavar="DIR", default=None, help="folder with the peers' layer files")
    p.add_argument("--peer-max-g", type=int, default=200, help="time efficient-kan only up to this G")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off by default)")
    p.add_argument(
        "--device",
        default="cuda",
        help="cuda; cpu: the same cases timed with perf_counter (the CPU peer table, or a dry run)",
    )
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of one kantk step")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    return p.parse_args(argv)


class Timer:
    """CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3


def _case(
    module: nn.Module,
    x: torch.Tensor,
    pick=lambda y: y,
    autocast: torch.dtype | None = None,
    env: dict[str, str] | None = None,
):
    if env:
        inner = _case(module, x, pick, autocast)

        def with_env() -> None:
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                inner()
            finally:
                for k, v in old.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v

        return with_env

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        if autocast is not None:
            with torch.autocast(x.device.type, dtype=autocast):
                y = pick(module(x))
        else:
            y = pick(module(x))
        y.float().sum().backward()

    return step


def run_case(step: Callable[[], None], args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    timer = Timer(device)
    try:
        for _ in range(args.warmup):
            last = timer(step)
        n = args.repeats
        if last * n > args.max_case_seconds * 1e3:
            n = max(3, int(args.max_case_seconds * 1e3 / max(last, 1e-6)))
        if device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            peak = float("nan")
        times = [timer(step) for _ in range(n)]
        host = []  # CPU time to enqueue one step on an idle GPU: at or above the GPU time, host-bound
        for _ in range(min(n, 10)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step()
            host.append((time.perf_counter() - t) * 1e3)
        if device.type == "cuda":
            torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - report (e.g. out of memory) and go on
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        return {"error": msg}
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "host_ms": statistics.median(host),
        "repeats": n,
        "peak_mib": peak,
    }


def import_peers(folder: str | None) -> dict[str, Any]:
    if folder:
        sys.path.insert(0, str(Path(folder).resolve()))
    peers: dict[str, Any] = {}
    for name, module, attr in (
        ("efficient-kan", "efficient_kan_layer", "KANLinear"),
        ("fast-kan (8 RBF)", "fastkan_layer", "FastKANLayer"),
        ("ChebyKAN (deg 7)", "chebykan_layer", "ChebyKANLayer"),
    ):
        try:
            peers[name] = getattr(__import__(module), attr)
        except Exception as exc:  # noqa: BLE001
            print(f"peer {name}: not importable ({type(exc).__name__}: {exc})")
    return peers


def bench_config(width: int, batch: int, grid: int, args, device, peers) -> dict[str, dict[str, Any]]:
    k = args.order
    gen = torch.Generator(device="cpu").manual_seed(width + grid)
    torch.manual_seed(width + grid)
    results: dict[str, dict[str, Any]] = {}

    def x_in() -> torch.Tensor:
        return (torch.rand(batch, width, generator=gen) * 2 - 1).to(device).requires_grad_()

    def add(name: str, build: Callable[[], Callable[[], None]]) -> None:
        try:
            step = build()
        except Exception as exc:  # noqa: BLE001
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
            return
        results[name] = run_case(step, args, device)
        r = results[name]
        shown = f"{r['median_ms']:.3f} ms, {r['peak_mib']:.0f} MiB" if "median_ms" in r else r["error"]
        print(f"  {name}: {shown}", flush=True)
        del step
        gc.collect()

    cols = grid + k + 1

    def floor():
        lin = nn.Linear(width * cols, width, bias=False).to(device)
        feats = torch.rand(batch, width * cols, device=device).requires_grad_()
        return _case(lin, feats)

    add("GEMM floor", floor)
    add(
        "MLP Linear+SiLU", lambda: _case(nn.Sequential(nn.Linear(width, width), nn.SiLU()).to(device), x_in())
    )

    def kantk_layer(basis: str, kwargs: dict, autocast=None, path: str | None = None, env=None, swap=None):
        """``swap``: (module of kantk.bases.gpu, name, value) set for this case's steps only (a
        dict for a named tuple replaces those fields)."""

        def build():
            layer = kantk.KANLayer(width, width, basis=basis, basis_kwargs=kwargs).to(device)
            x = x_in()
            if path is not None:
                layer.basis.path = path
            if basis == "bspline":
                results.setdefault("_paths", {})[f"{basis}{' ' + path if path else ''}"] = choose_path(
                    layer.basis, x.detach(), layer.edge_weights()
                ).value
            step = _case(layer, x, autocast=autocast, env=env)
            if swap is None:
                return step
            module, name, value = importlib.import_module(f"kantk.bases.gpu.{swap[0]}"), swap[1], swap[2]

            def with_swap() -> None:
                saved = getattr(module, name)
                setattr(module, name, saved._replace(**value) if hasattr(saved, "_replace") else value)
                try:
                    step()
                finally:
                    setattr(module, name, saved)

            return with_swap

        return build

    add("kantk bspline", kantk_layer("bspline", {"grid_size": grid, "order": k}))
    # the Triton variants also run in Triton's interpreter on a CPU (TRITON_INTERPRET=1): a dry run
    triton_here = device.type == "cuda" or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if width <= 256 and triton_here:
        for forced in ("triton", "triton_sparse") + (("torch_sparse",) if grid >= 50 else ()):
            add(
                f"kantk bspline ({forced} path)",
                kantk_layer("bspline", {"grid_size": grid, "order": k}, path=forced),
            )
    if width <= 256 and grid >= 50 and triton_here:
        for label, tiles in SPARSE_TILE_VARIANTS.items():
            add(
                f"kantk bspline (triton_sparse, {label})",
                kantk_layer(
                    "bspline",
                    {"grid_size": grid, "order": k},
                    path="triton_sparse",
                    swap=("sparse", "SPARSE_TILES", tiles),
                ),
            )
    if grid == 5 and triton_here:
        add(
            "kantk bspline (GEMM tiles before)",
            kantk_layer(  # the Triton path forced: a CUDA run takes it anyway, a dry run on a CPU too
                "bspline",
                {"grid_size": grid, "order": k},
                path="triton",
                swap=("gemm", "GEMM_TILES", GEMM_TILES_BEFORE),
            ),
        )
    if args.profile and grid == 5 and device.type == "cuda" and width <= 256:
        profile_step(kantk_layer("bspline", {"grid_size": grid, "order": k})())
    if args.profile and grid >= 200 and device.type == "cuda" and width <= 256:
        print("  profile of the triton_sparse path (by GPU time):")
        spec = {"grid_size": grid, "order": k}
        profile_step(kantk_layer("bspline", spec, path="triton_sparse")(), sort_by="self_cuda_time_total")
    if grid == 5 and device.type == "cuda":
        add(
            "kantk bspline (fused form)",
            kantk_layer("bspline", {"grid_size": grid, "order": k}, env={"KANTK_TRITON_FORM": "fused"}),
        )
        results["_accuracy"] = accuracy(width, min(batch, 8192), grid, k, device)
        print(f"  accuracy vs float64: {results['_accuracy']}", flush=True)
    if grid == 5:
        if device.type == "cuda":
            add(
                "kantk bspline bf16 autocast",
                kantk_layer("bspline", {"grid_size": grid, "order": k}, autocast=torch.bfloat16),
            )
        add("kantk rbf (8 centres)", kantk_layer("rbf", {"num_centers": 8}))
        add("kantk chebyshev (deg 7)", kantk_layer("chebyshev", {"degree": 7}))
    if "efficient-kan" in peers and grid <= args.peer_max_g and not (width >= 1024 and grid > 5):
        add(
            "efficient-kan",
            lambda: _case(
                peers["efficient-kan"](width, width, grid_size=grid, spline_order=k).to(device), x_in()
            ),
        )
    if grid == 5:
        if "fast-kan (8 RBF)" in peers:
            add(
                "fast-kan (8 RBF)",
                lambda: _case(peers["fast-kan (8 RBF)"](width, width, num_grids=8).to(device), x_in()),
            )
        if "ChebyKAN (deg 7)" in peers:
            add(
                "ChebyKAN (deg 7)",
                lambda: _case(peers["ChebyKAN (deg 7)"](width, width, 7).to(device), x_in()),
            )
    return results


def profile_step(step: Callable[[], None], sort_by: str = "self_cpu_time_total") -> None:
    """Print where one training step of the layer spends CPU and GPU time (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by=sort_by, row_limit=18, max_name_column_width=40))


def accuracy(width: int, batch: int, grid: int, k: int, device: torch.device) -> dict[str, float]:
    """Max |y - y64| / max |y64| of the layer's output and input gradient against float64, for
    both forms of the kernels, and for the floor's float32 GEMM (cuBLAS) alike."""
    torch.manual_seed(0)
    layer = kantk.KANLayer(width, width, basis_kwargs={"grid_size": grid, "order": k}).to(device)
    x = (torch.rand(batch, width, device=device) * 2 - 1).requires_grad_()
    ref_layer = kantk.KANLayer(width, width, basis_kwargs={"grid_size": grid, "order": k}).to(device).double()
    ref_layer.load_state_dict({n: t.double() for n, t in layer.state_dict().items()})
    x64 = x.detach().double().requires_grad_()
    y64 = ref_layer(x64)
    (g64,) = torch.autograd.grad(y64.sum(), x64)
    out: dict[str, float] = {}
    for form in ("gemm", "fused"):
        os.environ["KANTK_TRITON_FORM"] = form
        y = layer(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        out[f"kantk {form} y"] = float((y.detach().double() - y64).abs().max() / y64.abs().max())
        out[f"kantk {form} dx"] = float((g.double() - g64).abs().max() / g64.abs().max())
    os.environ.pop("KANTK_TRITON_FORM", None)
    a = torch.randn(batch, 2048, device=device)
    w = torch.randn(2048, width, device=device)
    ref = a.double() @ w.double()
    out["cuBLAS fp32 GEMM"] = float(((a @ w).double() - ref).abs().max() / ref.abs().max())
    return {key: float(f"{v:.2e}") for key, v in out.items()}


def print_table(key: str, res: dict[str, dict[str, Any]]) -> None:
    floor = res.get("GEMM floor", {}).get("median_ms")
    print(f"\n{key}  (paths: {res.get('_paths', {})})")
    if "_accuracy" in res:
        print(f"  accuracy vs float64 (max abs error / max abs value): {res['_accuracy']}")
    print(f"  {'case':<46}{'median ms':>11}{'x floor':>9}{'host ms':>9}{'peak MiB':>10}{'reps':>6}")
    for name, r in res.items():
        if name.startswith("_"):
            continue
        if "median_ms" not in r:
            print(f"  {name:<46}failed: {r['error']}")
            continue
        ratio = f"{r['median_ms'] / floor:.2f}" if floor else "-"
        host = f"{r['host_ms']:.3f}" if "host_ms" in r else "-"
        print(
            f"  {name:<46}{r['median_ms']:>11.3f}{ratio:>9}{host:>9}{r['peak_mib']:>10.0f}{r['repeats']:>6d}"
        )


PEERS = ("efficient-kan", "fast-kan (8 RBF)", "ChebyKAN (deg 7)")


def done_when(all_results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's speed and memory criteria, judged from one run's results (``bench_config``'s, by
    configuration key): one row per criterion and configuration with the measured ratio, the limit,
    the comparison (``<=``, or ``<`` for "faster than") and ``ok``: True/False, or None where the
    run lacks a case the criterion needs (no peers, say)."""

    def get(key: str, case: str, field: str = "median_ms") -> float | None:
        value = all_results.get(key, {}).get(case, {}).get(field)
        return None if value is None or value != value else float(value)  # NaN: not measured

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b <= 0 else a / b

    rows: list[dict[str, Any]] = []

    def row(criterion: str, key: str, value: float | None, limit: float, op: str = "<=") -> None:
        ok = None if value is None else (value <= limit if op == "<=" else value < limit)
        rows.append(dict(criterion=criterion, config=key, value=value, op=op, limit=limit, ok=ok))

    for key, limit in (("w256 B8192 G5", 1.5), ("w1024 B65536 G5", 1.2)):
        row("bspline time / floor's", key, ratio(get(key, "kantk bspline"), get(key, "GEMM floor")), limit)
    for key in all_results:
        times = [t for t in (get(key, p) for p in PEERS) if t is not None]
        peaks = [m for m in (get(key, p, "peak_mib") for p in PEERS) if m is not None]
        ours = get(key, "kantk bspline")
        row("bspline time / fastest peer's", key, ratio(ours, min(times, default=None)), 1.0, "<")
        ours_mib = get(key, "kantk bspline", "peak_mib")
        row("bspline peak memory / least peer's", key, ratio(ours_mib, min(peaks, default=None)), 1.0)
        for mine, theirs in (
            ("kantk chebyshev (deg 7)", "ChebyKAN (deg 7)"),
            ("kantk rbf (8 centres)", "fast-kan (8 RBF)"),
        ):
            if get(key, mine) is not None:
                row(f"{mine} time / {theirs}'s", key, ratio(get(key, mine), get(key, theirs)), 1.0, "<")
        if get(key, "kantk bspline bf16 autocast") is not None:
            value = ratio(get(key, "kantk bspline bf16 autocast"), ours)
            row("bspline bf16 autocast time / float32's", key, value, 1.0, "<")
    g200, g5 = get("w256 B8192 G200", "kantk bspline"), get("w256 B8192 G5", "kantk bspline")
    row("bspline time G=200 / G=5", "w256 B8192", ratio(g200, g5), 2.0)
    return rows


def print_done_when(rows: list[dict[str, Any]]) -> None:
    print("\nissue 14's criteria, from this run:")
    for r in rows:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[r["ok"]]
        value = "-" if r["value"] is None else f"{r['value']:.3f}"
        label = f"{r['criterion']} ({r['config']})"
        print(f"  {label:<70}{value:>8} {r['op']:<2} {r['limit']:<5}{verdict}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    print(
        f"device: {name}; torch {torch.__version__}; triton {triton_version}; TF32 "
        f"{'on' if args.tf32 else 'off'}"
    )
    peers = import_peers(args.peers)
    all_results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for config in args.configs:
        width, batch, grid = (int(v) for v in config.split("x"))
        key = f"w{width} B{batch} G{grid}"
        print(f"timing {key} ...", flush=True)
        all_results[key] = bench_config(width, batch, grid, args, device, peers)
    for key, res in all_results.items():
        print_table(key, res)
    criteria = done_when(all_results)
    print_done_when(criteria)
    print(f"\ntotal benchmark time {time.perf_counter() - t0:.1f} s")
    if args.json:
        payload = {
            "device": name,
            "torch": torch.__version__,
            "triton": triton_version,
            "tf32": args.tf32,
            "results": all_results,
            "done_when": criteria,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
