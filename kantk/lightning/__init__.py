"""Training with PyTorch Lightning: the LightningModule, data modules and callbacks.

Importing this package imports Lightning; ``import kantk`` alone does not.
"""
from __future__ import annotations

from kantk.lightning.callbacks import GridUpdateCallback, StepProgressBar, gather_rows
from kantk.lightning.datamodules import CSVDataModule, FunctionDataModule, TensorDataModule
from kantk.lightning.grid_extension import GridExtension
from kantk.lightning.module import KANModule

__all__ = [
    "CSVDataModule",
    "FunctionDataModule",
    "GridExtension",
    "GridUpdateCallback",
    "KANModule",
    "StepProgressBar",
    "TensorDataModule",
    "gather_rows",
]
