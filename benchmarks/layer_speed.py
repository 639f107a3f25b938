#!/usr/bin/env python
"""Forward+backward speed of one KAN layer against its GEMM floor, an MLP layer and pykan.

A benchmark, not a test: it prints a table and asserts nothing. Run from the repository root:

    python benchmarks/layer_speed.py                       # widths 256 and 64, G=5, k=3, 2 threads
    python benchmarks/layer_speed.py --widths 128 --grid 10 --compile --json /tmp/speed.json
    python benchmarks/layer_speed.py --device cuda --peers DIR   # GPU: see layer_speed_cuda.py

Every case is timed as ``y = f(x); y.sum().backward()`` with an input that requires grad, on CPU,
with ``torch.set_num_threads(--threads)``; gradients are cleared (set to None) outside the timed
region. Each case gets ``--warmup`` untimed calls; then the timed calls of one width's cases run
round-robin (one call of each case per round, ``--repeats`` rounds), so that load from other
processes hits every case alike, and the median per case is reported. Slow cases get fewer rounds
(at least 3) so that each stays within ``--max-case-seconds``; the ``reps`` column says how many.

Cases, for a layer of width w (in = out = w), grid size G and spline order k:

* GEMM floor: ``nn.Linear(w*(G+k+1), w, bias=False)`` on a precomputed (batch, w*(G+k+1)) feature
  matrix that requires grad, so the forward GEMM and both backward GEMMs run. These are the
  multiply-adds a KAN layer cannot avoid: G+k B-spline bases per input plus one column for the
  base (SiLU) branch. The same floor without the base column, w*(G+k), is shown for reference.
* MLP: ``nn.Linear(w, w)`` + SiLU, the dense layer of the same width.
* kantk: ``kantk.KANLayer(w, w, basis="bspline", basis_kwargs={"grid_size": G, "order": k})``.
* kantk (torch.compile): a copy of the same layer under ``torch.compile`` (``--compile``; off by default).
  Its first call (compilation) is reported separately.
* pykan: ``kan.KANLayer.KANLayer(w, w, num=G, k=k)`` (pip package ``pykan``), if importable; its
  forward returns ``(y, preacts, postacts, postspline)`` and ``y`` is used. pykan's cases run
  after all the others: its (batch, out, in) temporaries (GBs at width 256) page-fault heavily
  and would disturb the timings that follow them.

Ratios are ``time / reference time``: ``x floor`` against the floor with the base column, ``x MLP``
against the MLP layer and ``x pykan`` against pykan's layer (below 1: faster than pykan).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# runnable from a checkout even when kantk is not installed
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import kantk  # noqa: E402 (needs the sys.path setup above)

FLOOR = "GEMM floor"
FLOOR_NO_BASE = "GEMM floor, no base col"
MLP = "MLP Linear+SiLU"
KANTK = "kantk KANLayer"
KANTK_COMPILED = "kantk KANLayer compiled"
PYKAN = "pykan KANLayer"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Median forward+backward time of a KAN layer vs its GEMM floor, an MLP layer and pykan (CPU)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch", type=int, default=1024, help="batch size")
    p.add_argument("--widths", type=int, nargs="+", default=[256, 64], help="layer widths (in = out)")
    p.add_argument("--grid", type=int, default=5, help="B-spline grid size G (intervals)")
    p.add_argument("--order", type=int, default=3, help="B-spline order k")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--repeats", type=int, default=20, help="timed iterations per case (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per case before timing")
    p.add_argument(
        "--max-case-seconds",
        type=float,
        default=10.0,
        help="cap on the timed part of one case: slow cases get fewer repeats (>= 3); 0 disables",
    )
    p.add_argument("--compile", action="store_true", help="also time the kantk layer under torch.compile")
    p.add_argument("--no-pykan", action="store_true", help="skip pykan even if it is installed")
    p.add_argument("--seed", type=int, default=0, help="seed for inputs and parameters")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    for name in ("batch", "grid", "threads", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.order < 0 or args.warmup < 1 or any(w < 1 for w in args.widths):
        p.error("--order must be >= 0, --warmup >= 1 and every width >= 1")
    return args


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "kantk": getattr(kantk, "__version__", "?"),
        "kantk_native": kantk.native_status(),  # builds the native kernels now, outside the timing
    }


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


Case = tuple[Callable[[], None], Callable[[], None]]  # (step: forward+backward, zero: clear grads)


def time_cases(
    cases: dict[str, Case], warmup: int, repeats: int, max_seconds: float
) -> dict[str, dict[str, Any]]:
    """Median wall time of each case's ``step()``; its ``zero()`` runs untimed before each call.

    Every case is warmed up first; then the timed calls go round-robin over the cases, so that
    load from other processes drifting during the run hits every case alike and the ratios
    between them stay meaningful. ``first_call_ms`` is a case's first warm-up call (for a
    compiled module, compilation included). A case whose warm-up raises is reported with
    ``error``. If one round of every case times ``repeats`` would exceed ``max_seconds`` per case,
    fewer rounds (at least 3) are timed.
    """
    out: dict[str, dict[str, Any]] = {}
    live: dict[str, Case] = {}
    last = 0.0
    for name, (step, zero) in cases.items():
        try:
            first = None
            for _ in range(warmup):
                zero()
                t = time.perf_counter()
                step()
                dt = time.perf_counter() - t
                first = dt if first is None else first
        except Exception as exc:  # noqa: BLE001 - report and go on
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"  {name} failed: {msg}")
            out[name] = {"error": msg}
            continue
        out[name] = {"first_call_ms": first * 1e3}
        live[name] = (step, zero)
        last += dt  # the last warm-up call: the first may include compilation
    n = repeats
    if live and max_seconds > 0 and last * repeats > max_seconds * len(live):
        n = max(3, min(repeats, int(max_seconds * len(live) / max(last, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in live}
    gc.collect()
    for _ in range(n):
        for name, (step, zero) in live.items():
            zero()
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        out[name].update(
            median_ms=statistics.median(ts) * 1e3, min_ms=min(ts) * 1e3, max_ms=max(ts) * 1e3, repeats=n
        )
    return out


def _input(batch: int, width: int, gen: torch.Generator) -> torch.Tensor:
    # inside the default grid range [-1, 1], where the splines are non-zero
    return (torch.rand(batch, width, generator=gen) * 2 - 1).requires_grad_()


def _module_case(module: nn.Module, x: torch.Tensor, pick: Callable[[Any], torch.Tensor] = lambda y: y):
    def step() -> None:
        pick(module(x)).sum().backward()

    def zero() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None

    return step, zero


def import_pykan() -> tuple[Any, str | None]:
    """pykan's KANLayer class, or None and the reason it is unavailable."""
    try:
        from kan.KANLayer import KANLayer as PykanLayer  # type: ignore[import-not-found]
    except ImportError as exc:  # pykan itself or one of its dependencies (sklearn, pandas, ...)
        return None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - any import-time failure just skips pykan
        return None, f"{type(exc).__name__}: {exc}"
    return PykanLayer, None


