"""docs/node-operations.md: its code runs and says what it shows."""

from __future__ import annotations

import sympy
import torch
from test_docs import code_blocks, run_block  # tests/ is on sys.path (it has no __init__.py)

PAGE = "node-operations.md"


def test_node_operations_page_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = code_blocks(PAGE, "python")
    assert len(blocks) == 2
    spelling: dict = {}
    run_block(blocks[0], spelling, PAGE)
    assert spelling["model"].widths == [2, 1, 1] and spelling["model"].width_spec == [2, [0, 1], 1]
    assert spelling["y"].shape == (8, 1) and spelling["wide"].layers[0].out_features == 6
    workflow: dict = {}
    try:
        run_block(blocks[1], workflow, PAGE)
    finally:
        torch.set_default_dtype(torch.float32)
    model = workflow["model"]
    assert model.width_spec == [2, [0, 1], 1]
    assert [int(layer.live_edges().sum()) for layer in model.layers] == [2, 1]
    x1, x2 = sympy.symbols("x1 x2")
    assert sympy.simplify(workflow["formula"] - x1 * x2) == 0
    assert list(tmp_path.iterdir()) == []  # the page writes nothing
