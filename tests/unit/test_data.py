from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from work_budget import call_budget

import kantk
from kantk.data import check_dataset, check_labels, create_dataset, load_csv, split_dataset

TOY = "exp(sin(pi*x1) + x2**2)"

#: Work budgets (function calls, tests/work_budget.py): about 10x the most a case needed when measured
#: (torch 2.13, sympy 1.14); reading a huge file or evaluating 9**9**9 would need orders of magnitude more.
CSV_CALLS = 5_000
REFUSAL_CALLS = 10_000


def toy(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:2] ** 2)


# --- create_dataset ----------------------------------------------------------------------------


def test_formula_dataset_has_pykan_layout_and_values():
    data = create_dataset(TOY, n_vars=2, train_num=50, test_num=30, seed=0)
    assert set(data) == {"train_input", "train_label", "test_input", "test_label"}
    assert data["train_input"].shape == (50, 2) and data["train_label"].shape == (50, 1)
    assert data["test_input"].shape == (30, 2) and data["test_label"].shape == (30, 1)
    assert all(t.dtype == torch.float32 for t in data.values())
    assert data["train_input"].min() >= -1 and data["train_input"].max() <= 1
    torch.testing.assert_close(data["train_label"], toy(data["train_input"]))


def test_follows_the_default_dtype_and_matches_a_seeded_torch_draw():
    torch.set_default_dtype(torch.float64)
    data = create_dataset(TOY, n_vars=2, train_num=100, test_num=100, seed=0)
    gen = torch.Generator().manual_seed(0)
    x_train = torch.rand(100, 2, generator=gen) * 2 - 1
    x_test = torch.rand(100, 2, generator=gen) * 2 - 1
    assert data["train_input"].dtype == torch.float64
    assert torch.equal(data["train_input"], x_train) and torch.equal(data["test_input"], x_test)
    torch.testing.assert_close(data["train_label"], toy(x_train), rtol=1e-14, atol=1e-14)


def test_seed_reproduces_and_changes_the_sample():
    a = create_dataset(TOY, 2, train_num=20, test_num=5, seed=1)
    b = create_dataset(TOY, 2, train_num=20, test_num=5, seed=1)
    c = create_dataset(TOY, 2, train_num=20, test_num=5, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["train_input"], c["train_input"])


def test_global_random_state_is_untouched():
    state = torch.get_rng_state()
    create_dataset(TOY, 2, train_num=10, test_num=10, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_callable_and_per_variable_ranges():
    data = create_dataset(lambda x: x[:, 0] * x[:, 1], 2, ranges=[(0, 1), (2, 3)], train_num=40, test_num=0)
    x = data["train_input"]
    assert (x[:, 0] >= 0).all() and (x[:, 0] <= 1).all() and (x[:, 1] >= 2).all() and (x[:, 1] <= 3).all()
    torch.testing.assert_close(data["train_label"], (x[:, 0] * x[:, 1]).unsqueeze(-1))
    assert data["test_input"].shape == (0, 2)


def test_list_of_formulas_gives_one_column_each():
    data = create_dataset(["x1", "x1*x2", "3"], 2, train_num=8, test_num=2)
    x, y = data["train_input"], data["train_label"]
    assert y.shape == (8, 3)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y[:, 1], x[:, 0] * x[:, 1])
    assert (y[:, 2] == 3).all()


@pytest.mark.parametrize("formula", ["jv(0, 20*x1)", "besselj(0, 20*x1)"])
def test_scipy_special_functions_by_scipy_or_sympy_name(formula):
    special = pytest.importorskip("scipy.special")
    torch.set_default_dtype(torch.float64)
    data = create_dataset(formula, 1, train_num=64, test_num=8)
    expected = special.jv(0, 20 * data["train_input"].numpy())
    torch.testing.assert_close(data["train_label"], torch.from_numpy(expected))


