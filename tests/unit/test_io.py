from __future__ import annotations

import copy
import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file
from work_budget import call_budget

import kantk
from kantk import io as kio
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


# --- issue 16: untrusted model files ------------------------------------------------------------


#: Most function calls a refusal may make (tests/work_budget.py): about 10x the most a case needed when
#: measured (torch 2.13); a refusal that started building what the file asks for would need far more.
REFUSAL_CALLS = 100_000


@pytest.fixture
def saved(tmp_path):
    """A small valid model file, its config and its tensors."""
    model = kantk.KAN([2, 3, 1], seed=0)
    path = tmp_path / "good.kantk"
    kantk.save(model, path)
    # loaded once: the plugin registry and lazy imports of a process's first load (1.5 million
    # calls) are not the refusals' work (the first case run alone went over its call budget)
    kantk.load(path)
    with safe_open(str(path), "pt") as f:
        config = json.loads(f.metadata()[CONFIG_KEY])
    return path, config, load_file(str(path))


def _write(path, config, tensors):
    text = config if isinstance(config, str) else json.dumps(config)
    save_file(tensors, str(path), metadata={FORMAT_KEY: "1", CONFIG_KEY: text})
    return path


def _refused(path, *fragments, calls=REFUSAL_CALLS):
    before = path.read_bytes()
    with call_budget(calls, f"refusing {path.name}"), pytest.raises(kantk.KantkFileError) as info:
        kantk.load(path)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert path.read_bytes() == before  # the file is never touched
    return str(info.value)


def _nested(depth):
    value: list = [5]
    for _ in range(depth):
        value = [value]
    return value


