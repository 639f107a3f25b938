"""kantk prune / symbolic / export / plot on a tiny model: they write only where pointed."""

from __future__ import annotations

import json
import os
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
    assert (
        main(
            [
                "prune",
                str(model_file),
                "-o",
                str(out / "pruned.kantk"),
                "--option",
                "node_th=1e-9",
                "--option",
                "edge_th=1e-12",
            ]
        )
        == 0
    )
    assert kantk.load(out / "pruned.kantk").widths == [2, 2, 1]
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.json")]) == 0
    data = json.loads((out / "g.json").read_text())
    assert len(data["nodes"]) == 5
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.dot")]) == 0
    assert (out / "g.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "g.svg"), "--edge-plots"]) == 0
        assert "data:image/png;base64," in (out / "g.svg").read_text() and not (out / "g_edges").exists()
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "e.dot"), "--edge-plots"]) == 0
    assert any((out / "e_edges").glob("*.png"))  # DOT source refers to picture files: kept beside it
    # a rerun replaces its own pictures (a folder holding anything else is refused), and those of
    # edges the new model does not have go (a smaller model left the larger one's 7 of 8 behind)
    assert main(["export", str(out / "pruned.kantk"), "-o", str(out / "e.dot"), "--edge-plots"]) == 0
    kantk.save(kantk.KAN([1, 1], seed=0), out / "one.kantk")
    assert main(["export", str(out / "one.kantk"), "-o", str(out / "e.dot"), "--edge-plots"]) == 0
    assert sorted(p.name for p in (out / "e_edges").iterdir()) == ["edge_0_0_0.png"]
    # e.dot, e.gv and e share e_edges/: another output's export there would replace and remove
    # e.dot's pictures, so it is refused and they stay
    before = (out / "e_edges" / "edge_0_0_0.png").read_bytes()
    for other in ("e.gv", "e"):
        with pytest.raises(SystemExit, match="a picture that .* does not name"):
            main(
                [
                    "export",
                    str(out / "pruned.kantk"),
                    "-o",
                    str(out / other),
                    "--format",
                    "dot",
                    "--edge-plots",
                ]
            )
        assert not (out / other).exists()
    assert (out / "e_edges" / "edge_0_0_0.png").read_bytes() == before
    assert main(["export", str(out / "one.kantk"), "-o", str(out / "e.dot"), "--edge-plots"]) == 0
    assert main(["plot", str(out / "pruned.kantk"), "-o", str(out / "acts.png")]) == 0
    assert (out / "acts.png").stat().st_size > 0
    rc = main(
        [
            "symbolic",
            str(out / "pruned.kantk"),
            "-o",
            str(out / "sym.kantk"),
            "--r2-threshold",
            "0",
            "--var-names",
            "a",
            "b",
        ]
    )
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


# --- exports never delete or overwrite an input (issue 16) -----------------------------------------


