"""Bad input to the ``kantk`` command line ends in one ``kantk: ...`` line and exit status 1 or 2.

Issue 16 ("untrusted input"): every command checks its inputs before the work starts, never
prints a Python traceback, and never writes over one of its input files. The property-based tests
(Hypothesis) feed random values to the numeric flags and random argument lists to every command.
Everything runs in-process through :func:`kantk.cli.main` in a temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from matplotlib.figure import Figure

import kantk
from kantk.cli import main
from kantk.pipeline import Discovery

PLAIN_COMMANDS = ("prune", "symbolic", "export", "plot")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``kantk argv``, as the console would show them."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):  # what Python does with SystemExit("message")
            print(code, file=sys.stderr)
            code = 1
    captured = capsys.readouterr()
    code = 0 if code is None else code
    if currently_in_test_context():
        event(f"exit status {code}")  # shown by pytest --hypothesis-show-statistics
    return code, captured.out, captured.err


def assert_error(result: tuple[int, str, str], *, code: int | None = None, match: str = "") -> str:
    """The one ``kantk: ...`` line of a failed command (no traceback, no internal error)."""
    status, _, err = result
    assert status in (1, 2), result
    if code is not None:
        assert status == code, result
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("kantk: "), err
    assert sum(line.startswith("kantk: ") for line in lines) == 1, err
    assert match in lines[-1], (match, lines[-1])
    return lines[-1]


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A temporary working folder holding a small saved model ``model.kantk``."""
    monkeypatch.chdir(tmp_path)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    kantk.save(kantk.KAN([2, 3, 1], seed=0), tmp_path / "model.kantk")
    torch.set_default_dtype(old)
    return tmp_path


@pytest.fixture()
def no_work(monkeypatch):
    """Makes the heavy steps fail the test if reached: inputs must be refused before them."""

    def started(*args, **kwargs):
        raise AssertionError("the work started before the bad input was refused")

    for name in ("fit", "prune", "auto_symbolic", "plot_activations"):
        monkeypatch.setattr(kantk, name, started)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the items of issue 16 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        "foo",
        "node_th=1e",
        "node_th=[",
        "node_th=NaN",
        "node_th=-Infinity",
        "node_th=1e999",
        "=1",
        "node th=1",
        "pruner=x",
        "node_th=[[[[[[",
    ],
)
def test_malformed_option(work, capsys, no_work, option):
    assert_error(
        run_cli(["prune", "model.kantk", "-o", "p.kantk", "--option", option], capsys),
        code=1,
        match="--option",
    )
    assert not (work / "p.kantk").exists()


def test_an_option_given_twice_is_refused(work, capsys, no_work):
    # the last one silently won
    argv = ["prune", "model.kantk", "-o", "p.kantk", "--option", "node_th=0.1", "--option", "node_th=0.2"]
    assert_error(run_cli(argv, capsys), code=1, match="--option node_th is given twice")
    assert not (work / "p.kantk").exists()


@pytest.mark.parametrize("value", ["-5", "0", "1", "1e3", "x", "1000001", "9" * 30])
def test_samples_out_of_range(work, capsys, no_work, value):
    assert_error(
        run_cli(["plot", "model.kantk", "-o", "p.png", "--samples", value], capsys), code=2, match="--samples"
    )


@pytest.mark.parametrize("value", ["1e23", str(10**23), "-1", "nan", "0x10"])
def test_seed_out_of_range(work, capsys, no_work, value):
    assert_error(
        run_cli(["prune", "model.kantk", "-o", "p.kantk", "--seed", value], capsys), code=2, match="--seed"
    )
    assert_error(run_cli(["discover", "--seed", value], capsys), code=2, match="--seed")


@pytest.mark.parametrize("command", PLAIN_COMMANDS)
def test_output_an_existing_folder(work, capsys, no_work, command):
    (work / "taken").mkdir()
    assert_error(
        run_cli(
            [command, "model.kantk", "-o", "taken", "--format", "json"]
            if command == "export"
            else [command, "model.kantk", "-o", "taken"],
            capsys,
        ),
        code=1,
        match="is a folder",
    )
    assert list((work / "taken").iterdir()) == []


@pytest.mark.parametrize("command", PLAIN_COMMANDS)
def test_output_ending_in_a_separator_is_refused_before_the_work(work, capsys, no_work, command):
    """-o out/new/ passed the checks: the whole job ran, then the rename into "new/" failed with an
    internal temporary path in the message."""
    argv = [command, "model.kantk", "-o", f"new{os.sep}"] + (
        ["--format", "json"] if command == "export" else []
    )
    assert_error(run_cli(argv, capsys), code=1, match="names a folder")
    assert not (work / "new").exists()


@pytest.mark.parametrize("command", PLAIN_COMMANDS)
def test_output_the_input_is_refused(work, capsys, no_work, command):
    before = (work / "model.kantk").read_bytes()
    argv = [command, "model.kantk", "-o", "model.kantk"] + (
        ["--format", "json"] if command == "export" else []
    )
    assert_error(run_cli(argv, capsys), code=1, match="is the input file")
    os.symlink("model.kantk", work / "link.kantk")
    argv[3] = "link.kantk"
    assert_error(run_cli(argv, capsys), code=1, match="is the input file")
    os.link(work / "model.kantk", work / "hard.kantk")
    argv[3] = "hard.kantk"
    assert_error(run_cli(argv, capsys), code=1, match="is the input file")
    assert (work / "model.kantk").read_bytes() == before


def test_output_the_data_file_is_refused(work, capsys, no_work):
    (work / "d.csv").write_text("0.1,0.2\n0.3,0.4\n0.5,0.6\n")
    assert_error(
        run_cli(["prune", "model.kantk", "-o", "d.csv", "--data", "d.csv"], capsys), match="is the input"
    )
    assert (work / "d.csv").read_text().startswith("0.1")


def test_output_a_special_file_is_refused(work, capsys, no_work):
    os.mkfifo(work / "pipe")
    assert_error(run_cli(["prune", "model.kantk", "-o", "pipe"], capsys), code=1, match="not a regular file")
    assert_error(run_cli(["plot", "pipe", "-o", "p.png"], capsys), code=1, match="not a regular file")


