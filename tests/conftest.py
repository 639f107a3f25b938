from __future__ import annotations

import os
import shutil
import tempfile

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


_native_cache: dict[str, str | None] = {}


def pytest_configure(config):
    """The native B-spline kernels build into pytest's cache folder (``.pytest_cache/d/``), not the
    user's cache, and later sessions reuse them: a build takes 10-30 s on 2 shared cores, which
    every test process paid before (one per file when files are run one at a time). The library's
    name still hashes its source, flags, compiler and CPU, and it is verified by size and SHA-256
    before it is loaded, as in any cache folder (``native_build``); ``pytest --cache-clear``
    rebuilds it, and with the cache plugin off (``-p no:cacheprovider``) the session builds into a
    temporary folder. Set here, before collection: test modules probe the kernels at import (skip
    marks). The variable is inherited by the CLI subprocesses, which reuse that build."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        folder, temporary = str(cache.mkdir("kantk-native")), None
    else:
        folder = temporary = tempfile.mkdtemp(prefix="kantk-cache-")
    _native_cache.update(old=os.environ.get("KANTK_CACHE_DIR"), temporary=temporary)
    os.environ["KANTK_CACHE_DIR"] = folder


def pytest_unconfigure(config):
    if "old" not in _native_cache:
        return
    old, temporary = _native_cache.pop("old"), _native_cache.pop("temporary")
    if old is None:
        os.environ.pop("KANTK_CACHE_DIR", None)
    else:
        os.environ["KANTK_CACHE_DIR"] = old
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


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
