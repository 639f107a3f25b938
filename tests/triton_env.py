"""Whether Triton's interpreter can run kantk's kernels here (tests that run them skip if not).

Triton 3.6's interpreter (the device image's version) turns a loop bound given at run time (an int
argument, not a ``tl.constexpr``) into a Python int with ``int()`` of a one-element numpy array,
which numpy 2.4 and later refuse ("only 0-dimensional arrays can be converted to Python scalars");
most kantk kernels have such a loop (over the basis functions, say). Triton 3.9 (CI) squeezes the
array first; numpy 2.3 still accepts it. That is the interpreter's matter, not the kernels': on a
GPU the compiled kernels do not go through it. The probe runs one tiny kernel of that shape, once
per process, when a test first asks (Triton is imported only then); outside the interpreter, or
without Triton, there is nothing to probe. Any other error from the probe is raised, not turned
into a skip.
"""

from __future__ import annotations

import functools

#: what numpy says when the interpreter hands it a one-element array for an int
_NUMPY_REFUSAL = "only 0-dimensional arrays can be converted to Python scalars"


@functools.cache
def interpreter_problem() -> str | None:
    """None where the interpreter runs a kernel with a loop bound given at run time (or is not in
    use); else why not, in one line, for a skip reason."""
    from kantk.bases import gpu

    if not gpu.installed():
        return None
    from kantk.bases.gpu.common import interpreting

    if not interpreting():
        return None
    import numpy
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def _count_kernel(out, n):  # a loop bound given at run time, as in the kernels
        acc = tl.zeros((1,), dtype=tl.float32)
        for _ in range(0, n):
            acc += 1.0
        tl.store(out + tl.arange(0, 1), acc)

    out = torch.zeros(1)
    try:
        _count_kernel[(1,)](out, n=2)
    except Exception as e:  # the interpreter wraps numpy's TypeError in its own error
        if _NUMPY_REFUSAL not in str(e):
            raise
        return (
            f"Triton {triton.__version__}'s interpreter cannot run the kernels with numpy "
            f"{numpy.__version__} ({_NUMPY_REFUSAL}); Triton 3.9 or numpy < 2.4 can"
        )
    assert out.item() == 2.0, "Triton's interpreter miscounted a loop"
    return None