def _with(config, mutate):
    config = copy.deepcopy(config)
    mutate(config)
    return config


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        # the issue's examples: each took 40-96 s and up to 10 GB before
        (
            lambda c: c["layers"][0]["basis_kwargs"].update(grid_size=10**8),
            ["layers[0].basis_kwargs", "layers.0.coef"],
        ),
        (lambda c: c["layers"][0]["basis_kwargs"].update(grid_size=10**15), ["layers[0].basis_kwargs"]),
        (
            lambda c: c["layers"][0]["basis_kwargs"].update(grid_size=1e8),
            ["layers[0].basis_kwargs", "grid_size"],
        ),
        (
            lambda c: c["layers"][0]["basis_kwargs"].update(order=10**9),
            ["layers[0].basis_kwargs", "MAX_ORDER"],
        ),
        # a 10 KB file of order 800 took 7 s per forward pass (the cost grows as order**2 to **3)
        (
            lambda c: c["layers"][0]["basis_kwargs"].update(order=800),
            ["layers[0].basis_kwargs", "from 0 to 30 (MAX_ORDER)"],
        ),
        (lambda c: c.update(widths=[2, 3e7, 1]), ["widths[1]"]),
        (lambda c: c.update(widths=[2, 30_000_000, 1]), ["layers[0].out_features"]),
        (lambda c: c.update(widths=[2] * 100_001, layers=[{"basis": "rbf"}] * 100_000), ["widths", "1001"]),
        # wrong JSON types
        (lambda c: c.update(widths="2,3,1"), ["widths"]),
        (lambda c: c.update(widths=[2, "3", 1]), ["widths[1]"]),
        (lambda c: c.update(widths=[2, True, 1]), ["widths[1]"]),
        (lambda c: c.update(widths=[2, 0, 1]), ["widths[1]"]),
        (lambda c: c.update(layers={"0": {}}), ["field layers "]),
        (lambda c: c["layers"].__setitem__(1, ["bspline"]), ["layers[1] must be an object"]),
        (lambda c: c["layers"][0].update(basis=7), ["layers[0].basis"]),
        (lambda c: c["layers"][0].update(basis_kwargs=[5, 3]), ["layers[0].basis_kwargs"]),
        (lambda c: c["layers"][0]["basis_kwargs"].update(grid_range="wide"), ["layers[0].basis_kwargs"]),
        (lambda c: c["layers"][0]["basis_kwargs"].update(bogus=1), ["layers[0].basis_kwargs", "bogus"]),
        (lambda c: c["layers"][1].update(base_activation="relu"), ["layers[1].base_activation"]),
        (lambda c: c["layers"][1].update(in_features=4), ["layers[1].in_features"]),
        (lambda c: c.update(dtype=["float32"]), ["dtype"]),
        (lambda c: c.update(dtype="int64"), ["dtype"]),
        (lambda c: c["layers"][0]["basis_kwargs"].update(grid_size=_nested(40)), ["nested"]),
        (
            lambda c: c["layers"][0].update(symbolic={"functions": "x", "libraries": []}),
            ["layers[0].symbolic.functions"],
        ),
        (
            lambda c: c["layers"][1].update(
                symbolic={"functions": [[1, None, None]], "libraries": [["default"] * 3]}
            ),
            ["layers[1].symbolic.functions[0][0]"],
        ),
        (lambda c: c["layers"].append(c["layers"][1]), ["layers"]),
        # node operations: every count the spelling gives is bounded by MAX_NODES before any layout is built
        (lambda c: c.update(widths=[2, [0, 10**7], 1]), ["widths[1]", "each <= 1000000"]),
        (lambda c: c.update(widths=[2, {"sum": 1, "mult": 10**6 + 1}, 1]), ["widths[1]", "each <= 1000000"]),
        (
            lambda c: c.update(widths=[2, [0, 600_000], [0, 600_000], 1]),
            ["widths", "1200000 nodes", "in all"],
        ),
        (lambda c: c.update(widths=[2, [0, 1], 1], mult_arity=10**7), ["mult_arity"]),
        (lambda c: c.update(widths=[2, [0, 1], 1], mult_arity=[[], [True], []]), ["mult_arity"]),
        (
            lambda c: c.update(widths=[2, [0, 2], 1], mult_arity=[[], [10**6, 10**6], []]),
            ["widths[1]", "2000000 sub-nodes, more than 1000000"],
        ),
        (lambda c: c.update(widths=[2, 3, 1], mult_arity=2), ["mult_arity", "no product nodes"]),
        # the data columns of a model pruned with prune_inputs: one distinct column per input
        (lambda c: c.update(input_columns=[0]), ["field input_columns", "2 distinct column numbers"]),
        (lambda c: c.update(input_columns=[3, 3]), ["field input_columns"]),
        (lambda c: c.update(input_columns=[0, -1]), ["field input_columns"]),
        (lambda c: c.update(input_columns=[0, 10**12]), ["field input_columns", "999999"]),
        (lambda c: c.update(input_columns=[0, True]), ["field input_columns"]),
        (lambda c: c.update(input_columns="0,2"), ["field input_columns"]),
        (lambda c: c.update(column_names=["a"]), ["field column_names", "2 distinct names"]),
        (lambda c: c.update(column_names=["a", "a"]), ["field column_names"]),
        (lambda c: c.update(column_names=["a", ""]), ["field column_names"]),
        (lambda c: c.update(column_names=["a", "b" * 101]), ["field column_names", "1 to 100"]),
        (lambda c: c.update(column_names=["a", "b\nc"]), ["field column_names"]),
        (lambda c: c.update(column_names=["a", 2]), ["field column_names"]),
        (lambda c: c.update(column_names="ab"), ["field column_names"]),
    ],
)
def test_bad_configs_are_refused_fast_naming_the_field(saved, tmp_path, mutate, fragments):
    _, config, tensors = saved
    bad = _with(config, mutate)
    # Reading the config is linear in its size (its nesting depth is measured over every JSON value,
    # about 15 calls per value): the 100,000-layer case gets that on top of the flat budget.
    calls = REFUSAL_CALLS + 2 * len(json.dumps(bad))
    _refused(_write(tmp_path / "bad.kantk", bad, tensors), *fragments, calls=calls)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[1, 2]", "must be a JSON object, got list"),
        ('"widths"', "must be a JSON object, got str"),
        ("null", "must be a JSON object"),
        ('{"widths": ' + "[" * 100_000 + "]" * 100_000 + "}", "damaged kantk config"),
        ('{"widths": [2, NaN]}', "damaged kantk config"),
        ("{not json", "damaged kantk config"),
    ],
)
def test_config_that_is_not_a_json_object_is_refused(saved, tmp_path, text, fragment):
    _, _, tensors = saved
    _refused(_write(tmp_path / "bad.kantk", text, tensors), fragment)


