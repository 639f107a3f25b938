"""Smoke tests: each paper-reproduction example's ``--quick`` mode runs and prints sane output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_quick(script: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot
    return result.stdout


def test_continual_learning_quick(tmp_path: Path) -> None:
    out = run_quick("continual_learning.py", tmp_path)
    rows = re.findall(r"^\| (\d) \| [+-][\d.]+ \| \[[^]]+\] \| ([\d.e+-]+) \| ([\d.e+-]+) \|$", out, re.M)
    assert len(rows) == 5, out
    match = re.search(r"earlier peaks \(1-4\) RMSE: KAN ([\d.e+-]+)\s+MLP ([\d.e+-]+)", out)
    assert match, out
    kan, mlp = float(match.group(1)), float(match.group(2))
    assert kan < 0.1 and kan < mlp / 5, out  # the KAN keeps the earlier peaks, the MLP forgets


def test_interpretable_tasks_quick(tmp_path: Path) -> None:
    out = run_quick("interpretable_tasks.py", tmp_path)
    assert "task mult" in out and "formula:" in out and "tidied:" in out, out
    match = re.search(r"symbolic test RMSE ([\d.e+-]+)", out)
    assert match and float(match.group(1)) < 1e-2, out
    assert re.search(r"^\| mult \| \[2, 2, 1\]", out, re.MULTILINE), out  # the markdown table


def test_toy_scaling_quick(tmp_path: Path) -> None:
    out = run_quick("toy_scaling.py", tmp_path)
    num = r"([\d.e+-]+)"
    rows = re.findall(
        rf"^\| xy \| (KAN|MLP) \[[^]]+\](?: G=(\d+) seed \d+)? \| (\d+) \| {num} \| {num} \| {num} \| \d+ s "
        r"\|$",
        out,
        re.M,
    )
    kan = [
        (int(g), int(n), float(test), float(inside)) for kind, g, n, _, test, inside in rows if kind == "KAN"
    ]
    assert len(kan) == 2 and any(kind == "MLP" for kind, *_ in rows), out
    assert kan[0][1] < kan[1][1], out  # finer grid, more coefficients
    assert kan[-1][2] < 1e-2 and kan[-1][3] < 1e-2, out  # finest grid fits x*y (all test points and in range)
