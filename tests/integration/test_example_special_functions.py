"""Smoke test: ``examples/special_functions.py --quick`` runs and prints a sane table."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NUM = r"([\d.]+e[+-]\d+|nan|inf)"


def test_special_functions_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "special_functions.py"), "--quick"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written without --plot

    # per-grid progress: name, grid, train RMSE, test RMSE
    grids: dict[str, list[tuple[int, float, float]]] = {}
    for name, grid, train, test in re.findall(
        rf"^(\w+): KAN \[[^]]+\] G=(\d+): train RMSE {NUM}, test RMSE {NUM}", out, re.MULTILINE
    ):
        grids.setdefault(name, []).append((int(grid), float(train), float(test)))
    assert set(grids) == {"lpmv0", "sph_harm01"}, out
    for _name, rows in grids.items():
        assert [g for g, _, _ in rows] == [3, 5, 10], out
        assert all(math.isfinite(v) for _, train, test in rows for v in (train, test)), out
        assert rows[-1][1] < rows[0][1], out  # training error falls with grid extension
        assert min(test for _, _, test in rows) < 0.05, out

    table = re.findall(
        rf"^\| (\S+) \| \[[^]]+\]; \[[^]]+\] \| \[[\d,]+\] \(\d+\) \| (\d+) \((\d+)\) \| {NUM} \| "
        rf"{NUM} \| \[[\d,]+\] {NUM} \| {NUM} \((\d+)\) \| {NUM} \|$",
        out,
        re.MULTILINE,
    )
    assert [row[0] for row in table] == ["lpmv(0,x,y)", "sph_harm(0,1,x,y)"], out
    for api, _grid, coefs, kan, _paper_kan, _paper_best, mlp, mlp_params, _paper_mlp in table:
        assert math.isfinite(float(kan)) and math.isfinite(float(mlp)), out
        assert float(kan) == min(
            test for _, _, test in grids["lpmv0" if api.startswith("lpmv") else "sph_harm01"]
        )
        assert int(coefs) > 0 and int(mlp_params) > 0, out
    assert float(table[0][4]) == 5.25e-5 and float(table[1][4]) == 2.21e-7, out  # the paper's numbers