def test_a_basis_nobody_provides_is_both_a_file_error_and_an_unknown_component(saved, tmp_path):
    _, config, tensors = saved
    bad = _write(
        tmp_path / "bad.kantk", _with(config, lambda c: c["layers"][0].update(basis="wavelet9")), tensors
    )
    with pytest.raises(kantk.KantkFileError, match="wavelet9") as info:
        kantk.load(bad)
    assert isinstance(info.value, kantk.UnknownComponentError)


def test_a_node_operation_nobody_provides_is_a_missing_plugin(saved, tmp_path):
    _, config, tensors = saved
    spelled = _with(config, lambda c: c.update(widths=[2, {"sum": 2, "max": 1}, 1]))
    with pytest.raises(kio.MissingPluginError, match="unknown node operation 'max'") as info:
        kantk.load(_write(tmp_path / "bad.kantk", spelled, tensors))
    assert isinstance(info.value, kantk.KantkFileError) and isinstance(
        info.value, kantk.UnknownComponentError
    )


def _set(tensors, key, fill):
    tensors = dict(tensors)
    tensors[key] = tensors[key].clone()
    fill(tensors[key])
    return tensors


@pytest.mark.parametrize(
    ("key", "fill", "fragment"),
    [
        ("layers.0.coef", lambda t: t.view(-1)[3].fill_(float("nan")), "NaN or infinite"),
        ("layers.1.scale_base", lambda t: t.view(-1)[0].fill_(float("inf")), "NaN or infinite"),
        ("layers.0.basis.grid", lambda t: t.view(-1)[-1].fill_(float("-inf")), "NaN or infinite"),
        ("layers.1.mask", lambda t: t.view(-1)[0].fill_(7.0), "other than 0 and 1"),
        ("layers.1.mask", lambda t: t.view(-1)[0].fill_(0.5), "other than 0 and 1"),
        ("layers.0.basis.grid", lambda t: t.copy_(t.flip(-1)), "decrease"),
        ("layers.0.basis.grid", lambda t: t.fill_(0.25), "zero span"),
        # float32 knots 1e-44 apart: 1 / spacing is finite in float64, infinite in float32 (the
        # model's dtype), where every output was NaN
        ("layers.0.basis.grid", lambda t: t.mul_(1e-44), "span is too small"),
    ],
)
def test_impossible_tensors_are_refused_naming_the_tensor(saved, tmp_path, key, fill, fragment):
    _, config, tensors = saved
    _refused(_write(tmp_path / "bad.kantk", config, _set(tensors, key, fill)), repr(key), fragment)


@pytest.mark.parametrize(
    ("key", "stored", "fill", "fragment"),
    [
        ("layers.0.coef", torch.float64, lambda t: t.view(-1)[0].fill_(1e300), "NaN or infinite"),
        ("layers.0.basis.grid", torch.float64, lambda t: t.mul_(1e-41), "span is too small"),
        ("layers.0.coef", torch.float16, lambda t: t.view(-1)[0].fill_(float("inf")), "NaN or infinite"),
    ],
)
def test_values_are_checked_in_the_dtype_the_model_gets(saved, tmp_path, key, stored, fill, fragment):
    """A float32 model's tensor stored as float64 was checked in float64 and cast when loaded:
    1e300 became inf, and knots 1e-41 apart (past the float32 span check) gave NaN outputs."""
    _, config, tensors = saved
    tensors = dict(tensors)
    tensors[key] = tensors[key].to(stored)
    tensors = _set(tensors, key, fill)
    _refused(_write(tmp_path / "bad.kantk", config, tensors), repr(key), fragment)
    # a float16 value that is fine in float16 and in float32 loads, as float32
    tensors = dict(load_file(str(saved[0])))
    tensors["layers.0.coef"] = tensors["layers.0.coef"].half()
    loaded = kantk.load(_write(tmp_path / "half.kantk", config, tensors))
    assert loaded.layers[0].coef.dtype == torch.float32