@pytest.mark.parametrize("formula", ["lpmv(0, x1, x2)", "jv(x1, x2)", "bessely(100*x1, x2 + 1)"])
def test_special_functions_with_variable_parameters_keep_scipy_values(formula):
    """pykan's special-function tasks take parameters as variables; within MAX_PARAMETER the
    labels are scipy's own values."""
    special = pytest.importorskip("scipy.special")
    torch.set_default_dtype(torch.float64)
    data = create_dataset(formula, 2, ranges=(0, 1), train_num=64, test_num=8)
    x, y = data["train_input"].numpy().T
    expected = {
        "lpmv(0, x1, x2)": lambda: special.lpmv(0, x, y),
        "jv(x1, x2)": lambda: special.jv(x, y),
        "bessely(100*x1, x2 + 1)": lambda: special.yv(100 * x, y + 1),
    }[formula]()
    torch.testing.assert_close(data["train_label"][:, 0], torch.from_numpy(expected), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("formula", "fragment"),
    [
        ("hyp1f1(1e6*x1, 1.5, -0.5)", "hyp1f1() got"),
        ("lpmv(0, 1e6*x1, x2)", "lpmv() got"),
        ("bessely(1e6*x1, x2)", "bessely() or yv() got"),
    ],
)
def test_variable_parameters_past_their_bound_are_refused_before_scipy(formula, fragment):
    """hyp1f1(1e9, 1.5, x1 - 1) cost 15 s per sample, and a dataset draws thousands: sample values
    past kantk.formula_parser.MAX_PARAMETER at such a position are a one-line error instead."""
    from kantk.formula_parser import MAX_PARAMETER

    with pytest.raises(ValueError, match="cannot evaluate formula") as info:
        create_dataset(formula, 2, ranges=(0.5, 1), train_num=64, test_num=0)
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message and f"[-{MAX_PARAMETER}, {MAX_PARAMETER}]" in message, message


def test_classification_formula_gives_int64_class_indices():
    data = create_dataset("x2 > sin(pi*x1)/2", 2, task="classification", train_num=200, test_num=50)
    y = data["train_label"]
    assert y.dtype == torch.int64 and y.shape == (200,)
    assert set(y.tolist()) == {0, 1}
    x = data["train_input"]
    assert torch.equal(y, (x[:, 1] > torch.sin(math.pi * x[:, 0]) / 2).long())


def test_normalisation_uses_training_statistics():
    data = create_dataset(
        TOY, 2, ranges=(2, 6), train_num=500, test_num=100, normalize_input=True, normalize_label=True
    )
    torch.testing.assert_close(data["train_input"].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(data["train_input"].std(0), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(data["train_label"].std(0), torch.ones(1), atol=1e-5, rtol=0)
    assert data["test_input"].abs().max() < 3  # same shift and scale, not its own


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"f": "foo(x1)"}, "unknown function 'foo'"),
        ({"f": "x3 + 1"}, "unknown variable(s) x3; the variables are x1..x2"),
        ({"f": "x1 +* 2"}, "cannot parse formula"),
        ({"f": "sin(x1"}, "cannot parse formula"),
        ({"f": "1/0*x1"}, "is not a finite number (a division by zero"),
        ({"f": "'text'"}, "is not an expression"),
        ({"f": "log(x1)"}, "NaN or infinite"),
        ({"f": TOY, "ranges": (1, -1)}, "low < high"),
        ({"f": TOY, "ranges": [(0, 1)]}, "1 pairs but n_vars=2"),
        ({"f": TOY, "task": "regresion"}, "valid tasks: regression, classification"),
        ({"f": TOY, "train_num": 0}, "train_num must be an int >= 1"),
        ({"f": TOY, "test_num": True}, "test_num must be an int >= 0, got True"),
    ],
)
def test_bad_arguments_say_what_is_accepted(kwargs, message):
    kwargs = {"n_vars": 2, **kwargs}
    with pytest.raises(ValueError) as info:
        create_dataset(**kwargs)
    assert message in str(info.value)


# --- user arrays and CSV -----------------------------------------------------------------------


def test_numpy_integer_counts_are_accepted():
    data = create_dataset(TOY, n_vars=np.int64(2), train_num=np.int32(5), test_num=np.int64(0))
    assert data["train_input"].shape == (5, 2) and data["test_input"].shape == (0, 2)


