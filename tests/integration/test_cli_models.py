"""kantk prune / symbolic / export / plot on a tiny model: they write only where pointed."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import kantk
from kantk.cli import main


@pytest.fixture()
def model_file(tmp_path):
    torch.set_default_dtype(torch.float64)
    model = kantk.KAN([2, 3, 1], seed=0)
    with torch.no_grad():  # a dead hidden node for prune to remove
        model.layers[0].mask[1] = 0
        model.layers[1].mask[:, 1] = 0
    path = tmp_path / "model.kantk"
    kantk.save(model, path)
    return path


@pytest.mark.parametrize("command", ["prune", "symbolic", "export", "plot", "plugins"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: kantk" in capsys.readouterr().out


def test_prune_export_plot_symbolic_write_only_into_tmp(model_file, tmp_path, monkeypatch, capsys):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["prune", str(model_file), "-o", str(out / "pruned.kantk"), "--option", "node_th=1e-9",
                 "--option", "edge_th=1e-12"]) == 0
    assert kantk.load(out / "pruned.kantk").widths == [2, 2, 1]
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.json")]) == 0
    data = json.loads((out / "g.json").read_text())
    assert len(data["nodes"]) == 5
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.dot")]) == 0
    assert (out / "g.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.svg"), "--edge-plots"]) == 0
        assert (out / "g.svg").exists() and any((out / "g_edges").glob("*.png"))
    assert main(["plot", str(out / "pruned.kantk"), "-o", str(out / "acts.png")]) == 0
    assert (out / "acts.png").stat().st_size > 0
    rc = main(["symbolic", str(out / "pruned.kantk"), "-o", str(out / "sym.kantk"), "--r2-threshold", "0",
               "--var-names", "a", "b"])
    text = capsys.readouterr().out
    assert rc == 0 and "y1 = " in text
    assert kantk.load(out / "sym.kantk").layers[0].has_symbolic
    assert list(work.iterdir()) == []  # nothing landed in the working directory


def test_missing_dot_is_explained(model_file, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install graphviz"):
        main(["export", str(model_file), "-o", str(tmp_path / "g.svg")])


def test_bad_inputs(model_file, tmp_path):
    with pytest.raises(SystemExit, match="no model file"):
        main(["plot", str(tmp_path / "absent.kantk"), "-o", str(tmp_path / "p.png")])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["plot", str(model_file), "-o", str(tmp_path / "no" / "such" / "p.png")])
    with pytest.raises(SystemExit, match="unknown pruner"):
        main(["prune", str(model_file), "-o", str(tmp_path / "p.kantk"), "--pruner", "nope"])
    assert not (tmp_path / "p.kantk").exists()
