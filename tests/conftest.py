from __future__ import annotations

import os

import pytest
import torch

# Without a CUDA device the Triton kernels are tested in Triton's interpreter on CPU tensors. The
# variable must be set before anything imports triton.language (torch.compile's tests do), or its
# standard functions are built for the compiler, not the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# CI and developer machines have 2 cores shared by several processes; one intra-op thread per
# test process avoids oversubscription (results do not depend on the thread count).
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _native_kernel_cache(tmp_path_factory):
    """The native B-spline kernels build into a temporary folder, not the user's cache (the
    variable is inherited by the CLI subprocesses, which then reuse that build)."""
    import os

    old = os.environ.get("KANTK_CACHE_DIR")
    os.environ["KANTK_CACHE_DIR"] = str(tmp_path_factory.mktemp("kantk-cache"))
    yield
    if old is None:
        os.environ.pop("KANTK_CACHE_DIR", None)
    else:
        os.environ["KANTK_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs with one intra-op thread (tiny models and fits: extra threads only wait on
    a shared machine), and a test that changes the count does not leak it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    """Every test starts seeded and with float32 as the default dtype."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


@pytest.fixture()
def fixed_basis_registry():
    """A registry with one extra basis, ``fixed_test``, that has no optional capabilities."""
    import kantk
    from kantk.bases import Basis

    class Fixed(Basis):
        num_functions = 2

        def forward(self, x):
            return torch.stack([x, x * x], dim=-1)

        def config(self):
            return {}

    class Plugin:
        @kantk.hookimpl
        def kantk_bases(self):
            yield kantk.BasisSpec("fixed_test", Fixed)

    return kantk.Registry.with_plugins(Plugin())
