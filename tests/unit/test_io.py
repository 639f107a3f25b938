from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import kantk
from kantk.io import CONFIG_KEY, FORMAT_KEY


def test_round_trip_keeps_non_uniform_grid_and_mask(tmp_path):
    model = kantk.KAN([2, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].basis.grid.mul_(torch.linspace(1.0, 1.3, model.layers[0].basis.grid.shape[1]))
        model.layers[1].mask[0, 2] = 0
    path = tmp_path / "model.kantk"
    kantk.save(model, path)
    loaded = kantk.load(path)
    assert torch.equal(loaded.layers[0].basis.grid, model.layers[0].basis.grid)
    assert torch.equal(loaded.layers[1].mask, model.layers[1].mask)
    x = torch.rand(9, 2)
    assert torch.equal(loaded(x), model(x))


def test_file_holds_no_pickle(tmp_path):
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 1]), path)
    data = path.read_bytes()
    assert b"\x80\x04" not in data[:16] and b"PK" != data[:2]  # not a pickle, not a torch zip
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    assert json.loads(header["__metadata__"][CONFIG_KEY])["widths"] == [2, 1]


def test_missing_basis_plugin_is_named(tmp_path):
    model = kantk.KAN([2, 1])
    path = tmp_path / "m.kantk"
    kantk.save(model, path)
    raw = path.read_bytes()
    # rewrite the config so it names a basis nobody provides
    from safetensors.torch import load_file, safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta[CONFIG_KEY])
    cfg["layers"][0]["basis"] = "wavelet9"
    save_file(load_file(str(path)), str(path), metadata={FORMAT_KEY: "1", CONFIG_KEY: json.dumps(cfg)})
    assert path.read_bytes() != raw
    with pytest.raises(kantk.UnknownComponentError, match="wavelet9"):
        kantk.load(path)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        kantk.load(tmp_path / "absent.kantk")
    junk = tmp_path / "junk.kantk"
    junk.write_bytes(b"\x80\x04\x95 definitely a pickle")
    with pytest.raises(kantk.KantkFileError, match="not a kantk model"):
        kantk.load(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(2)}, str(plain))
    with pytest.raises(kantk.KantkFileError, match="no kantk metadata"):
        kantk.load(plain)
    with pytest.raises(TypeError, match="kantk.KAN"):
        kantk.save(torch.nn.Linear(2, 2), tmp_path / "x.kantk")
    assert not (tmp_path / "x.kantk").exists()