@pytest.mark.parametrize(
    ("basis", "kwargs", "key", "fill", "fragment"),
    [
        ("chebyshev", {"degree": 3}, "layers.0.basis.halfwidth", lambda t: t.fill_(0.0), "not > 0"),
        ("chebyshev", {"degree": 3}, "layers.0.basis.halfwidth", lambda t: t.fill_(1e-44), "too small"),
        ("rbf", {"num_centers": 4}, "layers.1.basis.width", lambda t: t.view(-1)[0].fill_(-1.0), "not > 0"),
        (
            "rbf",
            {"num_centers": 4},
            "layers.0.basis.centers",
            lambda t: t.view(-1)[0].fill_(float("nan")),
            "NaN",
        ),
    ],
)
def test_impossible_buffers_of_other_bases(tmp_path, basis, kwargs, key, fill, fragment):
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 3, 1], basis=basis, basis_kwargs=kwargs, seed=0), path)
    with safe_open(str(path), "pt") as f:
        config = json.loads(f.metadata()[CONFIG_KEY])
    tensors = _set(load_file(str(path)), key, fill)
    _refused(_write(tmp_path / "bad.kantk", config, tensors), repr(key), fragment)


def test_symbolic_masks_are_checked_too(tmp_path):
    model = kantk.KAN([2, 1], seed=0)
    kantk.fix_symbolic(model, 0, 0, 0, "sin", fit_params=False)
    path = tmp_path / "sym.kantk"
    kantk.save(model, path)
    assert kantk.load(path).layers[0].symbolic_names[0][0] == "sin"
    with safe_open(str(path), "pt") as f:
        config = json.loads(f.metadata()[CONFIG_KEY])
    tensors = _set(load_file(str(path)), "layers.0.symbolic_mask", lambda t: t.fill_(3.0))
    _refused(_write(tmp_path / "bad.kantk", config, tensors), "'layers.0.symbolic_mask'", "0 and 1")
    no_affine = {k: v for k, v in load_file(str(path)).items() if k != "layers.0.symbolic_affine"}
    _refused(_write(tmp_path / "bad2.kantk", config, no_affine), "'layers.0.symbolic_affine'", "missing")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda t: t.pop("layers.1.scale_sp"), "'layers.1.scale_sp' is missing"),
        (lambda t: t.pop("layers.0.basis.grid"), "'layers.0.basis.grid' is missing"),
        (lambda t: t.update({"layers.2.coef": torch.zeros(1)}), "belongs to no layer"),
        (lambda t: t.update({"layers.01.coef": torch.zeros(1)}), "belongs to no layer"),
        (lambda t: t.update({"evil": torch.zeros(1)}), "belongs to no layer"),
        (lambda t: t.update({"layers.0.extra": torch.zeros(1)}), "'layers.0.extra' is not part of"),
        (lambda t: t.update({"layers.0.coef": torch.zeros(3, 2, 9)}), "layers[0].basis_kwargs"),
        (lambda t: t.update({"layers.0.basis.grid": torch.zeros(2, 3)}), "'layers.0.basis.grid'"),
        (lambda t: t.update({"layers.0.mask": torch.ones(3, 2, dtype=torch.int64)}), "floating-point"),
        (lambda t: t.update({"layers.0.mask": torch.ones(2, 3)}), "widths[0], widths[1]"),
    ],
)
def test_tensor_table_must_match_the_config(saved, tmp_path, change, fragment):
    _, config, tensors = saved
    tensors = dict(tensors)
    change(tensors)
    _refused(_write(tmp_path / "bad.kantk", config, tensors), fragment)