def test_unwritable_output_folder_is_refused_before_the_work(work, capsys, no_work, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    for argv in (
        ["prune", "model.kantk", "-o", "p.kantk"],
        ["export", "model.kantk", "-o", "g.json"],
        ["plot", "model.kantk", "-o", "p.png"],
        ["symbolic", "model.kantk", "-o", "s.kantk"],
        ["discover", "-o", "out"],
    ):
        assert_error(run_cli(argv, capsys), code=1, match="Permission denied")
    assert sorted(p.name for p in work.iterdir()) == ["model.kantk"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_read_only_output_folder(work, capsys, no_work):
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert_error(
            run_cli(["prune", "model.kantk", "-o", "locked/p.kantk"], capsys), code=1, match="cannot write"
        )
        assert_error(run_cli(["discover", "-o", "locked/out"], capsys), code=1, match="cannot write")
    finally:
        locked.chmod(0o700)


def test_missing_output_folder(work, capsys, no_work):
    assert_error(
        run_cli(["prune", "model.kantk", "-o", "no/such/p.kantk"], capsys), code=1, match="does not exist"
    )


def test_too_long_output_names(work, capsys, no_work):
    assert_error(run_cli(["prune", "model.kantk", "-o", "a" * 300], capsys), code=1, match="too long")
    assert_error(run_cli(["discover", "-o", "b" * 300], capsys), code=1, match="too long")


def test_a_write_failing_after_the_work_is_one_line_and_keeps_the_old_file(work, capsys, monkeypatch):
    (work / "p.kantk").write_bytes(b"old")

    def disk_full(model, path):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(kantk, "save", disk_full)
    line = assert_error(run_cli(["prune", "model.kantk", "-o", "p.kantk"], capsys), code=1)
    assert "No space left on device" in line
    assert (work / "p.kantk").read_bytes() == b"old"
    assert sorted(p.name for p in work.iterdir()) == ["model.kantk", "p.kantk"]  # no temporary left behind


def test_discover_into_an_existing_file_fails_before_training(work, capsys, no_work):
    (work / "existing").write_text("keep me")
    assert_error(run_cli(["discover", "-o", "existing"], capsys), code=1, match="is a file, not a folder")
    assert (work / "existing").read_text() == "keep me"


def test_o_dash_is_refused_not_a_file_named_dash(work, capsys, no_work):
    """``-o -`` means stdout by the convention; predict wrote a file named ``-`` and said so."""
    (work / "d.csv").write_text("a,b\n0.1,0.2\n")
    for argv in (
        ["predict", "model.kantk", "--data", "d.csv", "-o", "-"],
        ["prune", "model.kantk", "-o", "-"],
        ["export", "model.kantk", "-o", "-"],
        ["discover", "-o", "-"],
    ):
        assert_error(run_cli(argv, capsys), code=1, match="-o -: ")
    assert not (work / "-").exists()


def test_kantk_debug_shows_the_traceback_behind_a_refusal(work, capsys, monkeypatch):
    """docs/cli.md: with KANTK_DEBUG=1 every error comes with its traceback; a refusal made while
    handling an error (a file that does not load) printed its one line only."""
    (work / "bad.kantk").write_bytes(b"not a model")
    monkeypatch.setenv("KANTK_DEBUG", "1")
    status, _, err = run_cli(["predict", "bad.kantk", "--data", "model.kantk", "-o", "p.csv"], capsys)
    assert (
        status == 1
        and "Traceback (most recent call last)" in err
        and err.strip().splitlines()[-1].startswith("kantk: ")
    ), err


def test_discover_takes_a_tolerance(work, capsys, monkeypatch):
    import kantk.pipeline as pipeline

    given = {}

    def discover(*args, **kwargs):
        given.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "discover", discover)
    assert_error(run_cli(["discover", "--tolerance", "0.05"], capsys), code=1, match="stop here")
    assert given["tolerance"] == 0.05
    given.clear()
    assert_error(run_cli(["discover"], capsys), code=1, match="stop here")
    assert "tolerance" not in given  # discover's own default
    line = assert_error(run_cli(["discover", "--tolerance", "-1"], capsys), code=2)
    assert "--tolerance: expected a finite number in [0, 1e+300], got -1" in line, line


def test_discover_csv_is_the_deprecated_spelling_of_data(work, capsys, no_work):
    code, _, err = run_cli(["discover", "--csv", "model.kantk"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0].startswith("kantk: warning: 'kantk discover --csv' is deprecated; use --data")
    assert "binary file" in lines[1]  # then read exactly as --data would be
    code, _, err = run_cli(["discover", "--csv", "a.csv", "--data", "b.csv"], capsys)
    assert code == 1 and "give --data once" in err


@pytest.mark.parametrize("name", ["model.kantk", "graph.svg", "activations.png"])
def test_discover_output_names_that_are_folders_fail_before_training(work, capsys, no_work, name):
    (work / "out" / name).mkdir(parents=True)
    assert_error(run_cli(["discover", "-o", "out"], capsys), code=1, match="is a folder")


def test_discover_checks_library_names_and_csv_before_training(work, capsys, no_work):
    assert_error(run_cli(["discover", "--library", "nope", "-o", "out"], capsys), code=1, match="nope")
    assert_error(
        run_cli(["discover", "--var-names", "a", "b", "c", "-o", "out"], capsys),
        code=1,
        match="var_names needs 2",
    )
    assert_error(run_cli(["discover", "--steps", "0"], capsys), code=2, match="--steps")
    assert_error(run_cli(["discover", "--hidden", "100000"], capsys), code=2, match="--hidden")
    assert_error(run_cli(["discover", "--data", "model.kantk"], capsys), code=1, match="binary file")
    (work / "out").mkdir()
    (work / "out" / "model.kantk").write_text("".join(f"{i},{i * 2},{i * 3}\n" for i in range(20)))
    assert_error(
        run_cli(["discover", "--data", "out/model.kantk", "-o", "out"], capsys),
        code=1,
        match="would overwrite the input",
    )
    assert not (work / "out" / "graph.svg").exists()


def test_test_with_a_missing_checkpoint_fails_before_lightning(work, capsys):
    for argv in (
        ["test", "--ckpt_path", "missing.ckpt"],
        ["validate", "--ckpt_path=missing.ckpt"],
        ["fit", "--ckpt_path", "."],
    ):
        assert_error(run_cli(argv, capsys), code=1, match="checkpoint file")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1", "1.5", "x"])
def test_r2_threshold_must_be_finite_in_0_1(work, capsys, no_work, value):
    assert_error(
        run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--r2-threshold", value], capsys),
        code=2,
        match="--r2-threshold",
    )


# --- the others found by trying each command -------------------------------------------------------


@pytest.mark.parametrize("lo_hi", [("nan", "1"), ("0", "inf"), ("1", "1"), ("2", "1"), ("-1e300", "1")])
def test_bad_range(work, capsys, no_work, lo_hi):
    """Every bad --range is a bad argument (status 2, as docs/cli.md says), LO >= HI too."""
    line = assert_error(
        run_cli(["export", "model.kantk", "-o", "g.json", "--range", *lo_hi], capsys), code=2, match="--range"
    )
    assert line.startswith("kantk: export: ") and line.endswith("(see 'kantk export --help')"), line


def test_bad_model_files(work, capsys, no_work):
    (work / "folder").mkdir()
    (work / "binary.kantk").write_bytes(b"\x00\x01garbage" * 100)
    (work / "empty.kantk").write_bytes(b"")
    (work / "bad.ckpt").write_bytes(b"not a pickle")
    (work / "BAD.CKPT").write_bytes(b"not a pickle")
    for model, match in (
        ("absent.kantk", "no model file"),
        ("folder", "is a folder"),
        ("binary.kantk", "cannot load"),
        ("empty.kantk", "cannot load"),
        ("bad.ckpt", "cannot load checkpoint"),
        ("BAD.CKPT", "cannot load checkpoint"),  # read as a .kantk file before
    ):
        for command in PLAIN_COMMANDS:
            assert_error(
                run_cli([command, model, "-o", "out.png" if command == "plot" else "out.json"], capsys),
                code=1,
                match=match,
            )
    assert not (work / "out.json").exists() and not (work / "out.png").exists()


def test_a_checkpoint_asking_for_more_than_it_holds_builds_nothing(work, capsys, monkeypatch):
    """A checkpoint's hyperparameters are checked against its state dict before a model is built:
    a 1 KB file naming widths [1, 30000, 30000, 1] (29 GB of coefficients), or a grid_size of
    1e8 beside an 8-function state, is refused in one line."""
    import pytorch_lightning as pl

    from kantk.lightning import KANModule
    from kantk.model import KAN

    module = KANModule([2, 3, 1], init_seed=0)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(work / "good.ckpt")
    checkpoint = torch.load(work / "good.ckpt", weights_only=True)
    # torch.save keeps views: every tensor one stored number, expanded to a [2, 600, 600, 1] model
    # of the right shapes (a 5.8 KB file of widths [2, 6000, 6000, 1] took 3.2 GB)
    expanded = {
        **checkpoint,
        "hyper_parameters": {**checkpoint["hyper_parameters"], "widths": [2, 600, 600, 1]},
    }
    built = KANModule([2, 600, 600, 1], init_seed=0).state_dict()
    expanded["state_dict"] = {k: v.flatten()[:1].clone().expand(v.shape) for k, v in built.items()}
    torch.save(expanded, work / "views.ckpt")
    assert (work / "views.ckpt").stat().st_size < 50_000
    checkpoint["hyper_parameters"]["basis_kwargs"] = {"grid_size": 100_000_000}
    torch.save(checkpoint, work / "grid.ckpt")
    checkpoint["hyper_parameters"]["basis_kwargs"] = None
    checkpoint["hyper_parameters"]["widths"] = [2, 30000, 30000, 1]
    checkpoint["state_dict"] = {}
    torch.save(checkpoint, work / "wide.ckpt")
    checkpoint["hyper_parameters"]["widths"] = [2, [1, 2_000_000], 1]  # product nodes: read one by one
    torch.save(checkpoint, work / "mult.ckpt")
    checkpoint["hyper_parameters"]["widths"] = [2, [1, 600_000], [1, 600_000], 1]  # in all
    torch.save(checkpoint, work / "mults.ckpt")
    build = KAN.__init__

    def small_only(self, widths, *args, **kwargs):
        assert max(w if isinstance(w, int) else 0 for w in widths) < 500, "a huge model was built"
        build(self, widths, *args, **kwargs)

    monkeypatch.setattr(KAN, "__init__", small_only)
    (work / "x.csv").write_text("0.1,0.2\n0.3,0.4\n")
    for name, match in (
        ("wide", "give layer 0 30000 x 2 edges"),
        ("views", "tensors hold 15,976,896 bytes of values but the file stores 60 (views"),
        ("grid", "(3, 2, 100000003)"),
        ("mult", "(each <= 1000000)"),  # the bounds of kantk.load's widths reader
        ("mults", "spells 1200002 nodes with node operations, more than 1000000 in all"),
    ):
        assert_error(
            run_cli(["predict", f"{name}.ckpt", "--data", "x.csv", "-o", "y.csv"], capsys),
            code=1,
            match=match,
        )
    assert not (work / "y.csv").exists()
    assert run_cli(["predict", "good.ckpt", "--data", "x.csv", "-o", "y.csv"], capsys)[0] == 0
    # LightningCLI (kantk fit) saves keys __init__ does not take: Lightning's loader drops them
    checkpoint = torch.load(work / "good.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["_instantiator"] = "pytorch_lightning.cli.instantiate_module"
    torch.save(checkpoint, work / "cli.ckpt")
    assert run_cli(["predict", "cli.ckpt", "--data", "x.csv", "-o", "z.csv"], capsys)[0] == 0


def test_unreadable_model_file(work, capsys, no_work, monkeypatch):
    import builtins

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file).endswith("model.kantk"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    assert_error(run_cli(["plot", "model.kantk", "-o", "p.png"], capsys), code=1, match="Permission denied")


def test_bad_data_files(work, capsys, no_work):
    (work / "folder").mkdir()
    (work / "header.csv").write_text("a,b\n")
    (work / "text.csv").write_text("a,b\n1,2\nx,y\n")
    (work / "nan.csv").write_text("1,2\nnan,3\n")
    (work / "one.csv").write_text("1\n2\n3\n")
    (work / "latin.csv").write_bytes(b"\xff\xfe1,2\n")
    for data, match in (
        ("absent.csv", "no CSV file"),
        ("folder", "is a folder"),
        ("model.kantk", "binary"),
        ("header.csv", "no data rows"),
        ("text.csv", "cannot read"),
        ("nan.csv", "NaN"),
        ("one.csv", "columns"),
        ("latin.csv", "cannot read"),
    ):
        assert_error(
            run_cli(["export", "model.kantk", "-o", "g.json", "--data", data], capsys), code=1, match=match
        )


def test_var_names_are_checked_before_the_work(work, capsys, no_work):
    for command in ("symbolic", "export", "plot"):
        out = "p.png" if command == "plot" else "out.json"
        assert_error(
            run_cli([command, "model.kantk", "-o", out, "--var-names", "a"], capsys),
            code=1,
            match="--var-names needs 2",
        )
        assert_error(run_cli([command, "model.kantk", "-o", out, "--var-names", "a", ""], capsys), code=2)


def test_plot_names_are_plain_text(work, capsys):
    """'a$^$b' was read as mathtext and failed after the work; the '$' signs of a header vanished."""
    result = run_cli(["plot", "model.kantk", "-o", "p.png", "--var-names", "a$^$b", "c $"], capsys)
    assert result[0] == 0, result
    assert (work / "p.png").stat().st_size > 0


def test_export_and_plot_formats(work, capsys, no_work):
    assert_error(run_cli(["export", "model.kantk", "-o", "g.gif"], capsys), code=1, match="unknown format")
    assert_error(run_cli(["export", "model.kantk", "-o", "g"], capsys), code=1, match="unknown format")
    assert_error(run_cli(["export", "model.kantk", "-o", "g.svg", "--format", "gif"], capsys), code=2)
    assert_error(
        run_cli(["export", "model.kantk", "-o", "g.json", "--edge-plots"], capsys),
        code=1,
        match="--edge-plots",
    )
    (work / "g_edges").write_text("a file")
    assert_error(
        run_cli(["export", "model.kantk", "-o", "g.dot", "--edge-plots"], capsys),
        code=1,
        match="a file of that name exists",
    )
    # an existing folder with files in it (or a link) is not written into: its files stay
    (work / "h_edges").mkdir()
    (work / "h_edges" / "edge_0_0_0.png").write_text("precious")
    (work / "k_edges").symlink_to(work / "h_edges")
    for out, match in (("h.dot", "holds 'edge_0_0_0.png', not a picture"), ("k.dot", "which is a link")):
        assert_error(
            run_cli(["export", "model.kantk", "-o", out, "--edge-plots"], capsys), code=1, match=match
        )
    assert (work / "h_edges" / "edge_0_0_0.png").read_text() == "precious"
    assert not (work / "h.dot").exists() and not (work / "k.dot").exists()
    assert_error(run_cli(["plot", "model.kantk", "-o", "p.xyz"], capsys), code=1, match="image file")
    # PostScript drops the opacities that show importance; pgf failed after the work without LaTeX
    assert_error(run_cli(["plot", "model.kantk", "-o", "p.eps"], capsys), code=1, match="no transparency")
    assert_error(run_cli(["plot", "model.kantk", "-o", "p.pgf"], capsys), code=1, match="LaTeX")
    assert_error(run_cli(["plot", "model.kantk", "-o", "p"], capsys), code=1, match="image file")


def test_unknown_pruner_library_and_commands(work, capsys):
    assert_error(
        run_cli(["prune", "model.kantk", "-o", "p.kantk", "--pruner", "nope"], capsys), code=1, match="nope"
    )
    assert_error(
        run_cli(["symbolic", "model.kantk", "-o", "p.kantk", "--library", "nope"], capsys),
        code=1,
        match="nope",
    )
    assert_error(run_cli(["nosuch"], capsys), code=2, match="invalid choice")
    assert_error(run_cli(["prune"], capsys), code=2, match="required")
    assert not (work / "p.kantk").exists()


def test_an_unknown_flag_names_its_command(work, capsys):
    """argparse's sub-commands leave unknown flags to the top parser, whose message lost the
    command: ``kantk: unrecognized arguments: --bogus (see 'kantk --help')``."""
    status, _, err = run_cli(["prune", "model.kantk", "-o", "p.kantk", "--bogus"], capsys)
    assert status == 2
    assert err == "kantk: prune: unrecognized arguments: --bogus (see 'kantk prune --help')\n"
    assert not (work / "p.kantk").exists()
    status, _, err = run_cli(["--bogus"], capsys)
    assert status == 2 and err == "kantk: unrecognized arguments: --bogus (see 'kantk --help')\n"
    # a misspelt option gets the closest one (it got no hint)
    status, _, err = run_cli(["prune", "model.kantk", "-o", "p.kantk", "--sampels", "50"], capsys)
    assert status == 2 and err == (
        "kantk: prune: unrecognized arguments: --sampels 50; did you mean --samples? "
        "(see 'kantk prune --help')\n"
    )
    status, _, err = run_cli(["prune", "model.kantk", "-o", "p.kantk", "--prune-input"], capsys)
    assert "did you mean --prune-inputs?" in err
    # an abbreviation of one option names it (--lib got no hint); of several, none
    status, _, err = run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--lib", "default"], capsys)
    assert status == 2 and "--lib default; did you mean --library? (see" in err, err
    status, _, err = run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--r", "1"], capsys)
    assert status == 2 and "did you mean" not in err, err  # --range, --r2-threshold


def test_lightning_parse_errors_are_one_line(work, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["kantk"])  # as from the console (LightningCLI compares them)
    (work / "binary.yaml").write_bytes(b"\x00\x01\x02")
    (work / "folder").mkdir()
    for argv, match in (
        (["fit", "--config", "missing.yaml"], "does not exist"),
        (["fit", "--config", "binary.yaml"], "config"),
        (["fit", "--config", "folder"], "not a file"),
        (["fit", "--no-such-flag", "1"], "unrecognized"),
    ):
        assert_error(run_cli(argv, capsys), code=2, match=match)
    # a config that is not UTF-8 (a Latin-1 comment) was "kantk: 'utf-8' codec can't decode byte
    # 0xe9 in position 5: ..." with status 1; one too large is refused before it is read
    (work / "latin1.yaml").write_bytes("# caf\xe9\nseed_everything: 0\n".encode("latin-1"))
    for argv in (["--config", "latin1.yaml"], ["-c", "latin1.yaml"], ["-clatin1.yaml"]):
        line = assert_error(run_cli(["fit", *argv], capsys), code=2)
        assert line.startswith("kantk: fit: --config 'latin1.yaml' is not UTF-8 text (byte 5)"), line
    monkeypatch.setattr("kantk.cli._MAX_CONFIG_SCAN", 10)
    (work / "long.yaml").write_text("seed_everything: 0\n")
    line = assert_error(run_cli(["test", "--config=long.yaml"], capsys), code=2)
    assert "kantk: test: --config 'long.yaml' is 19 bytes, more than a config may be (10)" in line, line


def test_an_error_raised_in_a_plugins_code_names_the_plugin_not_kantk(monkeypatch):
    """A plugin basis's forward that raised was reported as "kantk: internal error"; regulariser
    and pruner plugins were named already (kantk.plugins.plugin_call). A basis returning the wrong
    dtype is named by kantk's check, a one-line error of its own."""
    import types
    from types import SimpleNamespace

    from kantk.bases.base import BasisOutputError
    from kantk.cli import describe_error

    module = types.ModuleType("kantk_crashy_test.plugin")
    exec("def forward(x):\n    return 1 / x\n", module.__dict__)  # a frame of the plugin's module
    other = types.ModuleType("kantk_classy_test.plugin")
    exec("def forward(x):\n    return 1 / x\n", other.__dict__)

    class Classy:  # a plugin registered as a class (its __name__ is its own): named by its module
        pass

    Classy.__module__ = other.__name__
    plugins = {"crashy": module, "classy": Classy}
    manager = SimpleNamespace(
        isolated_plugins={"crashy": "kantk-crashy", "classy": None}, get_plugin=plugins.get
    )
    monkeypatch.setattr(kantk.registry, "_default", SimpleNamespace(plugin_manager=manager))
    for plugin, name in ((module, "'crashy' (kantk-crashy)"), (other, "'classy'")):
        with pytest.raises(ZeroDivisionError) as raised:
            plugin.forward(0)
        assert describe_error(raised.value) == (
            f"kantk: plugin {name} raised ZeroDivisionError: division by zero (an error in the plugin's "
            "code; run with KANTK_DEBUG=1 to see the traceback)"
        )
    monkeypatch.setattr(kantk.registry, "_default", None)  # no registry built: nothing is imported
    assert describe_error(raised.value).startswith("kantk: internal error: ZeroDivisionError")
    with pytest.raises(ZeroDivisionError) as raised:
        _ = 1 / 0  # kantk's (here: a test's) own code: still an internal error
    assert describe_error(raised.value).startswith("kantk: internal error: ZeroDivisionError")
    wrong = BasisOutputError("Mine.forward returned torch.float64 on cpu for a torch.float32 input on cpu")
    assert describe_error(wrong) == f"kantk: {wrong}"


def test_unexpected_errors_are_one_line_unless_debugging(work, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(kantk, "plot_activations", bug)
    status, _, err = run_cli(["plot", "model.kantk", "-o", "p.png"], capsys)
    assert status == 1 and "Traceback" not in err
    assert (
        err.strip()
        == "kantk: internal error: ZeroDivisionError: a bug (run with KANTK_DEBUG=1 to see the traceback)"
    )
    monkeypatch.setenv("KANTK_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["plot", "model.kantk", "-o", "p.png"])
    assert not (work / "p.png").exists()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 57600000000 bytes"),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        MemoryError(),
    ],
    ids=["cpu", "cuda", "python"],
)
def test_an_allocation_that_fails_is_bad_input_not_a_bug(work, capsys, monkeypatch, error):
    """A model or data set too large for the machine (widths [2, 30000, 30000, 1] in a config) is
    the input's fault: one line saying what to shrink, not "internal error"."""

    def too_big(*args, **kwargs):
        raise error

    monkeypatch.setattr(kantk, "plot_activations", too_big)
    line = assert_error(
        run_cli(["plot", "model.kantk", "-o", "p.png"], capsys), code=1, match="out of memory"
    )
    assert "check widths" in line


def test_the_console_prints_one_line_and_exits_1(work):
    env = dict(os.environ, KANTK_NATIVE="0")
    env.pop("KANTK_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "kantk.cli", "plot", "model.kantk", "-o", "model.kantk"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("kantk: -o 'model.kantk' is the input file")
    assert "Traceback" not in done.stderr


# --- the merged config that LightningCLI saves never replaces a file ------------------------------

_TINY_FIT = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 1
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
model:
  widths: [2, 2, 1]
  basis_kwargs: {grid_size: 3, order: 3}
  optimizer: adam
data:
  class_path: kantk.lightning.FunctionDataModule
  init_args: {f: x1*x2, n_vars: 2, train_num: 8, test_num: 8, batch_size: -1}
"""


@pytest.fixture()
def fit_folder(tmp_path, monkeypatch):
    """A temporary working folder with a tiny fit config ``cfg.yaml`` (one step, no logger)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kantk"])  # as from the console (LightningCLI compares them)
    (tmp_path / "cfg.yaml").write_text(_TINY_FIT)
    return tmp_path


@pytest.fixture()
def no_training(monkeypatch):
    """Makes a training step fail the test: the clash must be refused before training."""
    from kantk.lightning import KANModule

    def started(*args, **kwargs):
        raise AssertionError("training started before the config clash was refused")

    monkeypatch.setattr(KANModule, "training_step", started)


@pytest.mark.parametrize("root", [".", "sub/.."])
def test_fit_never_saves_its_config_over_the_config_file(fit_folder, capsys, no_training, root):
    (fit_folder / "config.yaml").write_text(_TINY_FIT + "# the user's own file\n")
    before = _snapshot(fit_folder)
    (fit_folder / "sub").mkdir()
    line = assert_error(
        run_cli(["fit", "--config", "config.yaml", "--trainer.default_root_dir", root], capsys),
        code=1,
        match="is the input --config file",
    )
    assert "config.yaml" in line
    assert _snapshot(fit_folder) == before


def test_fit_never_saves_its_config_over_another_input_file(fit_folder, capsys, no_training):
    (fit_folder / "out").mkdir()
    data = "class_path: kantk.lightning.FunctionDataModule\ninit_args: {f: x1+x2, n_vars: 2, train_num: 8}\n"
    (fit_folder / "out" / "config.yaml").write_text(data)
    before = _snapshot(fit_folder)
    assert_error(
        run_cli(
            ["fit", "--config", "cfg.yaml", "--data", "out/config.yaml", "--trainer.default_root_dir", "out"],
            capsys,
        ),
        code=1,
        match="is the input --data file",
    )
    assert _snapshot(fit_folder) == before


def test_fit_never_overwrites_an_existing_config_it_did_not_write(fit_folder, capsys, monkeypatch):
    (fit_folder / "runs").mkdir()
    (fit_folder / "runs" / "config.yaml").write_text("# an earlier run's config, or anything else\n")
    before = _snapshot(fit_folder)
    with monkeypatch.context() as patched:
        from kantk.lightning import KANModule

        patched.setattr(KANModule, "training_step", lambda *a, **k: pytest.fail("training started"))
        assert_error(
            run_cli(["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs"], capsys),
            code=1,
            match="would overwrite",
        )
    assert _snapshot(fit_folder) == before
    (fit_folder / "runs" / "old").mkdir()
    (fit_folder / "runs" / "config.yaml").rename(fit_folder / "runs" / "old" / "config.yaml")
    (fit_folder / "runs" / "config.yaml").mkdir()  # a folder in the way is one line too
    assert_error(
        run_cli(["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs"], capsys),
        code=1,
        match="is a folder",
    )
    (fit_folder / "runs" / "config.yaml").rmdir()

    status, out, err = run_cli(["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs"], capsys)
    assert status == 0, err
    assert "kantk fit: step 1" in out
    saved = fit_folder / "runs" / "config.yaml"  # written by this run
    assert "x1*x2" in saved.read_text()
    first = saved.read_bytes()
    assert_error(
        run_cli(
            ["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs", "--trainer.max_steps", "2"],
            capsys,
        ),
        code=1,
        match="would overwrite",
    )
    assert saved.read_bytes() == first  # the second run's config did not replace the first's
    assert (fit_folder / "runs" / "old" / "config.yaml").read_text().startswith("# an earlier run")


def test_a_fit_that_fails_before_its_first_step_leaves_no_config_behind(fit_folder, capsys):
    """A model that does not fit the data failed in the sanity check but left runs/config.yaml,
    which then refused the corrected rerun ("would overwrite ... not written by this run")."""
    (fit_folder / "runs").mkdir()
    bad = ["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs", "--model.widths", "[3, 2, 1]"]
    bad += ["--trainer.num_sanity_val_steps", "1"]
    assert_error(run_cli(bad, capsys), code=1, match="the model expects")
    assert list((fit_folder / "runs").iterdir()) == []
    status, _, err = run_cli(["fit", "--config", "cfg.yaml", "--trainer.default_root_dir", "runs"], capsys)
    assert status == 0, err
    assert (fit_folder / "runs" / "config.yaml").is_file()


def test_fit_refuses_yaml_aliases_before_expanding_them(fit_folder, capsys, no_training):
    """Nine aliases per level, five deep ("billion laughs"), took 74 s and 1 GB before the config
    was refused; each level more, nine times that."""
    levels = ["    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 6)]
    config = _TINY_FIT.replace(
        "  basis_kwargs: {grid_size: 3, order: 3}\n", "  basis_kwargs:\n" + "\n".join(levels) + "\n"
    )
    (fit_folder / "bomb.yaml").write_text(config)
    assert_error(run_cli(["fit", "--config", "bomb.yaml"], capsys), code=2, match="YAML aliases")


def test_fit_refuses_a_config_nested_too_deeply(fit_folder, capsys, no_training):
    """900 nested lists ended in jsonargparse's RecursionError, an "internal error"."""
    deep = "[" * 900 + "1" + "]" * 900
    config = _TINY_FIT.replace(
        "  basis_kwargs: {grid_size: 3, order: 3}\n", f"  basis_kwargs: {{a: {deep}}}\n"
    )
    (fit_folder / "deep.yaml").write_text(config)
    assert_error(
        run_cli(["fit", "--config", "deep.yaml"], capsys),
        code=2,
        match="nests lists or mappings more than 64",
    )
    block = "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(70)) + "  " * 71 + "v: 1\n"
    (fit_folder / "block.yaml").write_text(
        _TINY_FIT.replace("  basis_kwargs: {grid_size: 3, order: 3}\n", "  basis_kwargs:\n" + block)
    )
    assert_error(run_cli(["fit", "--config", "block.yaml"], capsys), code=2, match="more than 64 deep")


def test_checkpoints_sharing_references_and_odd_errors_are_refused_at_once(work, capsys, no_work):
    """A 13 KB checkpoint whose loss was [a] * 9 nested seven deep took 19 s and 4 GB to print;
    torch's refusal of a module name of 40,000 spaces took 40 s to shorten (a regex)."""
    import pickle

    from kantk.cli_models import checkpoint_error

    nested: list = ["x"] * 9
    for _ in range(7):
        nested = [nested] * 9
    torch.save({"state_dict": {}, "hyper_parameters": {"loss": nested}}, work / "bomb.ckpt")
    assert_error(
        run_cli(["plot", "bomb.ckpt", "-o", "p.png"], capsys), code=1, match="spells out to more than"
    )
    message = (
        "Weights only load failed. WeightsUnpickler error: \n\nUnsupported global: GLOBAL x" + " " * 40_000
    )
    detail = checkpoint_error(pickle.UnpicklingError(message + "y\n\nCheck the documentation"))
    assert "Unsupported global: GLOBAL x" in detail and len(detail) < 400


def test_scoring_and_drawing_sizes_are_bounded_before_the_work(work, capsys, no_work):
    """--samples 1000000 on a [100, 100, 1] model asked for 117 GB; Graphviz took 181 s on 79,000
    edges; edge pictures take 40 ms each."""
    kantk.save(kantk.KAN([100, 90, 1], seed=0), work / "wide.kantk")  # 9,090 edges, 9,000 in layer 0
    assert_error(  # 9,090 edge values and 100 x 8 basis values per sample
        run_cli(["plot", "wide.kantk", "-o", "p.png", "--samples", "1000000"], capsys),
        code=1,
        match="needs 73.7 GB",
    )
    kantk.save(kantk.KAN([100, 100, 1], seed=0), work / "wide.kantk")
    assert_error(run_cli(["plot", "wide.kantk", "-o", "p.png"], capsys), code=1, match="at most 10000 edges")
    assert_error(
        run_cli(["export", "wide.kantk", "-o", "g.svg"], capsys), code=1, match="at most 10000 edges"
    )
    kantk.save(kantk.KAN([40, 30, 1], seed=0), work / "mid.kantk")  # 1,230 edges
    assert_error(
        run_cli(["export", "mid.kantk", "-o", "g.dot", "--edge-plots"], capsys),
        code=1,
        match="--edge-plots draws at most 1000 edges",
    )
    assert not any(work.glob("*.png")) and not any(work.glob("g.*"))


# --- property-based: random values and argument lists ---------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_numbers = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "1_000", " 7 ", "", "-", "--", "1e3", "2.5"]),
    _text,
)


@pytest.fixture()
def cheap(monkeypatch):
    """Stubs the work of prune/export/plot/symbolic/discover: the argument handling is under test."""
    monkeypatch.setattr(kantk, "prune", lambda model, x, **kwargs: model)
    monkeypatch.setattr(kantk, "auto_symbolic", lambda model, x, **kwargs: [])
    monkeypatch.setattr(
        "kantk.export.export_graph", lambda model, path, *args, **kwargs: Path(path).write_text("{}")
    )
    monkeypatch.setattr(kantk, "plot_activations", lambda *args, **kwargs: Figure())
    monkeypatch.setattr(
        "kantk.pipeline.discover", lambda *args, **kwargs: Discovery(["x1"], 0.0, [1, 1, 1], None)
    )


@FUZZ
@given(flag=st.sampled_from(["--samples", "--seed", "--range"]), value=_numbers, other=_numbers)
def test_numeric_flags_succeed_or_fail_in_one_line(work, capsys, cheap, flag, value, other):
    argv = ["prune", "model.kantk", "-o", "p.kantk", flag, value] + ([other] if flag == "--range" else [])
    status, out, err = run_cli(argv, capsys)
    if status == 0:
        assert "wrote p.kantk" in out and err == ""
    else:
        assert_error((status, out, err))
    assert kantk.load(work / "model.kantk").widths == [2, 3, 1]


@FUZZ
@given(value=_numbers)
def test_r2_threshold_succeeds_or_fails_in_one_line(work, capsys, cheap, value):
    status, out, err = run_cli(
        ["symbolic", "model.kantk", "-o", "s.kantk", "--samples", "5", "--r2-threshold", value], capsys
    )
    if status == 2:
        assert_error((status, out, err), match="--r2-threshold")
    else:  # accepted: a finite number in [0, 1]; the stub leaves every edge numeric, so status 1
        assert 0 <= float(value) <= 1
        assert_error((status, out, err), code=1, match="no closed form")


def test_symbolic_names_the_edges_left_numeric_in_the_commands_words(work, capsys, cheap):
    """The line told a command-line user to "Run kantk.auto_symbolic(model, x) (lower r2_threshold
    ...)", Python; it now names the command's options and says what the written file holds."""
    status, out, err = run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--r2-threshold", "0.95"], capsys)
    line = assert_error((status, out, err), code=1, match="no closed form yet: 9 edges")
    assert "r2 < 0.95: layer 0: 0 -> 0," in line and "give a lower --r2-threshold (such an edge" in line
    assert "auto_symbolic" not in line and "r2_threshold" not in line
    assert "wrote s.kantk" in err and (work / "s.kantk").exists()
    # a symbolic edge whose numeric branch is on too was not fitted: a lower threshold does not help
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sin")
    with torch.no_grad():
        model.layers[0].mask.fill_(1.0)
    kantk.save(model, work / "both.kantk")
    status, out, err = run_cli(["symbolic", "both.kantk", "-o", "b.kantk"], capsys)
    line = assert_error((status, out, err), code=1, match="1 symbolic edge")
    assert "live numeric part too: layer 0: 0 -> 0" in line and "--r2-threshold" not in line


@FUZZ
@given(flag=st.sampled_from(["--steps", "--hidden", "--seed"]), value=_numbers)
def test_discover_numbers_are_refused_in_one_line_before_work(work, capsys, cheap, flag, value):
    (work / "existing-file").write_text("")
    status, out, err = run_cli(["discover", "-o", "existing-file", flag, value], capsys)
    assert_error((status, out, err))  # a bad number (status 2) or the output that is a file (status 1)


@settings(FUZZ, max_examples=20)
@given(
    items=st.lists(st.one_of(_text, _numbers).map(lambda v: f"node_th={v}") | _text, min_size=1, max_size=3)
)
def test_random_options_succeed_or_fail_in_one_line(work, capsys, items):  # the real pruner, 5 samples
    argv = ["prune", "model.kantk", "-o", "p.kantk", "--samples", "5"]
    for item in items:
        argv += ["--option", item]
    status, out, err = run_cli(argv, capsys)
    if status != 0:
        assert_error((status, out, err))


@FUZZ
@given(
    command=st.sampled_from([*PLAIN_COMMANDS, "discover", "plugins"]),
    args=st.lists(
        st.one_of(
            _text,
            _numbers,
            st.sampled_from(
                [
                    "-o",
                    "--output",
                    "model.kantk",
                    "--samples",
                    "--seed",
                    "--range",
                    "--data",
                    "--var-names",
                    "--format",
                    "--option",
                    "--library",
                    "--steps",
                    "--hidden",
                    "--csv",
                    "--formula",
                    "g.json",
                    ".",
                    "..",
                    "/",
                ]
            ),
        ),
        max_size=6,
    ),
)
def test_random_argument_lists_succeed_or_fail_in_one_line(work, capsys, cheap, command, args):
    before = (work / "model.kantk").read_bytes()
    status, out, err = run_cli([command, *args], capsys)
    if status != 0:
        assert_error((status, out, err))
    assert (work / "model.kantk").read_bytes() == before


# --- a value the data module or a callback refuses is its own error, in one line -------------------


def _fit_config(data: str, callbacks: str = "") -> str:
    """``_TINY_FIT`` with another ``data:`` section (YAML lines) and optional trainer callbacks."""
    config = _TINY_FIT[: _TINY_FIT.index("data:\n")] + "data:\n" + data
    if callbacks:
        config = config.replace("trainer:\n", "trainer:\n  callbacks:\n" + callbacks, 1)
    return config


_CSV_DATA = "  class_path: kantk.lightning.CSVDataModule\n  init_args:\n    path: {path}\n{more}"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            _CSV_DATA.format(path="nothere.csv", more=""),
            "kantk.lightning.CSVDataModule: no CSV file at 'nothere.csv'",
        ),
        (
            _CSV_DATA.format(path="d.csv", more="    label_columns: z\n"),
            "has no column named 'z'; columns: x1, x2, y",
        ),
        (
            "  class_path: kantk.lightning.FunctionDataModule\n"
            "  init_args: {f: foo(x1)*x2, n_vars: 2, train_num: 8, test_num: 8}\n",
            "kantk.lightning.FunctionDataModule: formula 'foo(x1)*x2' calls unknown function 'foo'",
        ),
    ],
    ids=["missing-csv", "unknown-label-column", "unknown-function"],
)
def test_a_value_the_data_module_refuses_is_its_own_message(fit_folder, capsys, no_training, data, match):
    (fit_folder / "d.csv").write_text("x1,x2,y\n1,2,3\n2,3,5\n3,4,7\n4,5,9\n5,6,11\n")
    (fit_folder / "bad.yaml").write_text(_fit_config(data))
    line = assert_error(run_cli(["fit", "--config", "bad.yaml"], capsys), code=1, match=match)
    for noise in ("Union", "Subtypes", "NoneType", "Given value", "Namespace("):
        assert noise not in line, line


def test_an_unknown_data_option_lists_the_accepted_ones(fit_folder, capsys, no_training):
    data = (
        "  class_path: kantk.lightning.FunctionDataModule\n"
        "  init_args: {f: x1*x2, n_vars: 2, train_nums: 8}\n"
    )
    (fit_folder / "bad.yaml").write_text(_fit_config(data))
    (fit_folder / "data.yaml").write_text(data.replace("\n  ", "\n").strip() + "\n")
    for argv in (
        ["fit", "--config", "bad.yaml"],
        ["fit", "--config", "cfg.yaml", "--data", "data.yaml"],
        ["fit", "--config", "cfg.yaml", "--data.train_nums", "8"],
    ):
        line = assert_error(run_cli(argv, capsys), code=2, match="Option 'train_nums' is not accepted")
        assert line.startswith("kantk: fit: data: kantk.lightning.FunctionDataModule: Option"), line
        assert "accepted options: f, n_vars, ranges, train_num, test_num," in line, line
        assert "Union" not in line and "Given value" not in line, line
    line = assert_error(run_cli(["fit", "--config", "cfg.yaml", "--data.n_vars", "x"], capsys), code=2)
    assert "data: kantk.lightning.FunctionDataModule: n_vars: Expected a <class 'int'>" in line, line
    assert "Union" not in line, line
    line = assert_error(
        run_cli(["fit", "--config", "cfg.yaml", "--trainer.max_epochs", "abc"], capsys), code=2
    )
    assert "trainer.max_epochs: Expected a <class 'int'>. Got value: abc (see" in line, line


def test_a_misspelt_model_or_trainer_key_gets_a_hint(fit_folder, capsys, no_training):
    """``model: {widht: ...}`` said only "does not accept option 'model.widht'"."""
    config = (fit_folder / "cfg.yaml").read_text()
    assert "  widths:" in config and "trainer:\n" in config
    (fit_folder / "m.yaml").write_text(config.replace("  widths:", "  widht:", 1))
    line = assert_error(run_cli(["fit", "--config", "m.yaml"], capsys), code=2, match="'model.widht'")
    assert "did you mean 'widths'?; accepted model options: widths, basis, basis_kwargs," in line, line
    (fit_folder / "t.yaml").write_text(config.replace("trainer:\n", "trainer:\n  max_stepz: 3\n", 1))
    line = assert_error(run_cli(["fit", "--config", "t.yaml"], capsys), code=2, match="'trainer.max_stepz'")
    assert "did you mean 'max_steps'?" in line, line
    # on the command line a key's beginning was taken for the key (argparse's abbreviations)
    line = assert_error(run_cli(["fit", "--config", "cfg.yaml", "--trainer.max_step", "3"], capsys), code=2)
    assert "arguments: --trainer.max_step 3; did you mean --trainer.max_steps? (see" in line, line
    # on the command line too (it got no hint)
    line = assert_error(run_cli(["fit", "--config", "cfg.yaml", "--model.widht=[2, 4, 1]"], capsys), code=2)
    assert "widht=[2, 4, 1]; did you mean --model.widths?; accepted model options: widths," in line, line
    assert_error(run_cli(["--versio"], capsys), code=2)  # kantk's own parser: no abbreviations either


def test_an_unknown_callback_option_lists_the_accepted_ones(fit_folder, capsys, no_training):
    callbacks = (
        "    - class_path: pytorch_lightning.callbacks.EarlyStopping\n      init_args: {monitr: val_loss}\n"
    )
    (fit_folder / "bad.yaml").write_text(_fit_config(_TINY_FIT.split("data:\n")[1], callbacks))
    line = assert_error(run_cli(["fit", "--config", "bad.yaml"], capsys), code=2, match="Option 'monitr'")
    assert "EarlyStopping" in line and "accepted options: monitor, " in line and "Union" not in line, line


def test_a_bug_in_a_data_module_is_still_an_internal_error(fit_folder, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("kantk.lightning.datamodules.create_dataset", bug)
    status, _, err = run_cli(["fit", "--config", "cfg.yaml"], capsys)
    assert status == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "kantk: internal error: kantk.lightning.FunctionDataModule: ZeroDivisionError: a bug "
        "(run with KANTK_DEBUG=1 to see the traceback)"
    )


@pytest.mark.parametrize(
    ("callback", "match"),
    [
        ("EarlyStopping", "Early stopping conditioned on metric `val_los` which is not available"),
        ("ModelCheckpoint", "`ModelCheckpoint(monitor='val_los')` could not find the monitored key"),
    ],
    ids=["EarlyStopping", "ModelCheckpoint"],
)
def test_a_callback_monitoring_a_metric_not_logged_is_bad_input(fit_folder, capsys, callback, match):
    callbacks = (
        f"    - class_path: pytorch_lightning.callbacks.{callback}\n      init_args: {{monitor: val_los}}\n"
    )
    (fit_folder / "bad.yaml").write_text(_fit_config(_TINY_FIT.split("data:\n")[1], callbacks))
    argv = ["fit", "--config", "bad.yaml", "--trainer.enable_checkpointing", "true"]
    line = assert_error(run_cli(argv, capsys), code=1, match=match)
    assert "val_loss" in line, line  # Lightning's list of the metrics that are logged


def test_duplicate_var_names_are_refused(work, capsys, no_work):
    """--var-names p p merged two inputs into one symbol in the formula (exit 0)."""
    for command in ("symbolic", "export", "plot"):
        out = "p.png" if command == "plot" else "out.json"
        assert_error(
            run_cli([command, "model.kantk", "-o", out, "--var-names", "p", "p"], capsys),
            code=1,
            match="names 'p' twice",
        )


def test_a_range_in_exponent_form_is_read_as_numbers(work, capsys):
    """--range -1e3 1e3: argparse took "-1e3" for an option ("expected 2 arguments")."""
    status, out, err = run_cli(["export", "model.kantk", "-o", "g.json", "--range", "-1e3", "1e3"], capsys)
    assert status == 0, err
    status, out, err = run_cli(["export", "model.kantk", "-o", "h.json", "--range", "-2e-1", "1"], capsys)
    assert status == 0, err
    assert_error(run_cli(["export", "model.kantk", "-o", "i.json", "--range", "-inf", "1"], capsys), code=2)


def test_symbolic_needs_three_samples_before_any_work(work, capsys, no_work):
    """A bad argument like the other --samples (it ended with status 1, and --help said 2 to ...)."""
    assert_error(
        run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--samples", "2"], capsys),
        code=2,
        match="symbolic: argument --samples: expected a whole number in [3, 1000000], got 2",
    )
    assert "number of uniform samples, 3 to" in " ".join(run_cli(["symbolic", "--help"], capsys)[1].split())


def test_kantks_warnings_are_one_line(work, capsys):
    """A warning of kantk's own (pruning that would remove every node) printed its file, line and
    source line; now one "kantk: warning:" line."""
    status, _, err = run_cli(
        ["prune", "model.kantk", "-o", "p.kantk", "--option", "node_th=10", "--option", "edge_th=10"], capsys
    )
    assert status == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("kantk: warning: ") for line in lines), err
    from kantk.cli import _show_warning

    _show_warning(None, UserWarning("kantk: training stopped at step 3"), UserWarning, kantk.__file__, 1)
    assert capsys.readouterr().err == "kantk: warning: training stopped at step 3\n"  # not "kantk: " twice
    # shown at the user's line (kantk._warnings.warn_at_user): the console script, for a command
    _show_warning(None, UserWarning("kantk: training stopped at step 3"), UserWarning, "/usr/bin/kantk", 8)
    assert capsys.readouterr().err == "kantk: warning: training stopped at step 3\n"


