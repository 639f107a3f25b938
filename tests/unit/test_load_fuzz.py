"""Property-based tests (Hypothesis) for ``kantk.load`` on damaged and hostile files (issue 16).

Starting from valid saved models, each example changes the JSON config (random JSON in random
fields, deleted and added keys), the tensors (special values, other shapes and dtypes, missing and
extra ones) or raw bytes of the file. ``load`` must then either return a model that is itself
valid (finite state, saves and loads back equal) or raise ``KantkFileError``; never another
exception, and never slowly. Examples are derandomised and bounded: a few seconds in all.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, safe_open, save_file
from work_budget import call_budget

import kantk
from kantk.io import CONFIG_KEY, FORMAT_KEY

#: Most function calls a load of a small file may make (tests/work_budget.py): about 10x the most a
#: fuzzed file needed when measured (torch 2.13); building a huge model would need far more.
LOAD_CALLS = 150_000

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # seeded: the same examples on every run
    database=None,  # writes nothing outside tmp_path
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, tuple[dict[str, Any], dict[str, torch.Tensor]]]:
    """Config and tensors of a few valid models.

    An adapted B-spline grid with a symbolic edge, Chebyshev, RBF."""
    folder = tmp_path_factory.mktemp("fuzz-bases")
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spline = kantk.KAN([2, 3, 1], seed=0).update_grid(x)
    kantk.fix_symbolic(spline, 1, 0, 0, "sin", fit_params=False)
    models = {
        "bspline": spline,
        "chebyshev": kantk.KAN([2, 2, 1], basis="chebyshev", basis_kwargs={"degree": 3}, seed=1),
        "rbf": kantk.KAN(
            [1, 2], basis="rbf", basis_kwargs={"num_centers": 4}, base_activation="zero", seed=2
        ),
    }
    out = {}
    for name, model in models.items():
        path = folder / f"{name}.kantk"
        kantk.save(model, path)
        with safe_open(str(path), "pt") as f:
            config = json.loads(f.metadata()[CONFIG_KEY])
        out[name] = (config, load_file(str(path)))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "mutant.kantk"


NAMES = [
    "bspline",
    "chebyshev",
    "rbf",
    "fourier",
    "silu",
    "zero",
    "identity",
    "float64",
    "float16",
    "default",
    "sin",
]
KEYS = [
    "widths",
    "layers",
    "dtype",
    "basis",
    "basis_kwargs",
    "base_activation",
    "grid_size",
    "order",
    "grid_range",
    "extrapolate",
    "degree",
    "num_centers",
    "width_scale",
    "in_features",
    "out_features",
    "symbolic",
    "functions",
    "libraries",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, 3, 4, 5, 8, 10**8, 10**15, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(NAMES)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _mutate(config: Any, path: tuple, op: str, value: Any, key: str) -> Any:
    if not path:
        return value if op == "replace" else config
    parent = config
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    elif op == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    return config


def _write(path: Path, config: Any, tensors: dict[str, torch.Tensor]) -> None:
    try:
        text = json.dumps(config)
    except (ValueError, OverflowError):  # not every mutant can be serialised: keep it as a string
        text = repr(config)
    save_file(tensors, str(path), metadata={FORMAT_KEY: "1", CONFIG_KEY: text})


def _load_is_safe(path: Path) -> None:
    """``load`` returns a valid model or raises KantkFileError, and quickly."""
    with call_budget(LOAD_CALLS, "load"):
        try:
            model = kantk.load(path)
        except kantk.KantkFileError:
            model = None
    if model is None:
        return
    state = model.state_dict()
    for key, value in state.items():
        assert torch.isfinite(value).all(), key
    again_path = path.with_suffix(".again")
    kantk.save(model, again_path)
    again = kantk.load(again_path)
    assert again.config() == model.config()
    for key, value in state.items():
        assert torch.equal(again.state_dict()[key], value), key


OPS = st.sampled_from(["replace", "replace", "delete", "add", "duplicate"])


@FUZZ
@given(data=st.data())
def test_mutated_configs_load_validly_or_raise_kantk_file_error(bases, scratch, data):
    name = data.draw(st.sampled_from(sorted(bases)), label="model")
    config, tensors = bases[name]
    config = copy.deepcopy(config)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(_paths(config)), label="path")
        config = _mutate(
            config,
            path,
            data.draw(OPS, label="op"),
            data.draw(JSON, label="value"),
            data.draw(st.sampled_from(KEYS), label="key"),
        )
        if not isinstance(config, (dict, list)):
            break
    _write(scratch, config, tensors)
    _load_is_safe(scratch)


SPECIAL = st.sampled_from(
    [math.nan, math.inf, -math.inf, 3.0e38, -3.0e38, 1e-45, -0.0, 0.5, 2.0, 7.0, -1.0, 0.0]
)


@FUZZ
@given(data=st.data())
def test_mutated_tensors_load_validly_or_raise_kantk_file_error(bases, scratch, data):
    name = data.draw(st.sampled_from(sorted(bases)), label="model")
    config, tensors = bases[name]
    tensors = dict(tensors)
    key = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
    kind = data.draw(
        st.sampled_from(["values", "values", "shape", "dtype", "drop", "extra", "reverse"]), label="kind"
    )
    if kind == "values":
        value = tensors[key].clone().reshape(-1)
        for _ in range(data.draw(st.integers(1, 3), label="n")):
            value[data.draw(st.integers(0, value.numel() - 1), label="index")] = data.draw(
                SPECIAL, label="special"
            )
        tensors[key] = value.reshape(tensors[key].shape)
    elif kind == "shape":
        shape = data.draw(st.lists(st.integers(0, 6), min_size=0, max_size=4), label="shape")
        tensors[key] = torch.zeros(shape)
    elif kind == "dtype":
        dtype = data.draw(
            st.sampled_from([torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])
        )
        tensors[key] = tensors[key].to(dtype)
    elif kind == "drop":
        del tensors[key]
    elif kind == "extra":
        tensors[data.draw(st.sampled_from(["layers.0.extra", "layers.9.coef", "x", key + ".x"]))] = (
            torch.ones(2)
        )
    else:
        tensors[key] = tensors[key].flip(-1).contiguous()
    _write(scratch, config, tensors)
    _load_is_safe(scratch)


@FUZZ
@given(data=st.data())
def test_corrupted_bytes_load_validly_or_raise_kantk_file_error(bases, scratch, data):
    name = data.draw(st.sampled_from(sorted(bases)), label="model")
    config, tensors = bases[name]
    _write(scratch, config, tensors)
    raw = bytearray(scratch.read_bytes())
    header = int.from_bytes(raw[:8], "little") + 8
    for _ in range(data.draw(st.integers(1, 4), label="n")):
        # mostly inside the header, where the structure is
        end = data.draw(st.sampled_from([8, header, len(raw)]), label="region")
        at = data.draw(st.integers(0, end - 1), label="at")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    scratch.write_bytes(bytes(raw))
    _load_is_safe(scratch)
