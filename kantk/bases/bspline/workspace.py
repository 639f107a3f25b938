"""Reusable CPU buffers of one B-spline basis' fused paths, owned by the basis."""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

import torch

#: Every live workspace, so that :func:`clear_all` can free them (weak: a basis owns its own).
_LIVE: weakref.WeakSet[Workspace] = weakref.WeakSet()
_TICKETS = itertools.count()


class Workspace:
    """Scratch buffers of one basis, per thread, and the matrix its last forward kept for backward.

    A fresh multi-megabyte CPU tensor per call costs thousands of page faults (the allocator
    hands large blocks back to the OS); reusing one buffer per role, shape and dtype avoids that.
    The last ``slots`` buffers are kept per thread. On other devices a plain allocation is returned
    (their caching allocators do this already). Copies of a basis (``copy.deepcopy``, pickling) get
    an empty workspace of their own.

    Args:
        slots: How many (role, shape, dtype) buffers to keep per thread.
    """

    def __init__(self, slots: int = 12):
        self.slots = slots
        self._local = threading.local()
        _LIVE.add(self)

    def _buffers(self) -> dict[Any, torch.Tensor]:
        return self._local.__dict__.setdefault("buffers", {})

    def scratch(self, role: Any, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised buffer of ``shape`` with ``like``'s dtype and device, reused per role.

        Only for a result that is consumed before the same role is asked for again.
        """
        if like.device.type != "cpu":
            return like.new_empty(shape)
        cache = self._buffers()
        key = (role, tuple(shape), like.dtype)
        buf = cache.pop(key, None)
        if buf is not None and buf.is_inference() and not torch.is_inference_mode_enabled():
            buf = None  # made under torch.inference_mode: cannot be written to outside it
        if buf is None:
            buf = like.new_empty(shape)
            while len(cache) >= self.slots:  # forget the least recently used
                cache.pop(next(iter(cache)))
        cache[key] = buf  # most recent last
        return buf

    def keep(self, dense: torch.Tensor, pos: torch.Tensor | None) -> int:
        """Remember the last forward's dense matrix and positions for its backward; returns a ticket.

        A second forward gets a new ticket, and a backward whose ticket is stale rebuilds them
        instead (e.g. the model was called twice before ``backward``).
        """
        ticket = next(_TICKETS)
        self._local.kept = (ticket, dense, pos)
        return ticket

    def kept(self, ticket: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        entry = getattr(self._local, "kept", None)
        if entry is None or entry[0] != ticket:
            return None
        return entry[1], entry[2]

    def clear(self) -> None:
        """Free this thread's buffers."""
        self._local.__dict__.pop("buffers", None)
        self._local.__dict__.pop("kept", None)

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace(self.slots)

    def __reduce__(self):
        return (Workspace, (self.slots,))


def clear_all() -> None:
    """Free this thread's buffers in every B-spline basis' workspace."""
    for workspace in list(_LIVE):
        workspace.clear()
