"""Building and loading the native CPU kernels of the uniform B-spline layer (optional).

The PyTorch dense path (:mod:`kantk.bases.bspline.torch_dense`) spends most of its time beyond the
GEMMs in a dozen element-wise PyTorch passes (locate, evaluate, scatter, gather). The C++ kernels
in ``_native_bspline.cpp`` do each chain in one pass over the data. They have a plain C ABI and
no PyTorch headers, so the first use compiles them in a few seconds with the system's C++
compiler (``$CXX``, else ``g++``, ``c++`` or ``clang++``) into a cache folder:
``$KANTK_CACHE_DIR``, else ``$XDG_CACHE_HOME/kantk``, else ``~/.cache/kantk``. The file name holds
a hash of the source, the flags, the compiler and the CPU, so a changed source or another
machine sharing the home folder gets its own build.

A cached library is verified before it is loaded: its size and SHA-256, recorded in a
``.sha256`` file beside it right after the build, must match, else it is rebuilt (a truncated
or altered file would crash the process when loaded). A compiler that runs longer than
``$KANTK_NATIVE_BUILD_TIMEOUT`` seconds (default 90) is killed with its whole process group.

Where they cannot be used (no compiler, a failed build, ``KANTK_NATIVE=0``, tensors that are
not float32/float64 on the CPU), the PyTorch path runs instead: same values, slower. A failed
build is reported once as a warning. :func:`status` says which is in use and why.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("_native_bspline.cpp")
ENV_SWITCH = "KANTK_NATIVE"
ENV_CACHE = "KANTK_CACHE_DIR"
ENV_TIMEOUT = "KANTK_NATIVE_BUILD_TIMEOUT"
DEFAULT_TIMEOUT = 90.0
ABI_VERSION = 1
MAX_ORDER = 15
_FLAGS = ["-O3", "-fPIC", "-shared", "-std=c++17", "-pthread", "-fno-math-errno", "-fno-trapping-math"]
# tried in turn: OpenMP (PyTorch's thread pool, see the C++ source) and the native CPU target,
# then without OpenMP (threads of its own). Not without the native target: built for the
# generic x86-64 baseline, the kernels' 64-byte vectors fall apart into SSE2 and the sparse
# path ran 7x slower, slower than the PyTorch path
_ARCH_FLAGS = (["-march=native", "-fopenmp"], ["-march=native"])

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict[str, Any] = {"lib": None, "tried": False, "reason": "not tried yet"}


def enabled() -> bool:
    """Whether the native kernels are switched on (``KANTK_NATIVE`` is not ``0``)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kantk"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_key() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        keep = [line for line in text.splitlines() if line.startswith(("flags", "model name", "Features"))]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return platform.processor() or platform.machine()


def _timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if value > 0 and value == value else DEFAULT_TIMEOUT


def _fingerprint(path: Path) -> str:
    """``"<size> <sha256>"`` of a file."""
    data = path.read_bytes()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def verified(target: Path) -> bool:
    """Whether a cached library matches the size and hash recorded when it was built."""
    try:
        return target.is_file() and _record_path(target).read_text().strip() == _fingerprint(target)
    except OSError:
        return False


