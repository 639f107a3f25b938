"""torch.compile of a KAN works on the CPU and gives the eager results.

The test traces with dynamo and AOT autograd (``backend="aot_eager"``), which exercises
everything kantk controls (graph breaks, the custom autograd function, buffers) in seconds;
inductor's C++ code generation on top takes minutes on 2 cores and is timed in
``benchmarks/layer_speed.py --compile`` instead.
"""

from __future__ import annotations

import pytest
import torch

import kantk


@pytest.mark.parametrize("native", ["1", "0"])  # native kernels outside the graph / traced closed form
def test_compiled_kan_matches_eager(monkeypatch, native):
    monkeypatch.setenv("KANTK_NATIVE", native)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = kantk.KAN([3, 4, 2], seed=0)
    x = (torch.rand(64, 3) * 2.4 - 1.2).requires_grad_()
    compiled = torch.compile(model, backend="aot_eager")
    y = compiled(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    gx = x.grad.clone()
    model.zero_grad()
    x.grad = None
    y_eager = model(x)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(gx, x.grad)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)
