"""Warnings raised inside the training engine, shown at the user's line.

A warning issued in a Lightning hook (the NaN guard, LBFGS's line search) with a fixed
``stacklevel`` was shown at a line of Lightning's (``pytorch_lightning/strategies/strategy.py:391:
kantk: training stopped ...``), in the middle of ``kantk.discover``'s progress lines.
:func:`warn_at_user` shows it at the first caller outside kantk, Lightning and torch: the user's
``kantk.fit(...)`` or ``trainer.fit(...)`` line.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextvars import ContextVar

#: Packages whose frames a warning passes over to reach the user's code.
ENGINE_PACKAGES = (
    "kantk",
    "torch",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "lightning_utilities",
)


#: A torch deprecation inside Lightning's own code (torch >= 2.10 with Lightning 2.x), printed at
#: every run; nothing a kantk user can act on: kantk.fit and the commands leave it out.
LIGHTNING_TREESPEC_WARNING = r".*isinstance\(treespec, LeafSpec\)"


#: True while a ``kantk`` command runs (:func:`kantk.cli.main`): its warnings stay attributed to
#: kantk's code, which the command prints as ``kantk: warning: ...`` lines (the first frame
#: outside kantk is the console script, or a test calling ``main``).
IN_COMMAND: ContextVar[bool] = ContextVar("kantk_in_command", default=False)


def _engine_dirs() -> tuple[str, ...]:
    dirs = []
    for name in ENGINE_PACKAGES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(dirs)


def warn_at_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the packages of
    :data:`ENGINE_PACKAGES` (the outermost frame when there is none); in a ``kantk`` command
    (:data:`IN_COMMAND`), to the kantk function that called this one."""
    if IN_COMMAND.get():
        warnings.warn(message, category, stacklevel=2)
        return
    dirs = _engine_dirs()
    frame = sys._getframe(0)
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(dirs):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