def test_split_dataset_shuffles_and_holds_out_a_fraction():
    x = torch.arange(20.0).reshape(10, 2)
    y = x.sum(1)  # (N,) floats become (N, 1)
    data = split_dataset(x, y, test_fraction=0.3, seed=0)
    assert data["train_input"].shape == (7, 2) and data["test_input"].shape == (3, 2)
    assert data["train_label"].shape == (7, 1)
    torch.testing.assert_close(data["train_label"][:, 0], data["train_input"].sum(1))
    rows = torch.cat([data["train_input"], data["test_input"]])
    assert sorted(rows[:, 0].tolist()) == x[:, 0].tolist()


def test_load_csv_with_header_and_named_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,target\n" + "\n".join(f"{i},{2 * i},{3 * i}" for i in range(10)) + "\n")
    data = load_csv(path, label_columns="target", test_fraction=0.2)
    assert data["train_input"].shape == (8, 2) and data["train_label"].shape == (8, 1)
    torch.testing.assert_close(data["train_label"][:, 0], 3 * data["train_input"][:, 0])


def test_load_csv_without_header_classification(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(f"{i / 10};{i % 2}" for i in range(10)))
    data = load_csv(path, label_columns=1, delimiter=";", classification=True, test_fraction=0)
    assert data["train_label"].dtype == torch.int64 and data["train_label"].shape == (10,)


def test_load_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv")
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match="no column named 'c'; columns: a, b"):
        load_csv(path, label_columns="c")
    path.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(ValueError, match="numbers only"):
        load_csv(path)


def test_formula_strings_never_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for formula in ("__import__('os').system('touch PWNED')", "x1+__import__('os').system('touch PWNED')"):
        with pytest.raises(ValueError, match="attribute access"):
            create_dataset(formula, n_vars=1)
    with call_budget(REFUSAL_CALLS, "9**9**9"), pytest.raises(ValueError, match="numeric exponents"):
        create_dataset("9**9**9", n_vars=1)
    with (
        call_budget(REFUSAL_CALLS, "x1+x1+..."),
        pytest.raises(ValueError, match="formula is too long") as info,
    ):
        create_dataset("+".join(["x1"] * 10_000), n_vars=1)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_formula_is_checked_before_anything_is_allocated():
    with pytest.raises(ValueError, match="unknown variable"):  # not a (1000, 10**12) sample first
        create_dataset("x1 + y", n_vars=10**12)
    data = create_dataset("x2", n_vars=3, train_num=4, test_num=0)  # lambdified over x2 alone
    torch.testing.assert_close(data["train_label"][:, 0], data["train_input"][:, 1])


CSV_ERRORS = [
    (b"a,b\n", {}, "has a header row (a, b) but no data rows"),
    (b"a,b\n\n  \n", {}, "has a header row (a, b) but no data rows"),
    (
        b'"\x01\n\x01',
        {},
        "has a header row (\\x01\\n\\x01) but no data rows",
    ),  # a quoted cell's newline stays escaped
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "looks like a binary file"),
    (b"1,2\n\xff\xfe,3\n", {}, "is not UTF-8 text"),
    (b"1,2\n3,4\n", {"label_columns": 1.5}, "label_columns must be a column index (int), a header name"),
    (b"1,2\n3,4\n", {"label_columns": True}, "got True"),
    (b"1,2\n3,4\n", {"label_columns": [0, False]}, "label_columns must be"),
    (b"1,2\n3,4\n", {"label_columns": []}, "non-empty list"),
    (b"1,2\n3,4\n", {"label_columns": None}, "got None"),
    (b"1,2,3\n3,4,5\n", {"label_columns": [1, 1]}, "name column 1 more than once"),
    (b"1,2,3\n3,4,5\n", {"label_columns": [2, -1]}, "name column 2 more than once"),
    (b"a,a,b\n1,2,3\n", {"label_columns": "a"}, "has 2 columns named 'a'; select the label column by index"),
    (b"1,2\n3,4\n", {"label_columns": [0, 1]}, "need at least one input and one label column"),
    (b"1,2\n3,4\n", {"label_columns": 5}, "label column 5 out of range for 2 columns"),
    (b"a,b,c\n1,2,3\n4,5\n", {}, "line 3 has 2 fields but the header has 3"),
    (b"1,2\n3,4,5\n", {}, "line 2 has 3 fields but the first row has 2"),
    (b"a,b\n1,2\n3,\n", {}, "line 3, column 2 is ''"),
    (
        b"1,2\n" + b"7" * 200_000 + b",1\n",
        {},
        "cannot be read as CSV at line 2: field larger than field limit",
    ),
    (b"1,2\n3,4\n", {"delimiter": ";;"}, "delimiter must be one character"),
]


