"""Every Triton kernel compiles for an NVIDIA GPU (sm_90), on a machine without one.

The kernel tests run in Triton's interpreter, which executes a kernel's body with numpy and does not
check what the compiler checks (loop-carried types, constexpr branches, shapes): a kernel could
pass them and still fail to build on the GPU. Triton's wheel carries its compiler down to
``ptxas``, so ``benchmarks/kernel_compile.py --quick`` builds one variant of each kernel to a
cubin here (the full set of variants, with registers and spills: without ``--quick``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from triton_env import interpreter_problem

ROOT = Path(__file__).resolve().parents[2]


def _ptxas() -> Path | None:
    spec = importlib.util.find_spec("triton")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "backends" / "nvidia" / "bin" / "ptxas"
    return path if path.exists() else None


@pytest.mark.skipif(_ptxas() is None, reason="needs Triton with its NVIDIA backend (ptxas)")
def test_every_kernel_compiles_for_sm90(tmp_path):
    if problem := interpreter_problem():  # the launches are recorded in the interpreter
        pytest.skip(problem)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    report = tmp_path / "compiled.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kernel_compile.py"), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    compiled = {e["kernel"] for e in json.loads(report.read_text()) if e["ok"]}
    # every kernel of the three forms was launched by the recorded steps, so compiled here
    expected = set()
    for module in ("gemm", "fused", "sparse"):
        source = (ROOT / "kantk" / "bases" / "gpu" / f"{module}.py").read_text()
        expected |= {
            line.split("(")[0].removeprefix("def ")
            for line in source.splitlines()
            if line.startswith("def _") and line.split("(")[0].endswith("_kernel")
        }
    assert len(expected) >= 9
    assert expected <= compiled, sorted(expected - compiled)
