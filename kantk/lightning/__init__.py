"""Training with PyTorch Lightning: the LightningModule, data modules and callbacks.

These classes subclass ``pytorch_lightning``'s; the same classes for the unified ``lightning``
package (``import lightning as L``) are in :mod:`kantk.lightning.unified` (see
:mod:`kantk.lightning.compat`). Importing this package imports Lightning; ``import kantk`` alone
does not.
"""

from __future__ import annotations

from kantk.lightning.callbacks import GridUpdateCallback, NaNGuard, StepProgressBar, gather_rows
from kantk.lightning.datamodules import CSVDataModule, FunctionDataModule, TensorDataModule
from kantk.lightning.grid_extension import GridExtension
from kantk.lightning.module import KANModule, MLPModule

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