def test_damaged_headers_are_refused_before_reading(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    cases = {
        "empty": b"",
        "short": data[:5],
        "huge_length": (2**62).to_bytes(8, "little") + data[8:],
        "over_the_bound": (kio.MAX_HEADER_BYTES + 1).to_bytes(8, "little")
        + b" " * (kio.MAX_HEADER_BYTES + 16),
        "truncated": data[: len(data) // 2],
        "garbage_header": data[:8] + b"\xff" * (len(data) - 8),
    }
    for name, content in cases.items():
        bad = tmp_path / f"{name}.kantk"
        bad.write_bytes(content)
        _refused(bad)
    with pytest.raises(kantk.KantkFileError):
        kantk.load(tmp_path)  # a folder


def test_float16_and_float64_models_still_load(tmp_path):
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        model = kantk.KAN([2, 3, 1], seed=0).to(dtype)
        kantk.save(model, tmp_path / "m.kantk")
        loaded = kantk.load(tmp_path / "m.kantk")
        assert loaded.layers[0].coef.dtype == dtype
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_updated_grids_and_every_builtin_basis_round_trip(tmp_path):
    x = torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 4 - 2
    for basis in ("bspline", "chebyshev", "rbf"):
        model = kantk.KAN([2, 3, 1], basis=basis, seed=0).update_grid(x)
        kantk.save(model, tmp_path / "m.kantk")
        loaded = kantk.load(tmp_path / "m.kantk")
        assert loaded.config() == model.config()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


# --- save: atomic, cleaned up, plain OSErrors ------------------------------------------------------


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(kio.TEMP_SUFFIX))


def test_save_to_a_bad_path_raises_a_plain_oserror(tmp_path):
    model = kantk.KAN([2, 1], seed=0)
    with pytest.raises(FileNotFoundError, match="no such folder") as info:
        kantk.save(model, tmp_path / "missing" / "m.kantk")
    assert "\n" not in str(info.value)
    with pytest.raises(IsADirectoryError, match="folder"):
        kantk.save(model, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        kantk.save(model, tmp_path / "file" / "m.kantk")
    assert (tmp_path / "file").read_text() == "x"
    assert _temps(tmp_path) == []


def test_save_to_an_unwritable_folder_raises_permission_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: simulate the refusal
        real_open = os.open

        def refuse(path, *args, **kwargs):
            if str(path).startswith(str(folder)):
                raise PermissionError(13, "Permission denied", path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(kio.os, "open", refuse)
    else:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            kantk.save(kantk.KAN([2, 1], seed=0), folder / "m.kantk")
    finally:
        folder.chmod(stat.S_IRWXU)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "failure", [KeyboardInterrupt(), RuntimeError("boom"), OSError(28, "No space left on device")]
)
def test_an_interrupted_save_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, failure):
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 1], seed=0), path)
    old = path.read_bytes()

    def half_then_fail(handle, data):
        handle.write(data[: len(data) // 2])
        handle.flush()
        assert len(_temps(tmp_path)) == 1  # named recognisably while it is written
        raise failure

    monkeypatch.setattr(kio, "_write", half_then_fail)
    with pytest.raises(type(failure)):
        kantk.save(kantk.KAN([2, 4, 1], seed=1), path)
    assert path.read_bytes() == old
    assert _temps(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["m.kantk"]


def test_stale_temps_of_a_dead_process_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "m.kantk"
    dead = tmp_path / f".m.kantk.999999999-0123abcd{kio.TEMP_SUFFIX}"  # beyond any pid_max
    alive = tmp_path / f".m.kantk.{os.getppid()}-89abcdef{kio.TEMP_SUFFIX}"  # a save still running
    other_model = tmp_path / f".n.kantk.999999999-0123abcd{kio.TEMP_SUFFIX}"
    not_ours = tmp_path / f".m.kantk.backup{kio.TEMP_SUFFIX}"
    for p in (dead, alive, other_model, not_ours):
        p.write_bytes(b"\0" * 64)
    kantk.save(kantk.KAN([2, 1], seed=0), path)
    assert not dead.exists()
    assert alive.exists() and other_model.exists() and not_ours.exists()
    assert kantk.load(path).widths == [2, 1]


def test_save_keeps_the_usual_file_permissions(tmp_path):
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 1], seed=0), path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_saving_again_keeps_the_file_s_own_permissions(tmp_path):
    """A 0600 model file became 0644 (the default) when saved over."""
    path = tmp_path / "m.kantk"
    kantk.save(kantk.KAN([2, 1], seed=0), path)
    path.chmod(0o600)
    kantk.save(kantk.KAN([2, 1], seed=1), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert torch.equal(kantk.load(path).layers[0].coef, kantk.KAN([2, 1], seed=1).layers[0].coef)


def test_save_refuses_tensors_and_configs_load_would_refuse(tmp_path):
    """A basis with an int buffer saved a file load refused ("kantk models hold floating-point
    tensors"); a config that is not JSON gave a bare "Object of type object is not JSON"."""
    model = kantk.KAN([2, 1], seed=0)
    model.layers[0].basis.register_buffer("index", torch.arange(3))
    with pytest.raises(ValueError, match=r"'layers.0.basis.index' has dtype torch.int64"):
        kantk.save(model, tmp_path / "m.kantk")
    model = kantk.KAN([2, 1], seed=0)
    model.layers[0].basis.config = lambda: {"grid": object()}  # type: ignore[method-assign]
    with pytest.raises(TypeError, match=r"config of layer 0 \(basis 'bspline'\) is not JSON"):
        kantk.save(model, tmp_path / "m.kantk")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_model_that_load_would_refuse(tmp_path):
    model = kantk.KAN([2, 1], seed=0)
    with torch.no_grad():
        model.layers[0].coef[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'layers.0.coef'"):
        kantk.save(model, tmp_path / "m.kantk")
    assert list(tmp_path.iterdir()) == []


def test_a_function_under_a_registered_library_name_is_not_saved_as_that_librarys(tmp_path):
    """An edge stores (library, name): ``sin(pi*z)`` added to a library named ``"default"`` was
    saved as ``sin`` and loaded as the registered ``sin(z)``, without a word."""
    import math

    import sympy

    from kantk.symbolic import get_library

    def sin_pi(z):
        return torch.sin(math.pi * z)

    shadow = kantk.SymbolicFunction("sin", sin_pi, lambda z: sympy.sin(sympy.pi * z), complexity=2)
    model = kantk.KAN([1, 1], seed=0)
    kantk.fix_symbolic(
        model,
        0,
        0,
        0,
        "sin",
        fit_params=False,
        library=get_library("default").with_functions(shadow, name="default"),
    )
    with pytest.raises(
        ValueError, match=r"cannot save the model: layer 0: edge 0 -> 0 uses a function 'sin' of "
    ):
        kantk.save(model, tmp_path / "m.kantk")
    assert not (tmp_path / "m.kantk").exists()
    # its own name (not registered: load says so) and the registered sin save as before
    kantk.fix_symbolic(
        model,
        0,
        0,
        0,
        "sin",
        fit_params=False,
        library=get_library("default").with_functions(shadow, name="mine"),
    )
    kantk.save(model, tmp_path / "m.kantk")
    with pytest.raises(kantk.UnknownComponentError, match="library 'mine'"):
        kantk.load(tmp_path / "m.kantk")
    kantk.fix_symbolic(model, 0, 0, 0, "sin", fit_params=False)
    kantk.save(model, tmp_path / "m.kantk")
    # the registered function with a ranking cost of its own computes the same: saved
    default_sin = get_library("default")["sin"]
    cheaper = kantk.SymbolicFunction("sin", default_sin.torch_fn, default_sin.sympy_fn, complexity=1)
    library = get_library("default").with_functions(cheaper, name="default")
    kantk.fix_symbolic(model, 0, 0, 0, "sin", fit_params=False, library=library)
    kantk.save(model, tmp_path / "m.kantk")
    x = torch.rand(7, 1)
    torch.testing.assert_close(kantk.load(tmp_path / "m.kantk")(x), model(x), rtol=0, atol=0)
