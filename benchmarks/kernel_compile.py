"""Compile every Triton kernel variant kantk launches for an NVIDIA GPU, on a machine without one.

Triton's interpreter (``TRITON_INTERPRET=1``, what CI runs the kernel tests in) executes a kernel's
Python body with numpy: it checks values, not whether the kernel compiles. The compiler is
stricter (a loop-carried variable must keep its type, every branch of a constexpr ``if`` must
build, shapes must be powers of two), and only a GPU session used to find out. Triton's wheel
carries the whole compiler down to ``ptxas``, so this compiles for a chosen architecture on the
CPU:

1. a subprocess runs a set of layer steps in the interpreter (every basis, both forms, the sparse
   kernels, float32/float64, autocast, frozen weights, kept and re-made basis matrices) and
   records each launch: kernel, argument types, constexpr values, ``num_warps``;
2. each distinct variant (float16 ones also as bfloat16, what autocast gives on a GPU) is compiled
   to a cubin for ``--arch`` (default 90: H100/H200); its registers, spilled bytes and stack frame
   a thread come from ``ptxas -v`` (the ptxas shipped with Triton), its shared memory from Triton.

    python benchmarks/kernel_compile.py [--arch 90] [--quick] [--json FILE] [--swap MODULE.NAME=JSON]

Exit status 1 if any variant fails to compile. ``--quick``: one variant per kernel, float32
(what ``tests/unit/test_kernel_compile.py`` runs in CI). Spills are listed, not failed: a spill costs
speed, which only a GPU measures.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("kantk.bases.gpu.gemm", "kantk.bases.gpu.fused", "kantk.bases.gpu.sparse")
OPTIONS = ("num_warps", "num_stages", "num_ctas")
TENSOR_TYPES = {
    "torch.float32": "*fp32",
    "torch.float64": "*fp64",
    "torch.float16": "*fp16",
    "torch.bfloat16": "*bf16",
    "torch.int32": "*i32",
    "torch.int64": "*i64",
}


# ---------------------------------------------------------------- 1. recording (interpreter)


def _describe(value, constexpr: bool):
    """One argument as JSON: a tensor by its dtype, a scalar by its type, a constexpr by value."""
    import torch

    if isinstance(value, torch.Tensor):
        return {"type": TENSOR_TYPES[str(value.dtype)]}
    if constexpr or value is None:
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"constexpr": value}
        return {"constexpr_dtype": str(value)}  # a tl.dtype (e.g. the low-precision type)
    if isinstance(value, bool):
        return {"type": "i1"}
    if isinstance(value, int):
        return {"type": "i32" if -(2**31) <= value < 2**31 else "i64"}
    if isinstance(value, float):
        return {"type": "fp32"}
    raise TypeError(f"cannot describe a kernel argument of type {type(value).__name__}")


class _Recorder:
    """Stands in for a kernel: records each launch's argument types, then runs it."""

    def __init__(self, module: str, name: str, kernel, seen: dict):
        self.module, self.name, self.kernel, self.seen = module, name, kernel, seen
        params = inspect.signature(kernel.fn).parameters
        self.names = list(params)
        self.constexpr = {n for n, p in params.items() if "constexpr" in str(p.annotation)}

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            options = {k: kwargs[k] for k in OPTIONS if k in kwargs}
            values = dict(zip(self.names, args))
            values.update({k: v for k, v in kwargs.items() if k not in OPTIONS})
            described = {n: _describe(values[n], n in self.constexpr) for n in self.names}
            record = {"module": self.module, "kernel": self.name, "args": described, "options": options}
            self.seen.setdefault(json.dumps(record, sort_keys=True), record)
            return self.kernel[grid](*args, **kwargs)

        return launch


