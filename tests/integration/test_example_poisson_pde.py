"""Smoke test: examples/poisson_pde.py --quick trains the PINN KAN and MLP and prints sane output."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "poisson_pde.py"
ROW = re.compile(
    r"^\| (KAN \[2, 10, 1\] G=\d+|MLP \[2, 100, 100, 100, 1\] tanh) \| (\d+) / (\d+) \| (\d+) \| "
    r"([\d.e+-]+) \| ([\d.e+-]+) \| ([\d.e+-]+) \| [^|]+ \| \d+ s \|$",
    re.MULTILINE,
)


def test_poisson_pde_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]  # the script asserts the loss decreased
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot
    out = result.stdout
    rows = ROW.findall(out)
    assert [r[0].split()[0] for r in rows] == ["KAN", "KAN", "MLP"], out
    (_, c3, _, s3, *_), (_, c5, _, s5, *_), (_, c_mlp, p_mlp, *_) = rows
    assert int(c3) < int(c5) and int(s3) < int(s5), out  # refined grid, more coefficients, steps add up
    assert int(c_mlp) == int(p_mlp) == 20601, out  # [2, 100, 100, 100, 1]: weights and biases
    for row in rows:
        loss, l2, h1 = (float(v) for v in row[4:7])
        assert all(math.isfinite(v) for v in (loss, l2, h1)) and 0 < l2 <= h1, out
    kan_l2 = float(rows[1][5])
    assert kan_l2 < 0.2, out  # the initial KAN's L2^2 is ~0.25 (u* has mean square 1/4 roughly)
