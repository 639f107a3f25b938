"""The kantk commands on a model with product nodes (KAN 2.0): prune, symbolic, export, plot, predict."""

from __future__ import annotations

import json

import torch

import kantk
from kantk.cli import main
from kantk.model import default_dtype


def test_commands_handle_product_nodes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with default_dtype(torch.float64):
        model = kantk.KAN([2, [1, 1], 1], mult_arity=3, seed=0)
    kantk.save(model, tmp_path / "m.kantk")
    assert main(["prune", "m.kantk", "-o", "p.kantk", "--option", "threshold=1e-9"]) == 0
    assert "[2, [1, 1], 1]" in capsys.readouterr().out
    pruned = kantk.load(tmp_path / "p.kantk")
    assert pruned.width_spec == [2, [1, 1], 1] and pruned.mult_arity == 3
    assert main(["export", "p.kantk", "-o", "g.json"]) == 0
    graph = json.loads((tmp_path / "g.json").read_text())
    assert {"mult", "subnode"} <= {n["op"] for n in graph["nodes"]}
    assert main(["plot", "p.kantk", "-o", "p.png", "--samples", "50"]) == 0
    assert main(["symbolic", "p.kantk", "-o", "s.kantk", "--r2-threshold", "0"]) == 0
    assert "y1 = " in capsys.readouterr().out
    symbolic = kantk.load(tmp_path / "s.kantk")
    assert symbolic.width_spec == [2, [1, 1], 1] and symbolic.layers[0].has_symbolic