def _workloads(quick: bool):
    """Layer steps covering the kernels' constexpr branches (small sizes, CPU tensors)."""
    import torch

    import kantk

    def step(layer, x, train_weights=True, input_grad=True, autocast=False):
        for p in layer.parameters():
            p.requires_grad_(train_weights)
        x = x.clone().requires_grad_(input_grad)
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            y = layer(x)
        if y.requires_grad:
            y.float().square().sum().backward()

    def bspline(dtype, path="triton", moved=False, **kw):
        torch.manual_seed(0)
        layer = kantk.KANLayer(40, 70, **kw).to(dtype=dtype)
        if moved:
            layer.update_grid(torch.randn(64, 40, dtype=dtype) ** 3)
        layer.basis.path = path
        return layer, torch.randn(9, 40, dtype=dtype) * 1.5

    def other(basis, dtype, **kw):
        from kantk.bases import gpu

        torch.manual_seed(0)
        layer = kantk.KANLayer(40, 70, basis=basis, **kw).to(dtype=dtype)
        fn = getattr(gpu, basis)
        return (lambda inp: fn(layer.basis, inp, layer.edge_weights())), layer

    forms = ("gemm", "fused")
    dtypes = (torch.float32,) if quick else (torch.float32, torch.float64)
    for form in forms:
        os.environ["KANTK_TRITON_FORM"] = form
        for dtype in dtypes:
            cases = [dict(base_activation="silu")]
            if not quick:
                cases += [
                    dict(base_activation="zero", basis_kwargs={"extrapolate": "extend"}),
                    dict(base_activation="identity", basis_kwargs={"extrapolate": "clamp"}),
                    dict(base_activation="silu", moved=True),
                    dict(base_activation="silu", moved=True, basis_kwargs={"extrapolate": "extend"}),
                ]
            for kw in cases:
                layer, x = bspline(dtype, **kw)
                step(layer, x)
                if not quick:
                    step(layer, x, train_weights=False)  # frozen weights: input gradient only
                    step(layer, x, input_grad=False)  # weights only
            if not quick:
                _unmasked_and_remade(step, *bspline(dtype, base_activation="silu"))
            for basis in ("chebyshev", "rbf"):
                fn, layer = other(basis, dtype)
                x = torch.randn(9, 40, dtype=dtype).requires_grad_()
                fn(x).square().sum().backward()
        if not quick:  # autocast: float16 products (bfloat16 added at compile time)
            for kw in (dict(base_activation="silu"), dict(base_activation="zero", moved=True)):
                layer, x = bspline(torch.float32, **kw)
                step(layer, x, autocast=True)
    os.environ["KANTK_TRITON_FORM"] = "gemm"
    for dtype in dtypes:
        cases = [dict(base_activation="silu")]
        if not quick:
            cases += [
                dict(base_activation="zero", basis_kwargs={"extrapolate": "extend"}),
                dict(base_activation="identity", moved=True, basis_kwargs={"extrapolate": "clamp"}),
            ]
        for kw in cases:
            layer, x = bspline(dtype, path="triton_sparse", **kw)
            step(layer, x)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _apply_swaps(swaps: Sequence[str]) -> None:
    """``MODULE.NAME=JSON`` (module of kantk.bases.gpu): set a tile table before recording, e.g.
    ``gemm.GEMM_TILES={"elements": 2048, "warps": 4}`` (a dict for a named tuple replaces those
    fields; lists become tuples)."""
    for swap in swaps:
        target, _, text = swap.partition("=")
        module_name, _, name = target.partition(".")
        module = importlib.import_module(f"kantk.bases.gpu.{module_name}")
        value = json.loads(text)
        value = {k: _tuples(v) for k, v in value.items()} if isinstance(value, dict) else _tuples(value)
        current = getattr(module, name)
        setattr(module, name, current._replace(**value) if hasattr(current, "_replace") else value)


def _unmasked_and_remade(step, layer, x) -> None:
    """A record without a separate mask (the products given: HAS_MASK off), and a step whose basis
    matrix is made again for the weight gradient (not kept)."""
    from kantk.bases import EdgeWeights, gpu
    from kantk.bases.gpu import gemm

    w = layer.edge_weights()
    plain = EdgeWeights(w.coef, w.scale, w.base_weight, w.base_activation)
    gpu.bspline(layer.basis, x.clone().requires_grad_(), plain).square().sum().backward()
    saved = gemm.GEMM_KEEP_ELEMENTS
    gemm.GEMM_KEEP_ELEMENTS = 0
    try:
        step(layer, x)
    finally:
        gemm.GEMM_KEEP_ELEMENTS = saved


def record(quick: bool, swaps: Sequence[str] = ()) -> list[dict]:
    """Run the workloads in the interpreter and return the distinct launches (call in a process
    with ``TRITON_INTERPRET=1`` set before Triton is imported)."""
    _apply_swaps(swaps)
    seen: dict = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in list(vars(module).items()):
            if name.endswith("_kernel") and hasattr(obj, "fn"):
                setattr(module, name, _Recorder(module_name, name, obj, seen))
    _workloads(quick)
    return list(seen.values())


# ---------------------------------------------------------------- 2. compiling


def _with_bfloat16(records: list[dict]) -> list[dict]:
    """Float16 variants again as bfloat16 (the interpreter has no bfloat16; autocast on a GPU
    gives it)."""
    extra = []
    for r in records:
        text = json.dumps(r)
        if "fp16" in text:
            extra.append(json.loads(text.replace("fp16", "bf16")))
    return records + extra