def _exit_line(argv, capsys):
    """(status, last stderr line) of a command expected to fail with ``kantk: ...``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    code = info.value.code
    if isinstance(code, str):
        return 1, code
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def test_symbolic_says_when_the_formula_is_not_real(tmp_path, monkeypatch, capsys):
    # a model file whose symbolic edge is log(0*x - 1): it printed "y1 = I*pi" and exited 0
    from kantk.symbolic.api import fix_symbolic

    monkeypatch.chdir(tmp_path)
    model = kantk.KAN([1, 1], seed=0)
    fix_symbolic(model, 0, 0, 0, "log", fit_params=False)
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0] = torch.tensor([0.0, -1.0, 1.0, 0.0])
    kantk.save(model, "log.kantk")
    assert main(["symbolic", "log.kantk", "-o", "out.kantk", "--samples", "20"]) == 1
    out, err = capsys.readouterr()
    assert "y1 = I*pi" in out and "wrote out.kantk" in out
    assert err.strip().splitlines() == [
        "kantk: symbolic: y1: the formula is not a finite real expression (it holds I, oo, zoo or nan): "
        "edge functions of the model leave their real domain or divide by zero; its outputs are NaN or "
        "infinite there"
    ]


def test_symbolic_says_in_its_words_when_a_formula_cannot_be_checked(tmp_path, monkeypatch, capsys):
    # log(x1 + 2) scored on [-5, 0]: the library's warning (advice to "pass x=") was dropped
    monkeypatch.chdir(tmp_path)
    kantk.save(kantk.formula_to_kan("log(x1 + 2)", dtype=torch.float64), "logm.kantk")
    assert main(["symbolic", "logm.kantk", "--range", "-5", "0", "-o", "out.kantk"]) == 0
    err = capsys.readouterr().err
    assert "kantk: warning: y1: the formula is not real on most of the samples" in err
    assert "pass x=" not in err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed (CI installs it)")
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_export_next_to_the_model_keeps_the_model(model_file, tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    before = model_file.read_bytes()
    assert main(["export", "model.kantk", "-o", f"model.kantk.{fmt}"]) == 0
    assert model_file.read_bytes() == before
    assert (tmp_path / f"model.kantk.{fmt}").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.kantk", f"model.kantk.{fmt}"]
    assert main(["export", "model.kantk", "-o", "graph", "--format", fmt, "--edge-plots"]) == 0
    assert (tmp_path / "graph").stat().st_size > 0 and not (tmp_path / f"graph.{fmt}").exists()  # exactly -o
    assert not (tmp_path / "graph_edges").exists()  # the pictures are inside the diagram, no folder
    if fmt == "svg":
        assert "data:image/png;base64," in (tmp_path / "graph").read_text()
    assert not list(tmp_path.rglob(".kantk-tmp-*"))
    assert model_file.read_bytes() == before


@pytest.mark.parametrize("fmt", ["json", "dot", "svg", "png", "pdf"])
def test_export_onto_the_model_is_refused(model_file, tmp_path, monkeypatch, capsys, fmt):
    monkeypatch.chdir(tmp_path)
    before = model_file.read_bytes()
    (tmp_path / "link.kantk").symlink_to(model_file)
    for target in ("model.kantk", str(model_file), "./model.kantk", "link.kantk"):
        status, line = _exit_line(["export", "model.kantk", "-o", target, "--format", fmt], capsys)
        assert status == 1 and line.startswith("kantk: -o ") and "is the input file" in line
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.kantk", "model.kantk"]


def test_export_overwrites_an_old_output_atomically(model_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.json").write_text("old")
    assert main(["export", "model.kantk", "-o", "g.json"]) == 0
    assert json.loads((tmp_path / "g.json").read_text())["graph"]["widths"] == [2, 3, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json", "model.kantk"]


def test_prune_symbolic_plot_write_atomically_and_never_onto_the_input(
    model_file, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    before = model_file.read_bytes()
    for command in ("prune", "symbolic", "plot"):
        status, line = _exit_line([command, "model.kantk", "-o", "model.kantk"], capsys)
        assert status == 1 and "is the input file" in line
    assert model_file.read_bytes() == before
    assert main(["prune", "model.kantk", "-o", "p.kantk", "--samples", "50"]) == 0
    assert main(["plot", "p.kantk", "-o", "p.svg", "--samples", "50"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.kantk", "p.kantk", "p.svg"]


def _save_after_one_step(module, data, path):
    """A Lightning checkpoint of ``module`` after one training step on ``data``."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(path.parent),
    )
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(path)


def test_checkpoints_load_without_pickled_code(tmp_path, monkeypatch):
    import pickle

    from kantk.lightning import KANModule, TensorDataModule

    monkeypatch.chdir(tmp_path)
    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0)
    x = torch.rand(32, 2, dtype=torch.float32)
    data = TensorDataModule(
        {"train_input": x, "train_label": x[:, :1], "test_input": x, "test_label": x[:, :1]}
    )
    _save_after_one_step(module, data, tmp_path / "m.ckpt")
    assert main(["plot", "m.ckpt", "-o", "m.png", "--samples", "20"]) == 0

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": {}, "x": Boom()}))
    with pytest.raises(SystemExit, match="cannot load checkpoint"):
        main(["plot", "evil.ckpt", "-o", "e.png"])
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "e.png").exists()