def test_prune_inputs_records_the_kept_columns_for_later_commands(work, capsys):
    """``prune --prune-inputs`` names the kept inputs, and the model file records their columns:
    later commands given the original CSV take those columns (they took the first ones, so with
    a header ``a,b,c`` and ``b`` pruned they silently fed ``a, b`` to the model's ``a, c``)."""
    model = kantk.KAN([3, 3, 1], seed=0)
    with torch.no_grad():
        model.layers[0].mask[:, 1] = 0  # input b is cut off
    kantk.save(model, work / "three.kantk")
    x = torch.rand(20, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows = "".join(",".join(f"{v:.17g}" for v in row) + ",7\n" for row in x.tolist())
    (work / "abc.csv").write_text("a,b,c,label\n" + rows)
    prune = ["prune", "three.kantk", "-o", "p.kantk", "--option", "node_th=0", "--option", "edge_th=0"]
    status, out, err = run_cli([*prune, "--prune-inputs", "--data", "abc.csv"], capsys)
    assert status == 0, err
    assert "kept inputs a, c (columns 1, 3 of the data)" in out
    pruned = kantk.load(work / "p.kantk")
    assert pruned.widths[0] == 2 and pruned.input_columns == [0, 2]

    status, out, err = run_cli(["predict", "p.kantk", "--data", "abc.csv", "-o", "y.csv"], capsys)
    assert status == 0, err
    predicted = torch.tensor([float(v) for v in (work / "y.csv").read_text().split()[1:]])
    with torch.no_grad():
        want = model(x).squeeze(1)  # the pruned model on columns a, c = the original on a, b, c
    torch.testing.assert_close(predicted, want, atol=1e-5, rtol=1e-5)  # float32 model, 9 digits

    (work / "ac.csv").write_text("a,c\n0.1,0.2\n0.3,0.4\n")  # too few columns for column 3
    status, _, err = run_cli(["predict", "p.kantk", "--data", "ac.csv", "-o", "y2.csv"], capsys)
    assert status == 1 and err.count("\n") == 1
    assert "the model's inputs are columns 1, 3 of the data it was pruned from" in err

    status, out, err = run_cli(
        ["symbolic", "p.kantk", "-o", "s.kantk", "--data", "abc.csv", "--r2-threshold", "0"], capsys
    )
    assert status == 0, err
    formula = out.splitlines()[0]
    assert set(re.findall(r"\b([abc])\b", formula)) == {"a", "c"}, formula


def _weighted_mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_a_checkpoint_trained_with_a_custom_loss_opens_in_every_model_command(work, capsys):
    """The loss callable is not saved, and loading asked for it again
    (``load_from_checkpoint(path, loss=...)``), which no command-line user can pass; the model
    commands need only the model."""
    import pytorch_lightning as pl

    from kantk.lightning import KANModule

    module = KANModule([2, 3, 1], loss=_weighted_mse, init_seed=0)
    assert module.hparams["loss"].startswith("custom:")
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(work / "custom.ckpt")
    (work / "in.csv").write_text("0.1,0.2\n0.3,-0.4\n")
    status, out, err = run_cli(["predict", "custom.ckpt", "--data", "in.csv", "-o", "y.csv"], capsys)
    assert status == 0, err
    with torch.no_grad():
        want = module.model(torch.tensor([[0.1, 0.2], [0.3, -0.4]])).squeeze(1)
    got = torch.tensor([float(v) for v in (work / "y.csv").read_text().split()[1:]])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    status, _, err = run_cli(["export", "custom.ckpt", "-o", "g.json"], capsys)
    assert status == 0, err


def test_symbolic_checks_its_rounding_on_the_data_rows(work, capsys):
    """kantk symbolic --data rounded on the grid box [-1, 1] instead of the data: a term tiny there
    and 1e14 on the data (x1 in [0, 3]) was rounded away, status 0."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = kantk.formula_to_kan("1 + 1e-12*exp(20*x1)")  # grid on [-1, 1]
    finally:
        torch.set_default_dtype(old)
    kantk.save(model, work / "tiny.kantk")
    (work / "far.csv").write_text("x1,y\n" + "".join(f"{3 * i / 49},0\n" for i in range(50)))
    status, out, err = run_cli(["symbolic", "tiny.kantk", "--data", "far.csv", "-o", "s.kantk"], capsys)
    assert status == 0, err
    assert "exp(" in out.splitlines()[0], out


def test_formula_names_are_checked_before_the_work(work, capsys, no_work):
    """discover --var-names q q trained for 46 s and reported "no closed form" (the duplicate
    failed symbolic_formula, taken for a numeric edge); a header 'x-1' or 'pi' printed a formula
    that reads otherwise (x minus 1, the constant)."""
    (work / "d.csv").write_text("a,b,y\n" + "".join(f"{i / 10},{i / 7},{i}\n" for i in range(10)))
    for names, match in ((["q", "q"], "names 'q' twice"), (["pi", "b"], "'pi' is a constant in formulas")):
        assert_error(
            run_cli(["discover", "--data", "d.csv", "-o", "out", "--var-names", *names], capsys),
            code=1,
            match=match,
        )
    assert_error(
        run_cli(["symbolic", "model.kantk", "-o", "s.kantk", "--var-names", "x-1", "b"], capsys),
        code=1,
        match="'x-1' is not a name",
    )


def test_header_names_that_cannot_stand_in_a_formula_fall_back_to_x1(work, capsys):
    (work / "h.csv").write_text("pi,a b,y\n" + "".join(f"{i / 10},{1 - i / 7},0\n" for i in range(10)))
    status, out, err = run_cli(
        ["symbolic", "model.kantk", "-o", "s.kantk", "--data", "h.csv", "--r2-threshold", "0"], capsys
    )
    assert status == 0, err
    assert "kantk: note: the header names cannot stand in a formula ('pi' is a constant" in err
    assert "x1" in out.splitlines()[0] and "a b" not in out.splitlines()[0], out


@pytest.mark.parametrize("name", ["metrics.csv", "hparams.yaml"])
def test_fit_never_lets_its_logger_replace_an_earlier_runs_file(fit_folder, capsys, no_training, name):
    """A CSVLogger given a folder that holds a metrics.csv deleted it when it started (Lightning's
    behaviour, a warning), and rewrote hparams.yaml: a resumed run's first metrics were lost."""
    mine = fit_folder / "logs" / "mine"
    mine.mkdir(parents=True)
    (mine / name).write_text("the user's own file\n")
    before = _snapshot(fit_folder)
    logger = ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "logs"]
    logger += ["--trainer.logger.name", "", "--trainer.logger.version", "mine"]
    assert_error(
        run_cli(["fit", "--config", "cfg.yaml", *logger], capsys),
        code=1,
        match=f"CSVLogger would overwrite 'logs/mine/{name}'",
    )
    assert _snapshot(fit_folder) == before