@pytest.mark.parametrize(("content", "kwargs", "message"), CSV_ERRORS)
def test_load_csv_gives_one_line_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_csv(path, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert (
        str(path) in str(info.value) or "label_columns" in str(info.value) or "delimiter" in str(info.value)
    )


def test_load_csv_accepts_numpy_indices_duplicate_names_by_index_and_a_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,a,b\n1,2,3\n4,5,6\n")
    data = load_csv(path, label_columns=np.int64(1), test_fraction=0)
    assert sorted(data["train_label"][:, 0].tolist()) == [2.0, 5.0]
    path.write_bytes("\ufeff1,2\n3,4\n".encode())  # a UTF-8 byte-order mark is not a header
    assert load_csv(path, test_fraction=0)["train_input"].shape == (2, 1)


def _csv_table(draw: st.DrawFn) -> tuple[np.ndarray, list[str] | None]:
    rows, cols = draw(st.integers(1, 12)), draw(st.integers(2, 5))
    values = draw(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=rows * cols, max_size=rows * cols)
    )
    names = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
                min_size=cols,
                max_size=cols,
                unique=True,
            ),
        )
    )
    return np.array(values, dtype=np.float64).reshape(rows, cols), names


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.composite(_csv_table)(), st.data())
def test_load_csv_round_trips_any_numeric_table(tmp_path, table_names, data):
    table, names = table_names
    label = data.draw(st.integers(-table.shape[1], table.shape[1] - 1))
    path = tmp_path / "t.csv"
    lines = ([",".join(names)] if names else []) + [",".join(repr(float(v)) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    by = names[label] if names and data.draw(st.booleans()) else label
    got = load_csv(path, label_columns=by, test_fraction=0, dtype=torch.float64)
    inputs = np.delete(table, label % table.shape[1], axis=1)
    order = np.lexsort(got["train_input"].numpy().T[::-1])
    want_order = np.lexsort(inputs.T[::-1])
    np.testing.assert_array_equal(got["train_input"].numpy()[order], inputs[want_order])
    assert got["train_label"].shape == (table.shape[0], 1)


LABEL_COLUMNS = st.one_of(
    st.integers(-4, 4),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.binary(max_size=2),
    st.lists(st.one_of(st.integers(-4, 4), st.text(max_size=2), st.booleans(), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=1), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.text(alphabet='0123456789.,-+e \n\r\tnaif"', max_size=200).map(str.encode),
    ),
    LABEL_COLUMNS,
)
def test_load_csv_on_any_bytes_returns_a_dataset_or_raises_value_error(tmp_path, content, label_columns):
    path = tmp_path / "any.csv"
    path.write_bytes(content)
    with call_budget(CSV_CALLS, "load_csv"):
        try:
            data = load_csv(path, label_columns=label_columns)
        except ValueError as exc:
            data = None
            assert "\n" not in str(exc)
    if data is not None:
        assert set(data) == {"train_input", "train_label", "test_input", "test_label"}


# --- check_dataset -----------------------------------------------------------------------------


def _data(n=8, n_in=2, n_out=1):
    return {
        "train_input": torch.zeros(n, n_in),
        "train_label": torch.zeros(n, n_out),
        "test_input": torch.zeros(4, n_in),
        "test_label": torch.zeros(4, n_out),
    }


def test_nan_and_inf_are_reported_with_tensor_name_and_count():
    data = _data()
    data["train_input"][0, 0] = float("nan")
    data["train_input"][3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"train_input contains 2 NaN and 0 infinite value\(s\) out of 16"):
        check_dataset(data)
    data = _data()
    data["test_label"][1, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"test_label contains 0 NaN and 1 infinite"):
        check_dataset(data)


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda d: d.pop("train_label"), {}, "missing train_label"),
        (lambda d: d.pop("test_label"), {}, "both test_input and test_label, or neither"),
        (lambda d: d.update(train_label=torch.zeros(7, 1)), {}, "8 samples but train_label has 7"),
        (
            lambda d: d.update(test_input=torch.zeros(4, 3)),
            {},
            "train_input has 2 features but test_input has 3",
        ),
        (lambda d: None, {"n_inputs": 3}, "the model expects 3"),
        (
            lambda d: d.update(train_label=torch.zeros(8), test_label=torch.zeros(4)),
            {"n_outputs": 1},
            "reshape with y.unsqueeze",
        ),
        (lambda d: None, {"n_outputs": 2}, "model outputs (samples, 2)"),
        (lambda d: d.update(train_label=torch.zeros(8)), {}, "the label shapes must agree"),
        (lambda d: d.update(train_input=torch.zeros(8, 2, 1)), {}, "must be 2-D"),
    ],
)
def test_shape_problems_are_clear_errors(change, kwargs, message):
    data = _data()
    change(data)
    with pytest.raises(ValueError) as info:
        check_dataset(data, **kwargs)
    assert message in str(info.value)