def test_an_edge_plots_rerun_after_the_folder_moved(tmp_path):
    """The DOT names its pictures by absolute path: after the folder moved, the rerun took them for
    another export's and refused."""
    first = tmp_path / "first"
    first.mkdir()
    kantk.save(kantk.KAN([1, 1], seed=0), first / "m.kantk")
    assert main(["export", str(first / "m.kantk"), "-o", str(first / "g.dot"), "--edge-plots"]) == 0
    moved = tmp_path / "moved"
    first.rename(moved)
    assert main(["export", str(moved / "m.kantk"), "-o", str(moved / "g.dot"), "--edge-plots"]) == 0
    assert sorted(p.name for p in (moved / "g_edges").iterdir()) == ["edge_0_0_0.png"]


def test_a_checkpoint_with_a_wide_symbolic_layer_loads(tmp_path):
    """The bound on a checkpoint's data counted the symbolic layer's two names per edge: a
    [784, 64, 10] with one symbolic edge (100,487 values) was refused at 100,000."""

    from kantk.cli_models import load_model
    from kantk.lightning import KANModule, TensorDataModule

    module = KANModule([784, 64, 10], optimizer="adam", init_seed=0)
    kantk.fix_symbolic(module.model, 0, 0, 0, "x", fit_params=False)
    x = torch.rand(8, 784)
    data = TensorDataModule({"train_input": x, "train_label": torch.rand(8, 10)})
    _save_after_one_step(module, data, tmp_path / "wide.ckpt")
    model = load_model(str(tmp_path / "wide.ckpt"))
    assert model.layers[0].symbolic_names[0][0] == "x"


# --- a checkpoint's values get the checks of a .kantk file ----------------------------------------


def _trained_checkpoint(path, dtype, symbolic=False, input_columns=None):
    """A KANModule checkpoint of a [2, 3, 1] B-spline KAN after one Adam step, in ``dtype``."""
    from kantk.lightning import KANModule, TensorDataModule

    module = KANModule([2, 3, 1], optimizer="adam", init_seed=0, dtype=dtype)
    if symbolic:
        kantk.fix_symbolic(module.model, 0, 0, 0, "x", fit_params=False)
    module.model.input_columns = input_columns
    x = torch.rand(16, 2, dtype=getattr(torch, dtype), generator=torch.Generator().manual_seed(0))
    data = TensorDataModule({"train_input": x, "train_label": x[:, :1]})
    _save_after_one_step(module, data, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Good checkpoints (float32 plain; float64 with a symbolic edge and input columns), made once."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "float32": _trained_checkpoint(folder / "f32.ckpt", "float32"),
        "float64": _trained_checkpoint(folder / "f64.ckpt", "float64", symbolic=True, input_columns=[1, 3]),
    }


