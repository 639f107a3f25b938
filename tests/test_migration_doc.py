"""docs/migrating-from-pykan.md: its code runs (few training steps)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import code_blocks, run_block  # noqa: E402


def test_migration_page_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by mistake lands in tmp_path
    old = torch.get_default_dtype()
    try:
        blocks = code_blocks("migrating-from-pykan.md", "python")
        assert len(blocks) == 2
        for block in blocks:
            run_block(block, {}, "migrating-from-pykan.md")
    finally:
        torch.set_default_dtype(old)
    assert list(tmp_path.iterdir()) == []