def _ptxas_usage(ptx: str, arch: int) -> dict:
    """Registers, spilled bytes (stores) and stack frame a thread of a kernel's PTX, from the
    ``ptxas -v`` report of the ptxas Triton itself uses (the cubin's own build prints the same)."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        suffix = "a" if arch >= 90 else ""
        cmd = [get_ptxas(arch).path, "-v", "-lineinfo", f"--gpu-name=sm_{arch}{suffix}", str(src)]
        text = subprocess.run(cmd + ["-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True).stderr
    usage = {}
    for key, pattern in (
        ("regs", r"Used (\d+) registers"),
        ("spill", r"(\d+) bytes spill stores"),
        ("stack", r"(\d+) bytes stack frame"),
    ):
        m = re.search(pattern, text)
        usage[key] = int(m.group(1)) if m else None
    return usage


def _error_text(error: BaseException) -> str:
    """The innermost cause of a compile error (Triton chains one per nested call), with its place
    in the kernel source ("at line:column") and the message."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    inner = chain[-1]
    lines = [ln for ln in str(inner).strip().splitlines() if ln.strip()]
    where = next(
        (ln for ln in str(chain[-2] if len(chain) > 1 else inner).splitlines() if ln.startswith("at ")), ""
    )
    message = lines[-1] if lines else ""
    return f"{type(inner).__name__}: {message[:300]} {where}".strip()


def compile_all(records: list[dict], arch: int) -> list[dict]:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    results = []
    for r in records:
        kernel = getattr(importlib.import_module(r["module"]), r["kernel"])
        signature, constexprs = {}, {}
        for name, d in r["args"].items():
            if "type" in d:
                signature[name] = d["type"]
            else:
                signature[name] = "constexpr"
                constexprs[name] = (
                    tl.dtype(d["constexpr_dtype"]) if "constexpr_dtype" in d else d["constexpr"]
                )
        shown = {k: (str(v) if isinstance(v, tl.dtype) else v) for k, v in constexprs.items()}
        types = sorted({t for t in signature.values() if t.startswith("*f") or t.startswith("*b")})
        entry = {"kernel": r["kernel"], "constexprs": shown, "types": types, "options": r["options"]}
        start = time.perf_counter()
        try:
            compiled = triton.compile(
                ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                target=target,
                options={"num_warps": 4, **r["options"]},
            )
            entry.update(ok=True, shared=compiled.metadata.shared, **_ptxas_usage(compiled.asm["ptx"], arch))
        except Exception as e:  # noqa: BLE001 - the report lists every failure
            entry.update(ok=False, error=_error_text(e))
        entry["seconds"] = round(time.perf_counter() - start, 2)
        results.append(entry)
    return results


def _quick_subset(records: list[dict]) -> list[dict]:
    first: dict = {}
    for r in records:
        first.setdefault(r["kernel"], r)
    return list(first.values())


def run(arch: int = 90, quick: bool = False, swaps: Sequence[str] = ()) -> list[dict]:
    """Record in an interpreter subprocess, then compile here; returns one entry per variant."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, __file__, "--record"] + (["--quick"] if quick else [])
    args += [f"--swap={swap}" for swap in swaps]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"recording the launches failed:\n{proc.stderr[-3000:]}")
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    records = _quick_subset(records) if quick else _with_bfloat16(records)
    return compile_all(records, arch)


def _report(results: list[dict]) -> None:
    keys = (
        "KIND",
        "BASE",
        "EXTEND",
        "SAME",
        "HAS_BW",
        "HAS_MASK",
        "LOW",
        "NEED_COEF",
        "NEED_SCALE",
        "NEED_BW",
    )
    print(f"{'kernel':<28} {'ok':<4} {'regs':>4} {'spill':>5} {'stack':>5} {'smem':>6} {'s':>5}  variant")
    for e in results:
        variant = " ".join(f"{k}={e['constexprs'][k]}" for k in keys if k in e["constexprs"])
        tiles = " ".join(f"{k}={v}" for k, v in e["constexprs"].items() if k.startswith("B") and k != "BASE")
        variant = f"{variant} {tiles} {','.join(e['types'])} {e['options'] or ''}".strip()
        if e["ok"]:
            print(
                f"{e['kernel']:<28} {'yes':<4} {e['regs'] or '?':>4} {e['spill'] or 0:>5} "
                f"{e['stack'] or 0:>5} {e['shared'] or 0:>6} {e['seconds']:>5}  {variant}"
            )
        else:
            print(f"{e['kernel']:<28} {'NO':<4} {'':>4} {'':>5} {'':>5} {'':>6} {e['seconds']:>5}  {variant}")
            print(f"    {e['error']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200)")
    parser.add_argument("--quick", action="store_true", help="one variant per kernel")
    parser.add_argument("--json", help="also write the entries to this file")
    parser.add_argument(
        "--swap",
        action="append",
        default=[],
        metavar="MODULE.NAME=JSON",
        help='a tile table set first, e.g. gemm.GEMM_TILES=\'{"elements": 2048, "warps": 4}\'',
    )
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record:  # the subprocess: interpreter on, print the launches as one JSON line
        sys.path.insert(0, str(ROOT))
        print(json.dumps(record(args.quick, args.swap)))
        return 0
    os.environ.pop("TRITON_INTERPRET", None)
    import triton

    results = run(args.arch, args.quick, args.swap)
    print(f"triton {triton.__version__}, sm_{args.arch}, {len(results)} variants")
    _report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failed = sum(not e["ok"] for e in results)
    print(f"{len(results) - failed} compiled, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