def _altered(source, target, change):
    """``source``'s checkpoint with ``change(checkpoint)`` applied, written to ``target``."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


def _fill(key, value, index=None):
    def change(checkpoint):
        tensor = checkpoint["state_dict"][key]
        if index is None:
            tensor.fill_(value)
        else:
            tensor[index] = value

    return change


def _decreasing(checkpoint):
    grid = checkpoint["state_dict"]["model.layers.0.basis.grid"]
    grid.copy_(grid.flip(-1))


def _float64_scale(checkpoint):
    # a float32 model's tensor stored as float64: finite there, infinite once loaded as float32
    state = checkpoint["state_dict"]
    state["model.layers.1.scale_sp"] = state["model.layers.1.scale_sp"].double().fill_(1e300)


def _integer_coef(checkpoint):
    state = checkpoint["state_dict"]
    state["model.layers.0.coef"] = state["model.layers.0.coef"].round().to(torch.int64)


BAD_CHECKPOINTS = [
    pytest.param(
        "float32",
        _fill("model.layers.0.basis.grid", float("nan"), 0),
        "layers.0.basis.grid",
        "NaN or infinite",
        id="nan-knots",
    ),
    pytest.param("float32", _decreasing, "layers.0.basis.grid", "knots that decrease", id="decreasing-knots"),
    pytest.param(
        "float32",
        _fill("model.layers.0.basis.grid", 0.5, 0),
        "layers.0.basis.grid",
        "zero span",
        id="zero-span",
    ),
    pytest.param(
        "float32", _fill("model.layers.0.mask", 7.0), "layers.0.mask", "other than 0 and 1", id="mask-7"
    ),
    pytest.param(
        "float32",
        _fill("model.layers.1.scale_base", float("inf")),
        "layers.1.scale_base",
        "NaN or infinite",
        id="inf-scale",
    ),
    pytest.param(
        "float32",
        _fill("model.layers.0.coef", float("nan"), (0, 0, 0)),
        "layers.0.coef",
        "NaN or infinite",
        id="nan-coef",
    ),
    pytest.param("float32", _float64_scale, "layers.1.scale_sp", "NaN or infinite", id="inf-once-float32"),
    pytest.param("float32", _integer_coef, "layers.0.coef", "floating-point", id="integer-coef"),
    pytest.param(
        "float64",
        _fill("model.layers.0.symbolic_mask", 7.0, (0, 0)),
        "layers.0.symbolic_mask",
        "other than 0 and 1",
        id="symbolic-mask-7",
    ),
    pytest.param(
        "float64",
        _fill("model.layers.0.symbolic_affine", float("nan"), (0, 0)),
        "layers.0.symbolic_affine",
        "NaN or infinite",
        id="nan-symbolic-affine",
    ),
]


@pytest.mark.parametrize(("base", "change", "key", "fragment"), BAD_CHECKPOINTS)
def test_a_checkpoint_with_impossible_values_is_refused_before_any_work(
    checkpoints, tmp_path, monkeypatch, capsys, base, change, key, fragment
):
    """predict wrote a CSV of NaN, prune and symbolic wrote model files kantk.load refused, export
    and plot drew NaN models: a checkpoint's tensors skipped the value checks of a .kantk file."""
    monkeypatch.chdir(tmp_path)
    bad = _altered(checkpoints[base], tmp_path / "bad.ckpt", change)
    before = bad.read_bytes()
    (tmp_path / "d.csv").write_text("x1,x2,x3,x4\n0.1,0.2,0.3,0.4\n0.5,-0.3,0.0,0.9\n")
    for argv in (
        ["predict", "bad.ckpt", "--data", "d.csv", "-o", "out.csv"],
        ["prune", "bad.ckpt", "-o", "out.kantk", "--samples", "20"],
    ):
        status, line = _exit_line(argv, capsys)
        assert status == 1
        assert line.startswith("kantk: cannot load checkpoint 'bad.ckpt': tensor ")
        assert f"'model.{key}'" in line and fragment in line and "\n" not in line
    assert bad.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ckpt", "d.csv"]


