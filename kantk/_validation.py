"""Checks of user-given numbers shared by the whole package, with one wording for their errors.

``bool`` is a subclass of ``int`` in Python, so ``isinstance(True, int)`` holds; every count, size or
index taken from a user must exclude it (``grid_size=True`` is a mistake, not 1). These helpers
raise :class:`ValueError` with a one-line message ``"<name> must be an int >= <minimum>, got <value>"``
that names the argument and what is accepted; :func:`check_choice` says
``"unknown <name> <value>; valid <names>: a, b, c"``.
"""

from __future__ import annotations

import keyword
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, TypeGuard

__all__ = [
    "check_choice",
    "check_index",
    "check_int",
    "check_number",
    "check_optional_int",
    "is_int",
    "is_number",
]


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is a Python int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float and not a bool (NaN and infinities included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _python_int(value: Any) -> Any:
    """A numpy integer (any :class:`numbers.Integral` but bool) as a Python int; others unchanged."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def check_int(name: str, value: Any, minimum: int | None = None, *, integral: bool = False) -> int:
    """``value`` when it is an int (not a bool) >= ``minimum`` (any int when None).

    With ``integral``, numpy integers pass too and come back as a Python int (use the returned
    value: the argument itself stays a numpy integer).

    Raises:
        ValueError: ``"{name} must be an int >= {minimum}, got {value!r}"`` otherwise.
    """
    if integral:
        value = _python_int(value)
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound}, got {value!r}")
    return value


def check_distinct(names: Sequence[Any], what: str = "var_names") -> None:
    """Raise unless ``names`` (input names, or symbols) are distinct.

    Raises:
        ValueError: ``"{what} names 'q' twice; the names must be distinct (each names one input)"``.
    """
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"{what} names {str(name)!r} twice; the names must be distinct (each names one input)"
            )
        seen.add(name)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters; containers are abbreviated
    while they are written (``reprlib``), so a value sharing references (``a = [a] * 9`` nested
    seven deep, from a 13 KB checkpoint) costs no more than ``limit``."""
    import reprlib

    shorter = reprlib.Repr()
    shorter.maxlevel, shorter.maxstring, shorter.maxother = 3, limit, limit
    shorter.maxlist = shorter.maxtuple = shorter.maxdict = shorter.maxset = 8
    text = shorter.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_bounded(value: Any, what: str, budget: int = 1_000_000) -> None:
    """Refuse plain data (dicts, lists, tuples, sets) that spells out to more than ``budget``
    values, counting a shared container each time it occurs, or that contains itself: unpickled
    data can share references, and printing a 13 KB checkpoint's ``a = [a] * 9`` nested seven deep
    took 19 s and 4 GB. The count is memoised per container, so the check is linear in the data's
    own size (a file's worth), whatever it spells out to.

    Raises:
        ValueError: ``"{what} spells out to more than {budget} values ..."`` or ``"... contains
            itself"``.
    """
    sizes: dict[int, int] = {}  # id of a container -> the number of values it spells out to
    open_: set[int] = set()  # containers whose children are being counted
    keep: list[Any] = []  # the containers counted, alive while their ids are keys
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        children = (
            [*item.keys(), *item.values()]
            if isinstance(item, dict)
            else list(item)
            if isinstance(item, (list, tuple, set, frozenset))
            else None
        )
        if children is None or id(item) in sizes:
            continue
        if done:
            total = 1 + sum(sizes.get(id(c), 1) for c in children)
            if total > budget:
                raise ValueError(
                    f"{what} spells out to more than {budget} values (counting shared references "
                    "each time they occur); refused before reading them"
                )
            sizes[id(item)] = total
            open_.discard(id(item))
            keep.append(item)
            continue
        if id(item) in open_:
            raise ValueError(f"{what} contains itself; refused before reading it")
        open_.add(id(item))
        stack.append((item, True))
        stack.extend((c, False) for c in children)


def check_seed(name: str, value: Any) -> int:
    """``value`` as a seed for ``torch.Generator().manual_seed``: a whole number (an int, a numpy
    int, a whole float such as ``3.0``, a 0-dim tensor of one; not a bool) from -2**63 to 2**64 - 1,
    the range torch takes.

    Raises:
        ValueError: ``"{name} must be a whole number from -2**63 to 2**64-1, got ..."`` otherwise
            (torch raised "Overflow when unpacking long long", and 1.5 was silently truncated).
    """
    if hasattr(value, "dim") and hasattr(value, "item") and value.dim() == 0:  # a 0-dim tensor
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, (numbers.Integral, bool)):
        whole = math.isfinite(float(value)) and float(value).is_integer()
        value = int(float(value)) if whole else value  # 3.0
    value = _python_int(value)
    if not is_int(value) or not -(2**63) <= value <= 2**64 - 1:
        raise ValueError(f"{name} must be a whole number from -2**63 to 2**64-1, got {short_repr(value, 40)}")
    return int(value)


