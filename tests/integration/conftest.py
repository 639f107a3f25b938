from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Integration tests train tiny models: one intra-op thread is as fast unloaded and keeps them
    fast when the machine is shared (two threads then spend most of their time waiting)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