def test_a_logger_whose_folder_holds_none_of_its_files_may_start(tmp_path):
    """Only the fixed names a logger class writes count, for subclasses too; a logger without a
    local folder, or of another kind, is never refused."""
    from kantk.cli import logger_file_problem

    class TensorBoardLogger:  # the name is what counts (either Lightning package's class)
        log_dir = str(tmp_path)

    class MyBoard(TensorBoardLogger):
        pass

    class Other:
        log_dir = str(tmp_path)

    (tmp_path / "metrics.csv").write_text("x\n")
    assert logger_file_problem([MyBoard(), Other()], "fit") is None
    (tmp_path / "hparams.yaml").write_text("x: 1\n")
    assert "MyBoard would overwrite" in (logger_file_problem([MyBoard()], "test") or "")
    assert logger_file_problem([Other()], "fit") is None


@pytest.fixture()
def fit_checkpoint(fit_folder, capsys):
    """A checkpoint of one step of the tiny config, in ``fit_folder/ckpt/``."""
    args = ["fit", "--config", "cfg.yaml", "--trainer.enable_checkpointing", "true"]
    status, _, err = run_cli([*args, "--trainer.default_root_dir", "ckpt"], capsys)
    assert status == 0, err
    (path,) = (fit_folder / "ckpt").rglob("*.ckpt")
    return path


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_lightning_commands_check_the_values_of_a_ckpt_path_file(fit_folder, fit_checkpoint, capsys, command):
    """`kantk test --ckpt_path` of a checkpoint holding NaN printed test_rmse nan, and one with a
    mask of 3 a plausible number: the other commands refused both (kantk.io.check_tensor_values)."""
    checkpoint = torch.load(fit_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["model.layers.0.coef"].fill_(float("nan"))
    torch.save(checkpoint, fit_folder / "nan.ckpt")
    checkpoint["state_dict"]["model.layers.0.coef"].fill_(0.0)
    checkpoint["state_dict"]["model.layers.0.mask"].fill_(3.0)
    torch.save(checkpoint, fit_folder / "mask.ckpt")
    (fit_folder / "junk.ckpt").write_text("junk\n")
    # what Lightning needs of the file ended in internal errors (KeyError, AttributeError,
    # "Missing key(s) in state_dict")
    checkpoint["state_dict"]["model.layers.0.mask"].fill_(1.0)
    torch.save(
        {k: v for k, v in checkpoint.items() if k != "pytorch-lightning_version"}, fit_folder / "nv.ckpt"
    )
    torch.save({**checkpoint, "state_dict": {}}, fit_folder / "empty.ckpt")
    torch.save([1, 2], fit_folder / "list.ckpt")
    base = [command, "--config", "cfg.yaml", "--trainer.default_root_dir", "runs"]
    for name, fragment in [
        ("nan.ckpt", "'model.layers.0.coef' holds NaN or infinite values"),
        ("mask.ckpt", "'model.layers.0.mask' holds values other than 0 and 1"),
        ("junk.ckpt", "cannot load checkpoint 'junk.ckpt': not a readable torch checkpoint file (KeyError"),
        ("nv.ckpt", "it has no 'pytorch-lightning_version', so it is no Lightning checkpoint"),
        ("empty.ckpt", "its state_dict lacks model.layers.0.coef, "),
        ("list.ckpt", "it holds a list, not a KANModule Lightning checkpoint"),
    ]:
        before = _snapshot(fit_folder)
        assert_error(run_cli([*base, "--ckpt_path", name], capsys), code=1, match=fragment)
        assert _snapshot(fit_folder) == before
    status, out, err = run_cli([*base, "--ckpt_path", str(fit_checkpoint)], capsys)
    assert status == 0, err


@pytest.mark.parametrize("command", ["export", "prune", "plot", "symbolic"])
def test_the_scoring_bound_counts_the_basis_values_of_a_fine_grid(
    work, capsys, no_work, monkeypatch, command
):
    """The bound counted samples times edges only: a [12, 11, 1] model of grid 200 (132 edges, a
    0.1 MB file) passed it with a million samples and took 11.7 GB; its basis holds 12 x 203 values
    per sample."""
    monkeypatch.setattr(kantk, "to_networkx", lambda *a, **k: pytest.fail("export started"))
    kantk.save(kantk.KAN([12, 11, 1], seed=0, basis_kwargs={"grid_size": 200}), work / "fine.kantk")
    out = {"export": "g.json", "prune": "p.kantk", "plot": "p.png", "symbolic": "s.kantk"}[command]
    line = assert_error(
        run_cli([command, "fine.kantk", "-o", out, "--samples", "100000"], capsys), code=1, match="--samples"
    )
    assert "2436 basis values per sample" in line and "give at most 52042" in line
    assert not (work / out).exists()


def test_plot_refuses_a_figure_of_more_pixels_than_it_draws(work, capsys, no_work):
    """A 134 KB model of 30 layers nine wide is 40 x 53 in: --dpi 600 took 3.5 GB, 1200 about 13 GB
    (the edge bound, 10,000, does not see the figure's size)."""
    kantk.save(kantk.KAN([9] * 30, seed=0), work / "deep.kantk")
    line = assert_error(
        run_cli(["plot", "deep.kantk", "-o", "d.png", "--dpi", "600", "--samples", "10"], capsys),
        code=1,
        match="million pixels at --dpi 600",
    )
    assert "give --dpi 251 or less" in line
    assert not (work / "d.png").exists()


def test_symbolic_refuses_a_model_too_large_to_fit_or_read_before_the_fit(work, capsys, no_work):
    """A 400 KB [100, 99, 1] model ran for more than 5 minutes (about 1 s per edge) before its
    20,000-operation formula could have been refused."""
    kantk.save(kantk.KAN([100, 99, 1], seed=0), work / "wide.kantk")
    assert_error(
        run_cli(["symbolic", "wide.kantk", "-o", "s.kantk", "--samples", "10"], capsys),
        code=1,
        match="9999 live numeric edges, more than 1000",
    )
    kantk.save(kantk.KAN([10, 10, 10, 10, 1], seed=0), work / "deep.kantk")  # 310 edges, 75,549 operations
    assert_error(
        run_cli(["symbolic", "deep.kantk", "-o", "s.kantk", "--samples", "10"], capsys),
        code=1,
        match="operations, more than 20,000",
    )
    assert not (work / "s.kantk").exists()


def test_only_errors_inside_torch_load_count_as_an_unreadable_checkpoint(tmp_path):
    """torch.save lives in the same module as torch.load: its errors (a bug) were reported as "not a
    readable checkpoint file" and taken for bad input."""
    from kantk.cli import describe_error

    (tmp_path / "junk.ckpt").write_text("junk\n")
    try:
        torch.load(tmp_path / "junk.ckpt", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        assert describe_error(exc).startswith("kantk: cannot load a checkpoint: not a readable torch")
    try:
        torch.save({"f": lambda z: z}, tmp_path / "f.pt")
    except Exception as exc:  # noqa: BLE001
        assert describe_error(exc).startswith("kantk: internal error:"), describe_error(exc)
    else:
        pytest.fail("torch.save pickled a lambda")


def test_a_ckpt_path_is_checked_in_the_dtype_the_trainer_computes_in(fit_folder, fit_checkpoint, capsys):
    """Under precision 64-true a float64 checkpoint holding a value beyond float32's range is
    valid, but was checked in the config's float32 and refused as infinite."""
    checkpoint = torch.load(fit_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = value.double()
    state["model.layers.0.coef"][0, 0, 0] = 1e39  # finite in float64 only
    torch.save(checkpoint, fit_folder / "wide.ckpt")
    base = [
        "validate",
        "--config",
        "cfg.yaml",
        "--trainer.default_root_dir",
        "runs",
        "--ckpt_path",
        "wide.ckpt",
    ]
    assert_error(run_cli(base, capsys), code=1, match="holds NaN or infinite values")  # float32
    status, out, err = run_cli([*base, "--trainer.precision", "64-true"], capsys)
    assert "holds NaN or infinite" not in err, err
    assert "kantk validate: val_loss" in out and "step 0" not in out  # it said "step 0" of any checkpoint


def test_a_file_where_a_folder_was_to_be_made_is_named_as_such(tmp_path):
    """--trainer.default_root_dir naming an existing file said only "File exists: '...'"."""
    from kantk.cli import describe_error

    (tmp_path / "cfg.yaml").write_text("x: 1\n")
    try:
        os.makedirs(tmp_path / "cfg.yaml")
    except FileExistsError as exc:
        line = describe_error(exc)
    assert line.endswith("cfg.yaml' is a file where a folder was to be made; give a folder (or a new name)")
    assert (tmp_path / "cfg.yaml").read_text() == "x: 1\n"


def test_discover_refuses_more_inputs_than_it_fits_edges(work, capsys, no_work, monkeypatch):
    """A CSV of 20,000 columns was fitted edge by edge for minutes; kantk symbolic refuses more
    than MAX_SYMBOLIC_EDGES live edges, and discover's first model has one edge per input."""
    import kantk.cli_models as cli_models

    monkeypatch.setattr(cli_models, "MAX_SYMBOLIC_EDGES", 5)
    monkeypatch.setattr("kantk.pipeline.discover", lambda *a, **k: pytest.fail("discover started"))
    (work / "wide.csv").write_text(
        "\n".join(",".join(str(i * 7 + j) for j in range(7)) for i in range(30)) + "\n"
    )
    line = assert_error(run_cli(["discover", "--data", "wide.csv", "-o", "out"], capsys), code=1)
    assert "has 6 input columns; discover fits a function to every edge and takes at most 5 inputs" in line


def test_a_model_of_a_missing_plugin_is_named_once(tmp_path, capsys, fixed_basis_registry):
    """The line said the file twice: "cannot load 'm.kantk': 'm.kantk' cannot be loaded: ..."."""
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 1], basis="fixed_test", registry=fixed_basis_registry), path)
    line = assert_error(run_cli(["export", str(path), "-o", str(tmp_path / "g.dot")], capsys), code=1)
    assert line.startswith(f"kantk: {str(path)!r} cannot be loaded: unknown basis 'fixed_test'"), line
    assert "cannot load" not in line and "is the plugin that provides it installed?" in line, line