def check_index(name: str, value: Any, size: int, *, where: str = "") -> int:
    """``value`` when it is an int (not a bool) in ``[0, size)``: an index into ``size`` items.

    Raises:
        IndexError: ``"{name} must be an int in [0, {size - 1}]{where}, got {value!r}"`` otherwise
            (``where`` says whose items, e.g. ``" for KAN[2, 5, 1]"``).
    """
    if not is_int(value) or not 0 <= value < size:
        raise IndexError(f"{name} must be an int in [0, {size - 1}]{where}, got {value!r}")
    return value


def check_optional_int(
    name: str, value: Any, minimum: int | None = None, *, integral: bool = False
) -> int | None:
    """Like :func:`check_int`, and None passes: ``"{name} must be an int >= {minimum} or None, ..."``."""
    if value is None:
        return None
    if integral:
        value = _python_int(value)
    if not is_int(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an int{bound} or None, got {value!r}")
    return value


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    *,
    strict: bool = False,
    finite: bool = False,
    maximum: float | None = None,
) -> float:
    """``float(value)`` when it is an int or float (not a bool) >= ``minimum`` (> when ``strict``)
    and <= ``maximum``.

    NaN never passes; infinities pass unless ``finite``.

    Raises:
        ValueError: ``"{name} must be a [finite ]number >= {minimum}, got {value!r}"`` otherwise;
            with a ``maximum``, ``"... a number in [{minimum}, {maximum}], ..."``.
    """
    ok = is_number(value) and not math.isnan(value) and (not finite or math.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        kind = "a finite number" if finite else "a number"
        if maximum is None:
            bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        elif minimum is None:
            bound = f" <= {maximum:g}"
        else:
            bound = f" in {'(' if strict else '['}{minimum:g}, {maximum:g}]"
        raise ValueError(f"{name} must be {kind}{bound}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str], *, plural: str | None = None) -> str:
    """``value`` when it is one of ``choices`` (names such as an optimizer's).

    Raises:
        ValueError: ``"unknown {name} {value!r}; valid {plural}: a, b, c"`` otherwise (``plural``
            defaults to ``name + "s"``; the choices in their given order).
    """
    choices = list(choices)
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"unknown {name} {value!r}; valid {plural or name + 's'}: {', '.join(choices)}")
    return value


#: Names a formula reads as constants (kantk.formula_parser's pi and E, and sympy's I, oo, zoo, nan).
FORMULA_CONSTANTS = ("pi", "E", "I", "oo", "zoo", "nan")


def formula_name_problem(name: str) -> str | None:
    """Why ``name`` cannot stand for a variable in a printed formula, or None when it can: it must
    be a Python identifier (``x-1`` reads as x minus 1, ``a b`` as nothing) not starting with
    ``_``, and not a constant a formula names (``pi``, ``E``, ``I``, ...). A function's name may be
    a variable (the Feynman table's ``beta``, ``gamma``): :func:`parse_formula` reads it as the
    variable, and as the function only where it is called (``beta*cos(theta)``, ``beta(1, 2)``)."""
    if keyword.iskeyword(name):  # lambda, in, is: formulas are read as Python expressions
        return f"{name!r} is a Python keyword, which formulas cannot use as a name (e.g. {name}_ or {name}1)"
    if not name.isidentifier() or name.startswith("_"):
        return f"{name!r} is not a name (letters, digits and '_', starting with a letter)"
    if name in FORMULA_CONSTANTS:
        return f"{name!r} is a constant in formulas (pi, E, I, oo, zoo, nan)"
    return None


def formula_names(names: Iterable[Any] | None) -> list[str] | None:
    """``names`` as strings when each can stand in a formula (:func:`formula_name_problem`), else
    ``None``: what a model's recorded header names and a dataset's header may name inputs by."""
    if names is None:
        return None
    listed = [str(name) for name in names]
    return listed if all(formula_name_problem(name) is None for name in listed) else None
