"""Smoke test: ``examples/feynman.py --quick`` runs in seconds and prints a sane table row."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "feynman.py"


def test_feynman_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot
    out = result.stdout
    # | I.16.6 | formula | [2, 5, 1] | kantk pruned | paper min / best | kantk RMSE | paper pruned
    #   | kantk unpruned | paper unpruned | paper human | paper MLP | formula | time |
    row = re.search(
        r"^\| I\.16\.6 \| `\(a\+b\)/\(1\+a b\)` \| \[2, 5, 1\] \| \[2, (\d), 1\] \| \[2, 2, 1\] / \[2, 2, "
        r"1\] "
        r"\| ([\d.e+-]+|nan) \| 1\.19e-03 \| ([\d.e+-]+|nan) \| 1\.53e-03 \| 1\.06e-03 \| 6\.20e-04 \| (.+) "
        r"\| \d+ s \|$",
        out,
        re.MULTILINE,
    )
    assert row, out
    assert 1 <= int(row.group(1)) <= 5, out
    for rmse in (float(row.group(2)), float(row.group(3))):  # pruned and unpruned test RMSE
        assert math.isfinite(rmse) and rmse < 0.5, out  # |f| <= 0.98 on the sampled box
    assert "pruned to [2," in out and "formula:" in out, out