def bench_width(args: argparse.Namespace, width: int) -> dict[str, dict[str, Any]]:
    """Every case but pykan's at one width, timed interleaved."""
    G, k, batch = args.grid, args.order, args.batch
    gen = torch.Generator().manual_seed(args.seed + width)
    torch.manual_seed(args.seed + width)
    cases: dict[str, Case] = {}
    features: dict[str, int] = {}

    # (b) GEMM floor: forward GEMM + both backward GEMMs over precomputed features
    for name, cols in ((FLOOR, G + k + 1), (FLOOR_NO_BASE, G + k)):
        lin = nn.Linear(width * cols, width, bias=False)
        feats = torch.rand(batch, width * cols, generator=gen).requires_grad_()
        cases[name] = _module_case(lin, feats)
        features[name] = width * cols

    # (c) MLP layer of the same width
    mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU())
    cases[MLP] = _module_case(mlp, _input(batch, width, gen))

    # (a) kantk's layer
    layer = kantk.KANLayer(width, width, basis="bspline", basis_kwargs={"grid_size": G, "order": k})
    cases[KANTK] = _module_case(layer, _input(batch, width, gen))

    # (e) a separate copy of the layer under torch.compile
    if args.compile:
        torch._dynamo.reset()
        twin = copy.deepcopy(layer)
        cases[KANTK_COMPILED] = _module_case(torch.compile(twin), _input(batch, width, gen))

    results = time_cases(cases, args.warmup, args.repeats, args.max_case_seconds)
    for name, f in features.items():
        results[name]["features"] = f
    if "median_ms" in results.get(KANTK_COMPILED, {}):
        results[KANTK_COMPILED]["note"] = "first_call_ms includes compilation"
    del cases
    gc.collect()
    return results


def bench_pykan(args: argparse.Namespace, width: int, pykan_cls: Any) -> dict[str, Any]:
    """(d) pykan's layer at one width. Run after every other case: at large widths it allocates
    (batch, out, in) tensors (GBs) whose page faults and release would disturb the other timings."""
    gen = torch.Generator().manual_seed(args.seed + width + 1)
    torch.manual_seed(args.seed + width)
    t = time.perf_counter()
    pk = pykan_cls(in_dim=width, out_dim=width, num=args.grid, k=args.order, device="cpu")
    build_s = time.perf_counter() - t
    case = _module_case(pk, _input(args.batch, width, gen), pick=lambda out: out[0])
    res = time_cases({PYKAN: case}, args.warmup, args.repeats, args.max_case_seconds)[PYKAN]
    res["build_s"] = build_s
    del pk
    gc.collect()
    return res


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "median_ms" not in a or "median_ms" not in b:
        return None
    return a["median_ms"] / b["median_ms"]