def test_good_checkpoints_still_load_and_optimizer_state_is_not_the_models(checkpoints, tmp_path):
    from kantk.cli_models import load_model

    model = load_model(str(checkpoints["float32"]))
    assert model.dtype == torch.float32 and model.input_columns is None
    model = load_model(str(checkpoints["float64"]))
    assert model.dtype == torch.float64 and model.input_columns == [1, 3]
    assert model.layers[0].symbolic_names[0][0] == "x"
    # Adam's moments are not model values: NaN there (a diverged run) does not stop the commands
    stale = _altered(
        checkpoints["float32"],
        tmp_path / "stale.ckpt",
        lambda c: c["optimizer_states"][0]["state"][0]["exp_avg"].fill_(float("nan")),
    )
    (tmp_path / "d.csv").write_text("0.1,0.2\n0.5,-0.3\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(stale), "--data", str(tmp_path / "d.csv"), "-o", str(out)]) == 0
    assert "nan" not in out.read_text().lower()
    assert (
        main(["prune", str(checkpoints["float64"]), "-o", str(tmp_path / "p.kantk"), "--samples", "20"]) == 0
    )
    assert kantk.load(tmp_path / "p.kantk").layers[0].has_symbolic


def test_a_file_that_is_not_a_kanmodule_checkpoint_is_named_as_such(tmp_path, capsys):
    """A list saved with torch.save gave "AttributeError: 'list' object has no attribute 'get'", a
    CSV renamed .ckpt "IndexError: pop from empty list"."""
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    torch.save({"a": 1}, tmp_path / "dict.ckpt")
    (tmp_path / "csv.ckpt").write_text("a,b\n1,2\n")
    (tmp_path / "d.csv").write_text("0.1,0.2\n")
    for name, fragment in [
        ("list.ckpt", "it holds a list, not a KANModule Lightning checkpoint"),
        ("dict.ckpt", "it holds a dict without a state_dict"),
        ("csv.ckpt", "not a readable torch checkpoint file (IndexError"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(
                [
                    "predict",
                    str(tmp_path / name),
                    "--data",
                    str(tmp_path / "d.csv"),
                    "-o",
                    str(tmp_path / "p.csv"),
                ]
            )
        assert fragment in str(info.value) and "\n" not in str(info.value), info.value
    assert not (tmp_path / "p.csv").exists()


def test_a_checkpoint_with_compressed_entries_is_refused_before_it_expands(checkpoints, tmp_path):
    """torch.save stores its zip entries uncompressed; a 2.9 MB file whose storage entry was
    deflated zeros declared 750 million numbers and took 3.4 GB before any size check. The same
    checkpoint re-zipped with compression is refused from the zip's directory alone."""
    import zipfile

    with (
        zipfile.ZipFile(checkpoints["float32"]) as source,
        zipfile.ZipFile(tmp_path / "z.ckpt", "w") as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
    assert torch.load(tmp_path / "z.ckpt", weights_only=True)["state_dict"]  # torch itself reads it
    (tmp_path / "d.csv").write_text("0.1,0.2\n")
    with pytest.raises(SystemExit) as info:
        main(
            [
                "predict",
                str(tmp_path / "z.ckpt"),
                "--data",
                str(tmp_path / "d.csv"),
                "-o",
                str(tmp_path / "p"),
            ]
        )
    assert "is compressed" in str(info.value) and "torch.save writes uncompressed entries" in str(info.value)
    assert not (tmp_path / "p").exists()
    # the uncompressed original is read as before
    assert (
        main(
            [
                "predict",
                str(checkpoints["float32"]),
                "--data",
                str(tmp_path / "d.csv"),
                "-o",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )


def test_samples_without_data_cover_the_models_grid_range_by_default():
    """Without --data the commands drew inputs from [-1, 1] whatever the model: a model whose grids
    followed data in [200, 1000] got a formula fitted on [-1, 1], 5e7 off on its data."""
    import argparse

    from kantk.cli_models import samples

    model = kantk.KAN([2, 1], seed=0).double()
    x = torch.stack([torch.linspace(200, 1000, 64), torch.linspace(-3, 5, 64)], dim=1).double()
    model.update_grid(x)
    args = argparse.Namespace(data=None, range=None, samples=500, seed=0)
    drawn = samples(args, model)
    assert drawn.dtype == torch.float64
    lo, hi = drawn.min(0).values, drawn.max(0).values
    assert 200 <= lo[0] < 220 and 980 < hi[0] <= 1000 and -3 <= lo[1] < -2.8 and 4.8 < hi[1] <= 5
    args.range = (-1.0, 1.0)  # asked for: as given
    assert samples(args, model).abs().max() <= 1
    fresh = samples(argparse.Namespace(data=None, range=None, samples=500, seed=0), kantk.KAN([2, 1], seed=0))
    assert -1 <= float(fresh.min()) and float(fresh.max()) <= 1  # an unmoved grid: [-1, 1] as before