def test_check_dataset_does_not_change_the_callers_dict():
    data = _data()
    data["train_input"] = data["train_input"].numpy()  # array-likes are accepted
    out = check_dataset(data)
    assert isinstance(out["train_input"], torch.Tensor)
    assert not isinstance(data["train_input"], torch.Tensor)


def test_class_labels_must_fit_the_output_width():
    y = torch.tensor([0, 1, 2])
    assert torch.equal(check_labels(y.unsqueeze(-1).float(), 3, True), y)
    with pytest.raises(ValueError, match="holds class 2 but the model has 2 outputs"):
        check_labels(y, 2, True)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        check_labels(y, 1, False)


def test_public_names():
    assert kantk.create_dataset is create_dataset
    assert kantk.check_dataset is check_dataset
    assert kantk.load_csv is load_csv and kantk.split_dataset is split_dataset


def test_header_names_become_variable_names(tmp_path):
    from kantk.data import read_csv

    path = tmp_path / "d.csv"
    path.write_text(
        "mass,speed,energy\n" + "\n".join(f"{i},{i + 1},{i * (i + 1) ** 2 / 2}" for i in range(10))
    )
    data = load_csv(path, test_fraction=0.2)
    assert data.input_names == ["mass", "speed"] and data.label_names == ["energy"]
    assert data["train_input"].shape == (8, 2)  # still the plain four-tensor dict
    table = read_csv(path)
    assert table.names == ["mass", "speed", "energy"] and table.values.shape == (10, 3)
    path.write_text("1,2\n3,4\n")
    assert load_csv(path, test_fraction=0).input_names is None  # no header: default names apply
    path.write_text("a,a,y\n1,2,3\n4,5,6\n")
    assert load_csv(path, test_fraction=0).input_names is None  # repeated names cannot name variables


def test_the_one_reader_refuses_non_finite_values_with_line_and_column(tmp_path):
    from kantk.data import read_csv

    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,inf\n")
    with pytest.raises(ValueError, match="NaN or infinite values: line 3, column 2"):
        read_csv(path)


def test_every_command_reads_data_with_the_one_reader(tmp_path):
    import argparse

    from kantk import cli_models

    path = tmp_path / "d.csv"
    path.write_text("p,q,label\n0.1,0.2,1\n0.3,0.4,2\n")
    model = kantk.KAN([2, 1], seed=0)
    args = argparse.Namespace(data=str(path), var_names=None, range=(-1.0, 1.0), samples=10, seed=0)
    assert cli_models.samples(args, model).shape == (2, 2)
    assert cli_models.var_names(args, model) == ["p", "q"]
    args.var_names = ["u", "v"]
    assert cli_models.var_names(args, model) == ["u", "v"]  # --var-names wins over the header


