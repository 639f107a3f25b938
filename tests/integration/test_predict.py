"""Prediction: ``predict_dataloader`` of the data modules, ``KANModule.predict_step``, ``kantk predict``."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kantk
from kantk.cli import main
from kantk.lightning import CSVDataModule, FunctionDataModule, KANModule, TensorDataModule

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}


@pytest.fixture(autouse=True)
def _no_lightning_chatter():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def dataset(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "train_input": torch.rand(n_train, 2, generator=gen),
        "train_label": torch.rand(n_train, 1, generator=gen),
        "test_input": torch.rand(n_test, 2, generator=gen),
        "test_label": torch.rand(n_test, 1, generator=gen),
    }


def batches(dm: TensorDataModule) -> list[torch.Tensor]:
    return list(dm.predict_dataloader())


# --- data modules --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [-1, 2, 100])
def test_predict_yields_the_test_inputs_in_order_without_labels(batch_size):
    data = dataset()
    dm = TensorDataModule(data, batch_size=batch_size)
    got = batches(dm)
    assert all(isinstance(b, torch.Tensor) for b in got)  # inputs only
    assert dm.predict_split == "test"
    torch.testing.assert_close(torch.cat(got), data["test_input"])
    if batch_size == 2:
        assert [len(b) for b in got] == [2, 2, 1]


def test_predict_split_when_given_and_train_without_a_test_split():
    data = dataset()
    extra = torch.rand(7, 2, dtype=torch.float64)
    dm = TensorDataModule({**data, "predict_input": extra})
    assert dm.predict_split == "predict"
    (got,) = batches(dm)
    torch.testing.assert_close(got, extra.float())  # in the training inputs' dtype
    train_only = TensorDataModule({k: data[k] for k in ("train_input", "train_label")}, batch_size=5)
    assert train_only.predict_split == "train"
    torch.testing.assert_close(torch.cat(batches(train_only)), data["train_input"])


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(4, 3), r"shape \(4, 3\); expected \(N, 2\)"),
        (torch.rand(4), "expected"),
        (torch.tensor([[0.0, float("nan")]]), "1 NaN or infinite"),
    ],
)
def test_bad_predict_input_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        TensorDataModule({**dataset(), "predict_input": bad})


def test_function_and_csv_data_modules_predict(tmp_path):
    fdm = FunctionDataModule("x1*x2", n_vars=2, train_num=10, test_num=6, seed=0)
    torch.testing.assert_close(torch.cat(batches(fdm)), fdm.dataset["test_input"])
    table = tmp_path / "train.csv"
    np.savetxt(table, np.random.default_rng(0).random((20, 3)), delimiter=",", header="a,b,y", comments="")
    cdm = CSVDataModule(str(table), test_fraction=0.25, batch_size=4)
    assert cdm.predict_split == "test"
    torch.testing.assert_close(torch.cat(batches(cdm)), cdm.dataset["test_input"])
    inputs = tmp_path / "new.csv"
    np.savetxt(inputs, [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], delimiter=",", header="a,b", comments="")
    pdm = CSVDataModule(str(table), predict_path=str(inputs))
    assert pdm.predict_split == "predict" and pdm.hparams.predict_path == str(inputs)
    torch.testing.assert_close(torch.cat(batches(pdm)), torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]))
    with pytest.raises(ValueError, match="expected"):
        CSVDataModule(str(table), predict_path=str(table))  # three columns for two inputs


def test_trainer_predict_gives_the_model_outputs(tmp_path):
    data = {**dataset(), "predict_input": torch.rand(9, 2, dtype=torch.float64)}
    module = KANModule([2, 3, 1], init_seed=0)
    dm = TensorDataModule(data, batch_size=4)
    with torch.no_grad():
        want = module.model(data["predict_input"].float())
    out = pl.Trainer(default_root_dir=tmp_path, **QUIET).predict(module, datamodule=dm)
    assert [tuple(o.shape) for o in out] == [(4, 1), (4, 1), (1, 1)]
    torch.testing.assert_close(torch.cat(out), want)
    # predict_step also takes (inputs, labels) batches
    x, y = data["test_input"], data["test_label"]
    with torch.no_grad():
        torch.testing.assert_close(module.predict_step((x, y), 0), module.predict_step(x, 0))


# --- kantk predict -------------------------------------------------------------------------------


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = kantk.KAN([2, 3, 2], seed=0)
    kantk.save(model, "model.kantk")
    rng = np.random.default_rng(0)
    np.savetxt("data.csv", rng.uniform(-1, 1, (6, 3)), delimiter=",", header="x1,x2,label", comments="")
    return model


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    out = capsys.readouterr()
    return (0 if code is None else code), out.out, out.err


def one_error_line(err: str, match: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kantk: ") and "Traceback" not in err, err
    assert match in lines[0], lines[0]


def expected_outputs(model: kantk.KAN, path: str = "data.csv") -> np.ndarray:
    x = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)[:, :2]
    return model(torch.as_tensor(x, dtype=torch.float32)).detach().double().numpy()


def test_predict_a_kantk_file(work, capsys):
    code, out, err = run(["predict", "model.kantk", "--data", "data.csv", "-o", "pred.csv"], capsys)
    assert code == 0, err
    assert "wrote pred.csv" in out
    lines = Path("pred.csv").read_text().splitlines()
    assert lines[0] == "y1,y2" and len(lines) == 7
    np.testing.assert_allclose(
        np.loadtxt("pred.csv", delimiter=",", skiprows=1), expected_outputs(work), rtol=1e-6
    )
    assert sorted(os.listdir()) == ["data.csv", "model.kantk", "pred.csv"]  # no temporary file left


def test_predict_a_checkpoint_in_float64(work, capsys, tmp_path):
    module = KANModule([2, 3, 1], init_seed=0, dtype="float64")
    trainer = pl.Trainer(max_steps=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(
        module, datamodule=FunctionDataModule("x1+x2", n_vars=2, train_num=16, test_num=4, dtype="float64")
    )
    trainer.save_checkpoint("m.ckpt")
    code, _, err = run(["predict", "m.ckpt", "--data", "data.csv", "-o", "pred.csv"], capsys)
    assert code == 0, err
    x = np.loadtxt("data.csv", delimiter=",", skiprows=1)[:, :2]
    want = module.model(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(np.loadtxt("pred.csv", delimiter=",", skiprows=1, ndmin=2), want, rtol=1e-15)


def test_predict_replaces_an_existing_output_and_reads_a_headerless_csv(work, capsys):
    np.savetxt("plain.csv", [[0.5, -0.5]], delimiter=",")
    Path("pred.csv").write_text("old\n")
    code, _, err = run(["predict", "model.kantk", "--data", "plain.csv", "-o", "pred.csv"], capsys)
    assert code == 0, err
    want = work(torch.tensor([[0.5, -0.5]])).detach().double().numpy()
    np.testing.assert_allclose(np.loadtxt("pred.csv", delimiter=",", skiprows=1, ndmin=2), want, rtol=1e-6)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["predict", "model.kantk", "--data", "data.csv", "-o", "data.csv"], "is the input file"),
        (["predict", "model.kantk", "--data", "data.csv", "-o", "model.kantk"], "is the input file"),
        (["predict", "model.kantk", "--data", "missing.csv", "-o", "p.csv"], "no CSV file"),
        (["predict", "missing.kantk", "--data", "data.csv", "-o", "p.csv"], "no model file"),
        (["predict", "model.kantk", "--data", "one.csv", "-o", "p.csv"], "has 1 columns; the model needs 2"),
        (["predict", "model.kantk", "--data", "binary.csv", "-o", "p.csv"], "binary file"),
        (["predict", "model.kantk", "--data", "nan.csv", "-o", "p.csv"], "NaN or infinite"),
        (  # a float32 model turned 1e300 into inf and wrote NaN outputs, exit 0
            ["predict", "model.kantk", "--data", "huge.csv", "-o", "p.csv"],
            "'huge.csv': data row 2 (a header row not counted), column 1: 1e+300 is past the model's float32",
        ),
        (["predict", "data.csv", "--data", "data.csv", "-o", "p.csv"], "cannot load"),
        (["predict", "model.kantk", "--data", "data.csv", "-o", "."], "is a folder"),
        (["predict", "model.kantk", "--data", "data.csv", "-o", "nowhere/p.csv"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(work, capsys, argv, match):
    np.savetxt("one.csv", [[0.1], [0.2]], delimiter=",")
    Path("binary.csv").write_bytes(b"\0\1\2")
    Path("nan.csv").write_text("0.1,nan\n")
    Path("huge.csv").write_text("a,b\n0.1,0.2\n1e300,0.2\n")
    before = {name: Path(name).read_bytes() for name in os.listdir() if os.path.isfile(name)}
    code, out, err = run(argv, capsys)
    assert code == 1 and out == ""
    one_error_line(err, match)
    assert {name: Path(name).read_bytes() for name in os.listdir() if os.path.isfile(name)} == before


def test_a_value_past_the_dtype_is_named_by_its_file_column(work, capsys):
    model = kantk.KAN([2, 3, 1], seed=0)
    model.input_columns = [0, 2]  # pruned with prune_inputs: the file's columns 1 and 3
    kantk.save(model, "pruned.kantk")
    Path("d.csv").write_text("a,b,c\n0.1,0.2,0.3\n0.1,0.2,1e300\n")
    code, _, err = run(["predict", "pruned.kantk", "--data", "d.csv", "-o", "p.csv"], capsys)
    assert code == 1
    one_error_line(err, "data row 2 (a header row not counted), column 3: 1e+300")


def test_outputs_the_model_makes_nan_are_written_with_a_warning(work, capsys):
    from kantk.symbolic.api import fix_symbolic

    model = kantk.KAN([1, 1], seed=0)
    fix_symbolic(model, 0, 0, 0, "log", fit_params=False)
    with torch.no_grad():
        model.layers[0].symbolic_affine[0, 0] = torch.tensor([1.0, 0.0, 1.0, 0.0])  # log(x)
    kantk.save(model, "log.kantk")
    Path("signs.csv").write_text("x\n0.5\n-0.5\n2\n")
    code, out, err = run(["predict", "log.kantk", "--data", "signs.csv", "-o", "p.csv"], capsys)
    assert code == 0 and "wrote p.csv" in out
    assert err.strip() == (
        "kantk: warning: the model's outputs are NaN or infinite on 1 of 3 rows (first: data row 2, "
        "a header row not counted); they are written as nan/inf"
    )
    written = np.loadtxt("p.csv", delimiter=",", skiprows=1)
    assert np.isnan(written[1]) and np.allclose(written[[0, 2]], np.log([0.5, 2.0]), rtol=1e-6)


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "model.kantk", "-o", "p.csv"],
        ["predict", "model.kantk", "--data", "data.csv"],
        ["predict", "--data", "data.csv", "-o", "p.csv"],
        ["predict", "model.kantk", "--data", "data.csv", "-o", "p.csv", "--bogus"],
    ],
)
def test_usage_errors_exit_2(work, capsys, argv):
    code, _, err = run(argv, capsys)
    assert code == 2
    one_error_line(err, "kantk: ")
    assert not os.path.exists("p.csv")


ARGS = st.lists(
    st.sampled_from(
        [
            "model.kantk",
            "data.csv",
            "pred.csv",
            "--data",
            "-o",
            "--output",
            "",
            ".",
            "nan",
            "-1",
            "--range",
            "missing.csv",
            "--help-me",
            "data.csv/",
            "model.kantk.ckpt",
        ]
    ),
    max_size=7,
)


@given(args=ARGS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_argument_lists_succeed_or_fail_in_one_line(work, capsys, args):
    inputs = {name: Path(name).read_bytes() for name in ("model.kantk", "data.csv")}
    code, _, err = run(["predict", *args], capsys)
    assert code in (0, 1, 2), (args, code, err)
    if code:
        one_error_line(err, "kantk: ")
    assert {name: Path(name).read_bytes() for name in inputs} == inputs  # never over an input


def test_kantk_predict_takes_fewer_rows_at_once_where_a_row_has_many_basis_values(monkeypatch):
    """Chunks were 65,536 rows whatever the model: an 8 MB Chebyshev model of degree 1,000,000 asked
    for 0.5 TB per chunk. A chunk holds at most MAX_SCORE_VALUES values."""
    import kantk.cli_models as cli_models

    monkeypatch.setattr(cli_models, "MAX_SCORE_VALUES", 1000)
    model = kantk.KAN([3, 4, 1], seed=0, basis_kwargs={"grid_size": 30})  # widest: 4 x 33 basis values
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: seen.append(x.shape[0]) or forward(x))
    x = torch.rand(50, 3)
    y = cli_models.predict_rows(model, x)
    assert max(seen) == 1000 // (4 * 33 + 4) and sum(seen) == 50
    with torch.no_grad():
        torch.testing.assert_close(y, forward(x))