def test_a_checkpoint_trained_with_a_plugin_regulariser_serves_the_model_commands_without_it(
    fit_folder, fit_checkpoint, capsys
):
    """Regularisers act in training only: a checkpoint naming one no installed plugin provides was
    refused by predict, symbolic and export ("unknown regulariser")."""
    checkpoint = torch.load(fit_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["regularisers"] = {"plugin_only_penalty": 1e-3}
    torch.save(checkpoint, fit_folder / "plugin.ckpt")
    n_in = len(checkpoint["state_dict"]["model.layers.0.coef"][0])
    (fit_folder / "x.csv").write_text(",".join(["0.1"] * n_in) + "\n")
    status, _, err = run_cli(["predict", "plugin.ckpt", "--data", "x.csv", "-o", "y.csv"], capsys)
    assert status == 0 and (fit_folder / "y.csv").exists(), err


def test_a_model_fitted_from_a_csv_takes_its_inputs_by_header_name(fit_folder, capsys):
    """A model fitted from a CSV whose label column y sits between its inputs (label_columns: y)
    took the file's first columns a, y as its inputs in the model commands: a formula of y itself
    and wrong predictions, exit status 0. The model now records its inputs' header names
    (KAN.column_names) and takes those columns of a file with a header, wherever they are."""
    import torch

    rows = [f"{a / 10},{a / 10 + (a % 3) / 5},{(a % 3) / 5}" for a in range(-8, 9)]
    (fit_folder / "mid.csv").write_text("a,y,b\n" + "\n".join(rows) + "\n")

    def columns(order: tuple[int, ...], header: str | None) -> str:
        body = "\n".join(",".join(r.split(",")[i] for i in order) for r in rows) + "\n"
        return body if header is None else header + "\n" + body

    (fit_folder / "last.csv").write_text(columns((0, 2, 1), "a,b,y"))
    (fit_folder / "swapped.csv").write_text(columns((2, 0), "b,a"))
    (fit_folder / "plain.csv").write_text(columns((0, 2), None))
    (fit_folder / "renamed.csv").write_text(columns((0, 2), "a,c"))
    data = _CSV_DATA.format(path="mid.csv", more="    label_columns: y\n    batch_size: -1\n")
    (fit_folder / "mid.yaml").write_text(
        _fit_config(data).replace("enable_checkpointing: false", "enable_checkpointing: true")
    )
    status, _, err = run_cli(["fit", "--config", "mid.yaml", "--trainer.default_root_dir", "run"], capsys)
    assert status == 0, err
    (checkpoint,) = (fit_folder / "run").rglob("*.ckpt")
    assert torch.load(checkpoint, weights_only=True)["kantk_column_names"] == ["a", "b"]
    predicted = {}
    for name in ("mid", "last", "swapped", "plain"):
        status, _, err = run_cli(
            ["predict", str(checkpoint), "--data", f"{name}.csv", "-o", f"{name}.out"], capsys
        )
        assert status == 0, (name, err)
        predicted[name] = (fit_folder / f"{name}.out").read_text()
    assert predicted["mid"] == predicted["last"] == predicted["swapped"] == predicted["plain"]
    line = assert_error(
        run_cli(["predict", str(checkpoint), "--data", "renamed.csv", "-o", "r.out"], capsys), code=1
    )
    assert "'renamed.csv' has no column 'b': the model's inputs are the columns 'a', 'b'" in line, line
    assert not (fit_folder / "r.out").exists()
    # a checkpoint that records no names (from before they were recorded) still refuses the label
    # among the first columns
    old = torch.load(checkpoint, weights_only=True)
    del old["kantk_column_names"]
    torch.save(old, fit_folder / "old.ckpt")
    line = assert_error(run_cli(["predict", "old.ckpt", "--data", "mid.csv", "-o", "p.csv"], capsys), code=1)
    assert "column 'y' is the label the model was trained to predict" in line, line
    assert not (fit_folder / "p.csv").exists()
    status, _, err = run_cli(["predict", "old.ckpt", "--data", "last.csv", "-o", "p.csv"], capsys)
    assert status == 0 and (fit_folder / "p.csv").read_text() == predicted["mid"], err


def test_discover_prints_the_test_rmse_of_an_inexact_formula_as_printed(work, capsys, monkeypatch):
    inexact = Discovery(["x1"], 1e-5, [1, 1, 1], None, formula_rmse=2.5e-1)
    monkeypatch.setattr("kantk.pipeline.discover", lambda *args, **kwargs: inexact)
    status, out, _ = run_cli(["discover", "-o", "out"], capsys)
    assert status == 0 and "test RMSE: 1.000e-05\ntest RMSE of the printed formula: 2.500e-01\n" in out


class _RunsCode:
    """Unpickling it would create the file ``PWNED`` beside it (a checkpoint that runs code)."""

    def __init__(self, folder: str):
        self.folder = folder

    def __reduce__(self):
        return (open, (os.path.join(self.folder, "PWNED"), "w"))


def test_a_config_ckpt_path_is_a_local_file_read_weights_only(fit_folder, fit_checkpoint, capsys):
    """A config's ``ckpt_path: file:///...`` (or an http URL) passed the checkpoint checks, which
    looked at local files only, and Lightning unpickled it with ``weights_only: false`` (for a remote
    file, by default): the checkpoint ran code. URLs and ``weights_only: false`` are refused in one
    line before anything is read, and a FIFO is no checkpoint file (it blocked)."""
    checkpoint = torch.load(fit_checkpoint, map_location="cpu", weights_only=True)
    torch.save({**checkpoint, "x": _RunsCode(str(fit_folder))}, fit_folder / "evil.ckpt")
    os.mkfifo(fit_folder / "fifo.ckpt")
    url = (fit_folder / "evil.ckpt").as_uri()
    for lines, fragment in [
        (f"ckpt_path: {url}\nweights_only: false\n", "is a URL; kantk resumes only from a local checkpoint"),
        (f"ckpt_path: {url}\n", "is a URL"),
        ("ckpt_path: http://127.0.0.1:9/evil.ckpt\n", "is a URL"),
        ("weights_only: false\n", "weights_only: false would let a checkpoint run code"),
        # refused by the weights-only read (torch's advice to allow the global left out)
        (
            "ckpt_path: evil.ckpt\nweights_only: false\n",
            "Unsupported global: GLOBAL io.open was not an allowed",
        ),
        (
            "ckpt_path: fifo.ckpt\n",
            "'fifo.ckpt' is not a regular file (a checkpoint file for ckpt_path is needed)",
        ),
    ]:
        (fit_folder / "evil.yaml").write_text(_TINY_FIT + lines)
        before = _snapshot(fit_folder)
        line = assert_error(
            run_cli(["fit", "--config", "evil.yaml", "--trainer.default_root_dir", "runs"], capsys), code=1
        )
        assert fragment in line and "safe_globals" not in line, (lines, line)
        assert not (fit_folder / "PWNED").exists()
        assert _snapshot(fit_folder) == before
    # the checkpoint itself, named as a local file, is refused by the weights-only read
    (fit_folder / "evil.yaml").write_text(_TINY_FIT + "ckpt_path: evil.ckpt\n")
    assert_error(
        run_cli(["fit", "--config", "evil.yaml", "--trainer.default_root_dir", "runs"], capsys), code=1
    )
    assert not (fit_folder / "PWNED").exists()
    # weights_only: true, or left out, resumes as before
    (fit_folder / "ok.yaml").write_text(_TINY_FIT + f"ckpt_path: {fit_checkpoint}\nweights_only: true\n")
    status, _, err = run_cli(["fit", "--config", "ok.yaml", "--trainer.default_root_dir", "runs"], capsys)
    assert status == 0, err


def test_symbolic_says_how_far_the_symbolic_model_strays_from_the_numeric_one(work, capsys):
    """With --r2-threshold 0 (the advice of its own message) kantk symbolic fixed edges to functions
    that fit them poorly and printed a formula worse than a constant, exit status 0, without a word.
    It now prints the symbolic model's RMSE against the numeric one on the samples, per output, and
    warns past 10% of the numeric outputs' std."""
    model = kantk.KAN([1, 1], seed=0, base_activation="zero")
    with torch.no_grad():  # a bump no library function follows well
        model.layers[0].coef.copy_(torch.tensor([0.0, 0, 0, 4, -4, 0, 0, 0]).view(1, 1, 8))
    kantk.save(model, work / "wiggle.kantk")
    status, out, err = run_cli(
        ["symbolic", "wiggle.kantk", "-o", "w.kantk", "--r2-threshold", "0", "--samples", "200"], capsys
    )
    assert status == 0, err
    pattern = r"^y1: the symbolic model differs from the numeric one by RMSE [0-9.e-]+ on the samples "
    assert re.search(pattern + r"\(\d+\.\d% of the numeric outputs' std\)$", out, re.M), out
    assert "kantk: warning: y1: the symbolic model strays from the numeric one" in err, err
    # a numeric edge that is a library function (the identity): close, no warning
    line = kantk.KAN([1, 1], seed=0, base_activation="identity")
    with torch.no_grad():
        line.layers[0].coef.zero_()
    kantk.save(line, work / "line.kantk")
    status, out, err = run_cli(["symbolic", "line.kantk", "-o", "l.kantk", "--samples", "200"], capsys)
    assert status == 0 and "warning" not in err, err
    assert "y1: the symbolic model differs from the numeric one by RMSE" in out


def test_a_ckpt_path_registry_name_and_home_folder_as_lightning_reads_them(
    fit_folder, fit_checkpoint, capsys, monkeypatch
):
    """Any ckpt_path starting with "registry" passed as Lightning's model registry: a FIFO named
    registry_x.ckpt was let through (Lightning reads it as a file, and blocked); and ~/x.ckpt, which
    Lightning reads from the home folder, was refused."""
    import importlib.util

    from kantk.cli import _is_registry

    litmodels = importlib.util.find_spec("litmodels") is not None  # Lightning's registry needs it
    assert _is_registry("REGISTRY:model:v1") == _is_registry("registry") == litmodels
    assert not _is_registry("registry_x.ckpt") and not _is_registry(" registry")
    os.mkfifo(fit_folder / "registry_x.ckpt")
    (fit_folder / "reg.yaml").write_text(_TINY_FIT + "ckpt_path: registry_x.ckpt\n")
    line = assert_error(
        run_cli(["fit", "--config", "reg.yaml", "--trainer.default_root_dir", "runs"], capsys), code=1
    )
    assert "'registry_x.ckpt' is not a regular file" in line, line
    home = fit_folder / "home"
    home.mkdir()
    (home / "x.ckpt").write_bytes(fit_checkpoint.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    (fit_folder / "home.yaml").write_text(_TINY_FIT + "ckpt_path: ~/x.ckpt\n")
    status, _, err = run_cli(["fit", "--config", "home.yaml", "--trainer.default_root_dir", "runs"], capsys)
    assert status == 0, err


def test_a_header_naming_an_input_twice_is_read_by_position(work, capsys):
    """A model fitted on a CSV with the header x,y,x (the label named as the first input) records
    the inputs x, y; the file itself was refused as naming 'x' twice. It is read by position, as
    before models recorded names, when the names stand where the model's inputs are."""
    model = kantk.KAN([2, 1], seed=0)
    model.column_names = ["x", "y"]
    kantk.save(model, work / "named.kantk")
    (work / "dup.csv").write_text("x,y,x\n0.1,0.2,0.3\n0.4,0.5,0.6\n")
    (work / "plain.csv").write_text("0.1,0.2\n0.4,0.5\n")
    for name in ("dup", "plain"):
        status, _, err = run_cli(
            ["predict", "named.kantk", "--data", f"{name}.csv", "-o", f"{name}.out"], capsys
        )
        assert status == 0, err
    assert (work / "dup.out").read_text() == (work / "plain.out").read_text()
    # names twice, but not where the model's inputs stand: refused (read by position, the columns
    # were swapped without a word)
    (work / "swapped.csv").write_text("y,x,y\n0.1,0.2,0.3\n0.4,0.5,0.6\n")
    assert_error(
        run_cli(["predict", "named.kantk", "--data", "swapped.csv", "-o", "s.out"], capsys),
        code=1,
        match="names column 'y' more than once; the model takes its input 'y' by name",
    )


def test_prune_names_the_file_columns_of_inputs_found_by_header_name(work, capsys):
    """prune --prune-inputs named the kept input's column in the data the model was trained on: for a
    file a,y,b it said 'kept inputs b (columns 2 of the data)', column 2 being the label y."""
    model = kantk.KAN([2, 1], seed=0)
    model.column_names = ["a", "b"]
    with torch.no_grad():
        model.layers[0].mask[:, 0] = 0  # input a feeds nothing
    kantk.save(model, work / "ab.kantk")
    rows = "".join(f"{i / 10},{i / 7},{1 - i / 9}\n" for i in range(10))
    (work / "mid.csv").write_text("a,y,b\n" + rows)
    status, out, err = run_cli(
        ["prune", "ab.kantk", "--data", "mid.csv", "-o", "p.kantk", "--prune-inputs"], capsys
    )
    assert status == 0, err
    assert "kept inputs b (columns 3 of mid.csv): later commands take them by header name" in out, out
    assert "from one without from columns 2 (of the data the model was trained on)" in out, out
    assert kantk.load(work / "p.kantk").column_names == ["b"]