@pytest.mark.parametrize(
    "formula",
    [
        "x1 + erfc(1e300)",  # sympy's printer evaluates the constant: OverflowError in mpmath
        "x1 + floor(exp(700))",  # PrecisionExhausted
        "x1 + acot(0)",  # printed as an AccumBounds that numpy cannot print
    ],
)
def test_create_dataset_turns_what_sympy_cannot_compile_into_a_one_line_error(formula):
    from kantk.formula_parser import FormulaError

    with (
        call_budget(2_000_000, formula),
        pytest.raises(FormulaError, match="cannot evaluate formula") as info,
    ):
        create_dataset(formula, n_vars=1, train_num=4, test_num=0)
    assert "\n" not in str(info.value)


def test_a_first_row_mixing_numbers_with_text_or_blanks_is_data_not_a_header(tmp_path):
    """`0.1,` (a blank cell) or `0.3,x` (a typo) as the first row was taken for a header: one row
    too few, silently. A header holds no number (pandas' `,a,b` index header still is one)."""
    from kantk.data import read_csv

    for first, fragment in (("0.1,", "line 1, column 2 is ''"), ("0.3,x", "line 1, column 2 is 'x'")):
        path = tmp_path / "d.csv"
        path.write_text(f"{first}\n0.3,0.4\n")
        with pytest.raises(ValueError, match=fragment):
            read_csv(path)
    (tmp_path / "pandas.csv").write_text(",a,b\n0,0.1,0.2\n1,0.3,0.4\n")
    table = read_csv(tmp_path / "pandas.csv")
    assert table.names == ["", "a", "b"] and table.values.shape == (2, 3)


