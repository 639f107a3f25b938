"""The shared checks of user-given numbers and names (kantk._validation): what passes, and that each
error names the argument, what is accepted and what it got."""

import math

import numpy as np
import pytest

from kantk._validation import check_choice, check_index, check_int, check_number, check_optional_int


def test_check_int_refuses_bools_floats_and_small_values():
    assert check_int("steps", 3, 1) == 3
    assert check_int("offset", -7) == -7  # no minimum: any int
    for bad in (True, 2.0, "3", None, 0):
        with pytest.raises(ValueError, match=rf"^steps must be an int >= 1, got {bad!r}$"):
            check_int("steps", bad, 1)
    assert check_optional_int("every", None, 1) is None
    with pytest.raises(ValueError, match=r"^every must be an int >= 1 or None, got False$"):
        check_optional_int("every", False, 1)


def test_integral_takes_numpy_integers_as_python_ints():
    value = check_int("n_vars", np.int64(3), 1, integral=True)
    assert value == 3 and type(value) is int
    assert type(check_optional_int("seed", np.uint8(7), integral=True)) is int
    with pytest.raises(ValueError, match=r"^n_vars must be an int >= 1, got "):
        check_int("n_vars", np.int64(3), 1)  # not without integral=True (configs must stay plain)
    for bad in (np.bool_(True), True, np.float64(2.0)):
        with pytest.raises(ValueError, match="n_vars must be an int >= 1"):
            check_int("n_vars", bad, 1, integral=True)


def test_check_number_bounds_nan_and_infinity():
    assert check_number("lr", 1, 0, strict=True) == 1.0 and isinstance(check_number("lr", 1, 0), float)
    assert check_number("w", math.inf, 0) == math.inf  # infinities pass unless finite=True
    cases = [
        ({"value": 0, "minimum": 0, "strict": True}, "lr must be a number > 0, got 0"),
        ({"value": math.nan, "minimum": 0}, "lr must be a number >= 0, got nan"),
        ({"value": math.inf, "minimum": 0, "finite": True}, "lr must be a finite number >= 0, got inf"),
        ({"value": True, "minimum": 0}, "lr must be a number >= 0, got True"),
        ({"value": 1.5, "minimum": 0, "maximum": 1}, "lr must be a number in [0, 1], got 1.5"),
        ({"value": 0, "minimum": 0, "maximum": 1, "strict": True}, "lr must be a number in (0, 1], got 0"),
        ({"value": 2, "maximum": 1}, "lr must be a number <= 1, got 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            check_number("lr", **kwargs)
        assert str(info.value) == message
    assert check_number("grid_eps", 1, 0, maximum=1) == 1.0  # both ends of [0, 1] pass
    assert check_number("grid_eps", 0, 0, maximum=1) == 0.0


def test_check_choice_lists_the_valid_names_in_order():
    assert check_choice("optimizer", "adam", ("lbfgs", "adam")) == "adam"
    for bad in ("sgd", ["adam"], None, 1):
        with pytest.raises(ValueError) as info:
            check_choice("optimizer", bad, {"lbfgs": 0, "adam": 1})
        assert str(info.value) == f"unknown optimizer {bad!r}; valid optimizers: lbfgs, adam"
    with pytest.raises(ValueError, match="valid losses: mse"):
        check_choice("loss", "mae", ["mse"], plural="losses")


def test_check_index_is_an_index_error_naming_the_range():
    assert check_index("layer", 1, 2) == 1
    for bad in (2, -1, True, 1.0):
        with pytest.raises(IndexError) as info:
            check_index("layer", bad, 2, where=" for KAN[2, 5, 1]")
        assert str(info.value) == f"layer must be an int in [0, 1] for KAN[2, 5, 1], got {bad!r}"
