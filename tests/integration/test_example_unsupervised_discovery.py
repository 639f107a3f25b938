"""Smoke test: ``examples/unsupervised_discovery.py --quick`` runs and prints sane output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "unsupervised_discovery.py"


def test_unsupervised_discovery_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot
    out = result.stdout
    rows = re.findall(
        r"^\| (\d+) \| ([x\d, ]+) \| ([^|]+) \| ([\d.]+) / ([\d.]+) / ([\d.]+) \|", out, re.MULTILINE
    )
    assert len(rows) == 1, out
    _seed, kept, _group, pruned_acc, refit_acc, _symbolic = rows[0]
    assert "x6" not in kept.split(", "), out  # the independent variable is never needed
    assert float(pruned_acc) > 0.8 and float(refit_acc) > 0.8, out  # real and shuffled samples told apart
    assert "relation:" in out and "explicit:" in out, out
    assert "paper (section 4.2" in out, out