def _run_compiler(command: list[str]) -> tuple[int, str]:
    """Run the compiler in its own process group; kill the whole group when it overruns."""
    limit = _timeout()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise RuntimeError(
            f"the compiler ran longer than {limit:g} s ({ENV_TIMEOUT}) and was stopped"
        ) from None
    except BaseException:  # e.g. KeyboardInterrupt: leave no compiler behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    return proc.returncode, err


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build(compiler: str) -> Path:
    source = SOURCE.read_bytes()
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in _ARCH_FLAGS:
        flags = _FLAGS + arch
        digest = hashlib.sha256(
            b"\0".join(
                [
                    source,
                    " ".join(flags).encode(),
                    compiler.encode(),
                    _cpu_key().encode(),
                    platform.platform().encode(),
                ]
            )
        ).hexdigest()[:20]
        target = folder / f"bspline_{digest}.so"
        if verified(target):
            return target
        if target.exists():
            _log.warning("kantk: %s does not match its recorded size and hash; rebuilding it", target)
        _log.info("kantk: compiling the native B-spline kernels into %s (once per machine)", folder)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            code, err = _run_compiler([compiler, *flags, str(SOURCE), "-o", tmp])
            if code == 0:
                # the record first, then the library: a reader never sees a library without one
                _write_atomic(_record_path(target), _fingerprint(Path(tmp)))
                os.replace(tmp, target)  # atomic: concurrent builders agree on one file
                if verified(target):
                    return target
                errors.append(f"{' '.join(arch)}: another process replaced the build; try again")
                continue
            errors.append(f"{' '.join(arch) or 'generic'}: {err.strip()[-500:]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("compiling the kernels failed: " + " | ".join(errors))


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.kantk_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI {lib.kantk_abi_version()}, expected {ABI_VERSION}")
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in ("f32", "f64"):
        fill = getattr(lib, f"kantk_fill_dense_{suffix}")
        fill.argtypes = [p, p, p, p, i64, i64, i32, i32, i32, p, p, i32]
        fill.restype = i32
        grad = getattr(lib, f"kantk_grad_input_{suffix}")
        grad.argtypes = [p, p, p, p, i64, i64, i64, i32, i32, i32, p, p, p, i32]
        grad.restype = i32
        compose = getattr(lib, f"kantk_compose_weight_{suffix}")
        compose.argtypes = [p, p, p, i64, i64, i32, p, i32]
        compose.restype = i32
        compose_grad = getattr(lib, f"kantk_compose_weight_grad_{suffix}")
        compose_grad.argtypes = [p, p, p, i64, i64, i32, i64, p, p, p, i32]
        compose_grad.restype = i32
        sparse_fwd = getattr(lib, f"kantk_sparse_forward_{suffix}")
        sparse_fwd.argtypes = [p, p, p, p, p, i64, i64, i64, i32, i32, i32, p, p, i32]
        sparse_fwd.restype = i32
        sparse_bwd = getattr(lib, f"kantk_sparse_backward_{suffix}")
        sparse_bwd.argtypes = [p, p, p, p, p, p, i64, i64, i64, i32, i32, i32, p, p, p, p, i32]
        sparse_bwd.restype = i32
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, building them on first call; None where they cannot be used."""
    if not enabled():
        return None
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            compiler = _compiler()
            try:
                if compiler is None:
                    raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
                _state["lib"] = _bind(_build(compiler))
                _state["reason"] = f"in use ({compiler})"
            except Exception as err:  # noqa: BLE001  (any failure: fall back to the PyTorch path)
                _state["reason"] = f"unavailable: {err}"
                warnings.warn(
                    f"kantk: the native B-spline kernels are {_state['reason']}; using the slower "
                    f"PyTorch path (set {ENV_SWITCH}=0 to skip the build and this warning)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _state["tried"] = True
    return _state["lib"]


def status() -> str:
    """Whether the native kernels are in use, and if not, why."""
    if not enabled():
        return f"switched off ({ENV_SWITCH}=0)"
    library()
    return _state["reason"]


def usable(
    x: torch.Tensor,
    order: int,
    weights: tuple[torch.Tensor | None, ...] = (),
    grid: torch.Tensor | None = None,
) -> bool:
    """Whether the kernels can take this input (CPU, float32/64, order <= 15, not compiling).

    ``weights`` (the tensors the kernels read beside ``x``) must be CPU tensors of ``x``'s dtype
    and ``grid`` a CPU tensor (it is converted); otherwise the PyTorch path runs, and raises
    PyTorch's own error for a mismatch: the kernels read raw pointers and would not notice.
    """
    if not (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and order <= MAX_ORDER
        and not torch.compiler.is_compiling()
    ):
        return False
    if grid is not None and grid.device.type != "cpu":
        return False
    if any(t is not None and (t.device.type != "cpu" or t.dtype != x.dtype) for t in weights):
        return False
    return library() is not None


def _require(ok: bool, what: str) -> None:
    """Checks that survive ``python -O``: the kernels read raw pointers."""
    if not ok:
        raise ValueError(f"kantk native kernels: expected {what}")


def _suffix(t: torch.Tensor) -> str:
    return "f32" if t.dtype == torch.float32 else "f64"


def _ptr(t: torch.Tensor | None) -> int | None:
    if t is None:
        return None
    _require(t.is_contiguous() and t.device.type == "cpu", "a contiguous CPU tensor")
    return t.data_ptr()
