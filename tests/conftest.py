from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    """Every test starts seeded and with float32 as the default dtype."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)
