"""A deterministic bound on the work a call does, for tests of refusals and of bad input.

Wall-clock limits depend on the CPU model and on its load (CI machines differ 6x in speed, and a
loaded one failed 1-second limits), so tests bound the number of Python-level function calls
instead: the count is the same on every machine, and a refusal that starts real work (a sympy
evaluation of 9**9**9, a tensor of 10**12 elements, a deep recursion) blows any budget by orders of
magnitude.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def call_budget(limit: int, what: str = "the block") -> Iterator[list[int]]:
    """Fail when the block makes more than ``limit`` function calls (Python and C, as profiled).

    Yields a one-item list holding the running count. Exceptions from the block propagate unchanged
    (use it around ``pytest.raises``).
    """
    count = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            count[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(previous)
    assert count[0] <= limit, f"{what} made {count[0]} calls, over its budget of {limit}"
