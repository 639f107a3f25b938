"""Train, read and prune: the interpretability loop of pykan's hellokan, end to end with kantk.fit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import kantk
from kantk.model import default_dtype
from kantk.pruning import apply_masks, plan_pruning


def _rmse(model: kantk.KAN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((model(x) - y) ** 2).mean().sqrt())


def test_distractor_input_scores_lowest_and_is_pruned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = kantk.create_dataset("x1*x2", n_vars=3, train_num=300, test_num=300, seed=0, dtype=torch.float64)
    with default_dtype(torch.float64):
        model = kantk.KAN([3, 2, 1], seed=0)
    history = kantk.fit(model, data, steps=30, optimizer="lbfgs", progress=False, seed=0)
    x = data["train_input"]
    assert history.test_rmse[-1] < 0.05

    scores = kantk.attribution(model, x)
    assert int(scores.feature_scores.argmin()) == 2
    assert scores.feature_scores[2] < 1e-2 < scores.feature_scores[:2].min()

    plan = plan_pruning(model, x, prune_inputs=True)
    assert plan.kept_nodes[0].tolist() == [0, 1]
    small = kantk.prune(model, x, prune_inputs=True)
    assert small.widths[0] == 2
    # x3 is gone: the pruned model reads x1 and x2 only and computes what the masked model does
    x_test = data["test_input"]
    with torch.no_grad():
        torch.testing.assert_close(small(x_test[:, :2]), apply_masks(model, plan)(x_test), atol=1e-6, rtol=0)
    # what x3's edges added was nearly constant; a short refit on x1, x2 takes it up again
    reduced = {k: v[:, :2] if k.endswith("_input") else v for k, v in data.items()}
    kantk.fit(small, reduced, steps=5, progress=False, seed=0)
    assert _rmse(small, x_test[:, :2], data["test_label"]) < 2 * max(history.test_rmse[-1], 1e-3)
    assert list(tmp_path.iterdir()) == []  # nothing written by fit, attribution or prune


def test_hellokan_sparsifies_to_one_hidden_node_and_refits():
    # pykan's hellokan: [2, 5, 1] on exp(sin(pi x1) + x2^2), sparsified with l1 + entropy.
    data = kantk.create_dataset(
        "exp(sin(pi*x1) + x2**2)", n_vars=2, train_num=300, test_num=300, seed=0, dtype=torch.float64
    )
    with default_dtype(torch.float64):
        model = kantk.KAN([2, 5, 1], basis="bspline", basis_kwargs={"grid_size": 5, "order": 3}, seed=0)
    kantk.fit(model, data, steps=30, regularisers={"l1_entropy": {"weight": 1e-2}}, progress=False, seed=0)
    x, x_test, y_test = data["train_input"], data["test_input"], data["test_label"]
    unpruned_rmse = _rmse(model, x_test, y_test)

    small = kantk.prune(model, x)  # threshold pruner, pykan's node_th=1e-2, edge_th=3e-2
    assert small.widths == [2, 1, 1]

    kantk.fit(small, data, steps=10, progress=False, seed=0)
    pruned_rmse = _rmse(small, x_test, y_test)
    assert pruned_rmse <= 2 * unpruned_rmse, (pruned_rmse, unpruned_rmse)

    fig = kantk.plot_activations(small, x, in_vars=["x1", "x2"], out_vars=["y"])
    curves = [line for line in fig.axes[0].lines if str(line.get_gid()).startswith("kantk-edge/")]
    assert len(curves) == sum(int((layer.mask != 0).sum()) for layer in small.layers)


# --- the claims of docs/interpretability.md ------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_interpretability_page_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (DOCS / "interpretability.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "interpretability"}
    for i, code in enumerate(blocks):  # one session, top to bottom, as a reader would run them
        exec(compile(code, f"docs/interpretability.md block {i}", "exec"), namespace)  # noqa: S102
    assert namespace["small"].widths == [2, 1, 1]  # what the page says
    assert isinstance(namespace["fig"], Figure)
    assert namespace["plan"].widths == list(namespace["small"].widths)
    assert list(tmp_path.iterdir()) == []  # the page writes nothing


@pytest.mark.parametrize(("base", "local"), [("zero", True), ("silu", False)])
def test_zero_base_bspline_edges_learn_locally(base, local):
    with default_dtype(torch.float64):
        model = kantk.KAN(
            [1, 1], basis="bspline", basis_kwargs={"grid_size": 20, "order": 3}, base_activation=base, seed=0
        )
    model.layers[0].scale_sp.requires_grad_(False)
    far = torch.linspace(0.0, 1.0, 50, dtype=torch.float64).unsqueeze(-1)  # > order + 1 intervals away
    before = model(far).detach().clone()
    x = torch.linspace(-1.0, -0.5, 40, dtype=torch.float64).unsqueeze(-1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        ((model(x) - torch.sin(8 * x)) ** 2).mean().backward()
        optimizer.step()
    assert torch.equal(model(far).detach(), before) == local