def print_table(args: argparse.Namespace, width: int, res: dict[str, dict[str, Any]]) -> None:
    G, k = args.grid, args.order
    floor = res[FLOOR]
    macs = 3 * args.batch * width * width * (G + k + 1)  # forward + two backward GEMMs
    print()
    print(
        f"width {width} (in = out = {width}), batch {args.batch}, G={G}, k={k}: "
        f"{G + k} spline bases + 1 base column per input"
    )
    print(
        f"  floor = {floor['features']} features -> {width}: {macs / 1e6:.0f} M multiply-adds fwd+bwd, "
        f"{2 * macs / floor['median_ms'] / 1e6:.1f} GFLOP/s"
    )
    header = (
        f"  {'case':<26}{'median ms':>10}{'min ms':>9}{'reps':>6}{'x floor':>9}{'x MLP':>8}{'x pykan':>9}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))

    def fmt(r: float | None) -> str:
        return "-" if r is None else f"{r:.2f}"

    for name, r in res.items():
        if "median_ms" not in r:
            print(f"  {name:<26}{'failed: ' + r.get('error', '?')}")
            continue
        print(
            f"  {name:<26}{r['median_ms']:>10.3f}{r['min_ms']:>9.3f}{r['repeats']:>6d}"
            f"{fmt(_ratio(r, floor)):>9}{fmt(_ratio(r, res.get(MLP))):>8}{fmt(_ratio(r, res.get(PYKAN))):>9}"
        )
    notes = []
    if KANTK_COMPILED in res and "first_call_ms" in res[KANTK_COMPILED]:
        notes.append(f"compiled first call (compilation) {res[KANTK_COMPILED]['first_call_ms'] / 1e3:.1f} s")
    if PYKAN in res:
        notes.append(f"pykan layer built in {res[PYKAN]['build_s']:.2f} s")
        r = _ratio(res[PYKAN], res[KANTK])
        if r is not None:
            notes.append(f"kantk is {r:.1f}x faster than pykan")
    if notes:
        print("  " + "; ".join(notes))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--device", default="cpu")
    known, rest = pre.parse_known_args(argv)
    if known.device != "cpu":  # the GPU benchmark (see benchmarks/layer_speed_cuda.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import layer_speed_cuda

        return layer_speed_cuda.main(["--device", known.device, *rest])
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print("machine:")
    print(f"  {info['platform']}")
    print(
        f"  processor: {info['processor'] or info['machine']!s}"
        + (f" ({info['cpu_model']})" if info["cpu_model"] else "")
        + f", cpu_count: {info['cpu_count']}"
    )
    print(
        f"  python {info['python']}, torch {info['torch']} (mkl={info['mkl']}, mkldnn={info['mkldnn']}), "
        f"threads: {info['torch_threads']}, kantk {info['kantk']}"
    )
    print(f"  kantk native kernels: {info['kantk_native']}")
    print(
        f"config: batch {args.batch}, widths {args.widths}, G={args.grid}, k={args.order}, "
        f"dtype {torch.get_default_dtype()}, warmup {args.warmup}, repeats {args.repeats}, "
        f"max {args.max_case_seconds:g} s per case; times are forward+backward (loss = y.sum())"
    )

    pykan_cls, pykan_version = None, None
    if args.no_pykan:
        print("pykan: skipped (--no-pykan)")
    else:
        pykan_cls, reason = import_pykan()
        if pykan_cls is None:
            print(f"pykan: not installed ({reason})")
        else:
            try:
                from importlib.metadata import version

                pykan_version = version("pykan")
            except Exception:  # noqa: BLE001
                pykan_version = "?"
            print(f"pykan: {pykan_version}")
        # pykan's import may touch torch's global state; keep the requested thread count
        torch.set_num_threads(args.threads)

    load = _loadavg()
    if load is not None:
        busy = "  (the machine is busy: timings may be noisy)" if load >= 1.0 else ""
        print(f"load average (1 min) before timing: {load:.2f}{busy}")

    all_results: dict[str, dict[str, Any]] = {}
    t_start = time.perf_counter()
    for width in args.widths:
        print(
            f"timing width {width}: floor, MLP, kantk{' (+ compiled)' if args.compile else ''} ...",
            flush=True,
        )
        all_results[str(width)] = bench_width(args, width)
    if pykan_cls is not None:  # last: its big temporaries would disturb the other cases
        for width in args.widths:
            print(f"timing width {width}: pykan ...", flush=True)
            all_results[str(width)][PYKAN] = bench_pykan(args, width, pykan_cls)
    for width in args.widths:
        print_table(args, width, all_results[str(width)])
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.1f} s")

    if args.json:
        payload = {
            "machine": info,
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "pykan_version": pykan_version,
            "results": all_results,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
