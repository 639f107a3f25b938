"""docs/training.md stays true: its Python blocks run, top to bottom in one session."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

PAGE = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _python_blocks(text: str) -> list[tuple[int, str]]:
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.MULTILINE | re.DOTALL):
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def test_training_page_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the Lightning example writes under the relative runs/
    blocks = _python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "training_docs"}
    for line, code in blocks:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"docs/training.md, block at line {line}", "exec"), namespace)  # noqa: S102
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert torch.get_default_dtype() == torch.float32


def test_training_page_names_every_config():
    text = PAGE.read_text(encoding="utf-8")
    for config in sorted((PAGE.parents[1] / "configs").glob("*.yaml")):
        assert f"configs/{config.name}" in text, config.name
