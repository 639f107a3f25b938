"""kantk's Lightning classes for the unified ``lightning`` package (``import lightning as L``).

The same classes as :mod:`kantk.lightning` (same names, arguments and checkpoints), subclassing
``lightning.pytorch`` instead of ``pytorch_lightning``::

    import lightning as L
    from kantk.lightning.unified import FunctionDataModule, KANModule

    L.Trainer(max_steps=20).fit(KANModule([2, 5, 1]), FunctionDataModule("x1*x2", n_vars=2))

They are built from the source of :mod:`kantk.lightning` with its Lightning imports renamed (see
:mod:`kantk.lightning.compat`). Importing this package imports ``lightning`` (``pip install
lightning``).
"""

from __future__ import annotations

from kantk.lightning.compat import MODULES, build_unified_module

for _short in MODULES:
    build_unified_module(_short)

# E402: these submodules do not exist until build_unified_module() above has created them.
from kantk.lightning.unified.callbacks import GridUpdateCallback, NaNGuard, StepProgressBar, gather_rows  # noqa: E402
from kantk.lightning.unified.datamodules import (  # noqa: E402
    CSVDataModule,
    FunctionDataModule,
    TensorDataModule,
)
from kantk.lightning.unified.grid_extension import GridExtension  # noqa: E402
from kantk.lightning.unified.module import KANModule, MLPModule  # noqa: E402

__all__ = [
    "CSVDataModule",
    "FunctionDataModule",
    "GridExtension",
    "GridUpdateCallback",
    "KANModule",
    "MLPModule",
    "NaNGuard",
    "StepProgressBar",
    "TensorDataModule",
    "gather_rows",
]
