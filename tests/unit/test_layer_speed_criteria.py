"""benchmarks/layer_speed_cuda.py judges issue 14's criteria from one run's results (the GPU
session quotes that verdict): each criterion met, not met, or not measured when a case is missing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "layer_speed_cuda", ROOT / "benchmarks" / "layer_speed_cuda.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["layer_speed_cuda"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("layer_speed_cuda", None)


def _case(ms: float, mib: float = 100.0) -> dict:
    return {"median_ms": ms, "peak_mib": mib}


def _verdicts(rows: list[dict]) -> dict[tuple[str, str], bool | None]:
    return {(r["criterion"], r["config"]): r["ok"] for r in rows}


def test_each_criterion_is_judged_from_the_run(bench):
    results = {
        "w256 B8192 G5": {
            "GEMM floor": _case(1.0),
            "kantk bspline": _case(1.4, 120.0),  # 1.4x the floor: met (<= 1.5)
            "kantk bspline bf16 autocast": _case(1.5),  # slower than float32: not met
            "kantk rbf (8 centres)": _case(0.9),
            "kantk chebyshev (deg 7)": _case(2.0),
            "efficient-kan": _case(3.0, 700.0),
            "fast-kan (8 RBF)": _case(1.2, 300.0),
            "ChebyKAN (deg 7)": _case(1.3, 110.0),  # less memory than kantk: not met
        },
        "w1024 B65536 G5": {"GEMM floor": _case(10.0), "kantk bspline": _case(12.5)},  # 1.25x: not met
        "w256 B8192 G200": {"GEMM floor": _case(5.0), "kantk bspline": _case(2.7)},  # 2.7 / 1.4 < 2
    }
    v = _verdicts(bench.done_when(results))
    assert v[("bspline time / floor's", "w256 B8192 G5")] is True
    assert v[("bspline time / floor's", "w1024 B65536 G5")] is False
    assert v[("bspline time / fastest peer's", "w256 B8192 G5")] is False  # 1.4 vs fast-kan's 1.2
    assert v[("bspline peak memory / least peer's", "w256 B8192 G5")] is False
    assert v[("kantk rbf (8 centres) time / fast-kan (8 RBF)'s", "w256 B8192 G5")] is True
    assert v[("kantk chebyshev (deg 7) time / ChebyKAN (deg 7)'s", "w256 B8192 G5")] is False
    assert v[("bspline bf16 autocast time / float32's", "w256 B8192 G5")] is False
    assert v[("bspline time G=200 / G=5", "w256 B8192")] is True
    # no peers at the other sizes: not measured, never "met"
    assert v[("bspline time / fastest peer's", "w1024 B65536 G5")] is None
    assert v[("bspline peak memory / least peer's", "w256 B8192 G200")] is None


def test_missing_or_failed_cases_are_not_measured(bench):
    results = {"w256 B8192 G5": {"GEMM floor": _case(1.0), "kantk bspline": {"error": "OutOfMemoryError"}}}
    rows = bench.done_when(results)
    assert rows and all(r["ok"] is None for r in rows)
    nan = {"w256 B8192 G5": {"GEMM floor": _case(1.0), "kantk bspline": _case(1.0, float("nan"))}}
    v = _verdicts(bench.done_when(nan))
    assert v[("bspline time / floor's", "w256 B8192 G5")] is True  # CPU runs have no peak memory
    assert v[("bspline peak memory / least peer's", "w256 B8192 G5")] is None


def test_a_dry_run_writes_the_verdict_beside_the_results(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the PyTorch/native paths only: quick
    out = tmp_path / "speed.json"
    argv = ["--device", "cpu", "--configs", "8x16x5", "--repeats", "2", "--warmup", "1", "--json", str(out)]
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    saved = [flag.allow_tf32 for flag in flags]
    try:
        assert bench.main(argv) == 0
    finally:  # main() sets both TF32 switches: the next tests get them as they were
        for flag, value in zip(flags, saved):
            flag.allow_tf32 = value
    payload = json.loads(out.read_text())
    crit = {(r["criterion"], r["config"]): r for r in payload["done_when"]}
    assert crit[("bspline time / fastest peer's", "w8 B16 G5")]["ok"] is None  # no peers given
    assert crit[("bspline time / floor's", "w256 B8192 G5")]["ok"] is None  # size not run
    assert "issue 14's criteria" in capsys.readouterr().out