def test_read_csv_numbers_lines_and_bytes_are_exact(tmp_path):
    """float() took "1_000" and "١٢" (Arabic-Indic digits) for numbers and "nan,x,y" for data; a
    quoted cell over two lines was reported at the line where it ended; the byte offset of a
    non-UTF-8 byte counted from the decoder's chunk, not the file."""
    from kantk.data import read_csv

    for cell in ("1_000", "١٢"):
        (tmp_path / "n.csv").write_text(f"1,2\n{cell},3\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"line 2, column 1 is"):
            read_csv(tmp_path / "n.csv")
    (tmp_path / "h.csv").write_text("nan,x,y\n1,2,3\n")
    assert read_csv(tmp_path / "h.csv").names == ["nan", "x", "y"]
    (tmp_path / "q.csv").write_text('1,2\n"a\nb",4\n')
    with pytest.raises(ValueError, match=r"line 2, column 1 is"):
        read_csv(tmp_path / "q.csv")
    rows = "".join(f"{i},{i}\n" for i in range(5000)).encode()
    (tmp_path / "u.csv").write_bytes(rows + b"1,\xe9\n")
    with pytest.raises(ValueError, match=rf"byte 0xe9 at line 5001, byte {len(rows) + 2} of the file"):
        read_csv(tmp_path / "u.csv")
    table = read_csv(tmp_path / "h.csv")
    assert table.values.dtype == np.float64 and table.values.tolist() == [[1.0, 2.0, 3.0]]


def test_data_helpers_answer_in_one_line_and_take_arrays(tmp_path):
    from kantk.data import load_csv

    ds = create_dataset(
        "x1 + x2", n_vars=2, train_num=8, test_num=2, ranges=np.array([[0.0, 1.0], [2.0, 3.0]])
    )
    assert float(ds["train_input"][:, 1].min()) >= 2.0  # a numpy array of pairs is taken
    (tmp_path / "h.csv").write_text('"a\nb",y\n1,2\n3,4\n')
    with pytest.raises(ValueError) as info:
        load_csv(tmp_path / "h.csv", "z")
    assert "\n" not in str(info.value) and "a\\nb" in str(info.value)
    (tmp_path / "c.csv").write_text("1,0\n2,1e20\n3,1\n")  # a label past int64 read as -2**63
    with pytest.raises(ValueError, match=r"class labels must be whole numbers from 0 to 1000000, got 1e\+20"):
        load_csv(tmp_path / "c.csv", classification=True)


def test_an_atomic_replacement_keeps_the_files_permissions(tmp_path):
    """A private (600) output became world-readable (644) when kantk predict replaced it."""
    import stat

    from kantk.export import atomic_path

    target = tmp_path / "out.csv"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_long_cell_is_refused_at_once(tmp_path):
    """The number pattern tried every split of a run of digits between its two digit groups: a
    20 KB cell of digits and one letter took 29 s to refuse (quadratic), a 130 KB one minutes."""
    from kantk.data import read_csv

    path = tmp_path / "long.csv"
    path.write_text("0.1,0.2," + "1" * 100_000 + "x\n")
    with pytest.raises(ValueError, match="line 1, column 3"):
        read_csv(path)


def test_a_first_row_of_nan_or_inf_is_data_to_refuse_not_a_header(tmp_path):
    """nan,nan,nan was taken for a header: a row of the file silently went missing."""
    from kantk.data import read_csv

    path = tmp_path / "nan.csv"
    path.write_text("nan,inf,-Infinity\n0.1,0.2,0.3\n")
    with pytest.raises(ValueError, match="NaN or infinite values: line 1, column 1"):
        read_csv(path)


def test_another_separator_is_named(tmp_path):
    from kantk.data import read_csv

    (tmp_path / "one.csv").write_text("0.1;0.2;0.3\n")
    with pytest.raises(ValueError, match="this one holds semicolons"):
        read_csv(tmp_path / "one.csv")
    (tmp_path / "two.csv").write_text("x\ty\n0.1\t0.2\n")
    with pytest.raises(ValueError, match=r"line 2, column 1 is .* this one holds tabs"):
        read_csv(tmp_path / "two.csv")
    (tmp_path / "three.csv").write_text("x,y\n0.1,0.2\n")
    with pytest.raises(ValueError, match="separated by tabs; this one holds commas"):
        read_csv(tmp_path / "three.csv", delimiter="\t")


def test_labels_and_ranges_past_the_dtype_are_refused():
    """The labels were checked in float64 and then cast: (x1 + 1)**200 gave 20 of 100 float32 labels
    inf; ranges of +-1e308 gave every input inf or NaN (high - low overflows)."""
    with pytest.raises(ValueError, match=r"NaN or infinite value\(s\) in torch.float32 \(past \+-3.4e\+38\)"):
        kantk.create_dataset("(x1 + 1)**200 + x2", 2, train_num=100, test_num=10, dtype=torch.float32)
    data = kantk.create_dataset("(x1 + 1)**200 + x2", 2, train_num=100, test_num=10, dtype=torch.float64)
    assert bool(torch.isfinite(data["train_label"]).all())
    for ranges, dtype in (((-1e308, 1e308), torch.float64), ((-3e38, 3e38), torch.float32)):
        with pytest.raises(ValueError, match=rf"do not fit {dtype}: each low, high and high - low") as info:
            kantk.create_dataset("x1", 1, ranges=ranges, train_num=10, test_num=2, dtype=dtype)
        assert "\n" not in str(info.value)


def test_create_dataset_bounds_what_it_draws_before_allocating():
    """A config's n_vars: 1000000000 asked for terabytes; the process was killed."""
    from kantk.data import MAX_DATASET_VALUES

    with pytest.raises(
        ValueError, match=r"= 2,000,000,000,000 input values, more than create_dataset draws"
    ) as info:
        kantk.create_dataset(lambda x: x[:, 0], 10**9, train_num=1000, test_num=1000)
    assert "\n" not in str(info.value) and MAX_DATASET_VALUES == 2**28


def test_read_csv_refuses_a_fifo_and_a_folder(tmp_path):
    """A config's CSVDataModule path naming a FIFO blocked kantk fit in open() forever."""
    import os

    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(ValueError, match=r"fifo.csv' is not a regular file \(a CSV file is needed\)"):
        kantk.data.read_csv(tmp_path / "fifo.csv")
    with pytest.raises(ValueError, match="is a folder, not a CSV file"):
        kantk.data.read_csv(tmp_path)
