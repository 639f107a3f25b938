"""Continual learning (the KAN paper's section 3.5): a KAN keeps what it learnt, an MLP forgets.

The target is a 1-D function with five Gaussian peaks of width ``sigma = 0.05`` centred at
-0.8, -0.4, 0, 0.4, 0.8. The input range [-1, 1] is split into five intervals of width 0.4, one
per peak, and the data are shown one interval at a time (phase i: 100 samples drawn uniformly
from the i-th interval, labelled with the full target). Nothing of an earlier phase is shown
again.

* KAN ``[1, 1]``, cubic B-splines on G = 200 intervals, ``base_activation="zero"`` and the
  per-edge scale ``scale_sp`` frozen: every coefficient has local support, so training on one
  interval leaves the function elsewhere unchanged. Trained with ``kantk.fit`` (Adam), phase by
  phase.
* MLP ``[1, 64, 64, 1]`` with SiLU, trained with a plain Adam loop on the same phases and steps.

After the last phase both are scored on every interval (a dense grid of 400 points per interval):
the RMSE on the earlier intervals shows what was forgotten.

Run:  python examples/continual_learning.py [--plot continual.png] [--steps 500] [--quick]

``--quick`` (G = 50, 60 steps per phase) runs in seconds. Nothing is written unless ``--plot``
names a path.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

import kantk

CENTRES = (-0.8, -0.4, 0.0, 0.4, 0.8)
SIGMA = 0.05
HALF = 0.2  # half-width of each phase's interval


def target(x: torch.Tensor) -> torch.Tensor:
    return sum(torch.exp(-((x - c) ** 2) / (2 * SIGMA**2)) for c in CENTRES)


def phase_data(i: int, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    lo = CENTRES[i] - HALF
    x = lo + 2 * HALF * torch.rand(n, 1, generator=generator)
    xt = torch.linspace(lo, lo + 2 * HALF, 400).unsqueeze(1)
    return {"train_input": x, "train_label": target(x), "test_input": xt, "test_label": target(xt)}


def region_rmse(model: torch.nn.Module, i: int) -> float:
    lo = CENTRES[i] - HALF
    x = torch.linspace(lo, lo + 2 * HALF, 400).unsqueeze(1)
    with torch.no_grad():
        return math.sqrt(float(torch.mean((model(x) - target(x)) ** 2)))


def make_mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(1, 64),
        torch.nn.SiLU(),
        torch.nn.Linear(64, 64),
        torch.nn.SiLU(),
        torch.nn.Linear(64, 1),
    )


def train_mlp(mlp: torch.nn.Module, data: dict[str, torch.Tensor], steps: int, lr: float) -> None:
    opt = torch.optim.Adam(mlp.parameters(), lr=lr)
    x, y = data["train_input"], data["train_label"]
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((mlp(x) - y) ** 2)
        loss.backward()
        opt.step()


def plot(path: str, snapshots: list[dict[str, Any]], phases: list[dict[str, torch.Tensor]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(snapshots)
    fig, axes = plt.subplots(3, n, figsize=(2.6 * n, 6.5), sharex=True, sharey=True)
    x = torch.linspace(-1, 1, 1000).unsqueeze(1)
    for i, snap in enumerate(snapshots):
        d = phases[i]
        axes[0, i].plot(x.squeeze(), target(x).squeeze(), color="0.8")
        axes[0, i].scatter(d["train_input"].squeeze(), d["train_label"].squeeze(), s=3, color="k")
        axes[0, i].set_title(f"phase {i + 1}")
        for row, key, colour in ((1, "kan", "tab:blue"), (2, "mlp", "tab:red")):
            axes[row, i].plot(x.squeeze(), target(x).squeeze(), color="0.8")
            axes[row, i].plot(x.squeeze(), snap[key].squeeze(), color=colour)
    axes[0, 0].set_ylabel("data")
    axes[1, 0].set_ylabel("KAN [1,1]")
    axes[2, 0].set_ylabel("MLP")
    for ax in axes.flat:
        ax.set_ylim(-0.5, 1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=200, help="KAN grid size G (default 200)")
    parser.add_argument(
        "--steps", type=int, default=500, help="Adam steps per phase, both models (default 500)"
    )
    parser.add_argument("--samples", type=int, default=100, help="training samples per phase (default 100)")
    parser.add_argument("--kan-lr", type=float, default=0.1, help="KAN Adam learning rate (default 0.1)")
    parser.add_argument("--mlp-lr", type=float, default=3e-3, help="MLP Adam learning rate (default 3e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", help="write the phase-by-phase figure here")
    parser.add_argument("--quick", action="store_true", help="smoke test: G = 50, 60 steps per phase")
    args = parser.parse_args(argv)
    if args.quick:
        args.grid, args.steps = 50, 60
    torch.set_num_threads(1)
    start = time.perf_counter()

    generator = torch.Generator().manual_seed(args.seed)
    phases = [phase_data(i, args.samples, generator) for i in range(len(CENTRES))]

    kan = kantk.KAN(
        [1, 1],
        basis="bspline",
        basis_kwargs={"grid_size": args.grid, "order": 3},
        base_activation="zero",
        seed=args.seed,
    )
    for layer in kan.layers:
        layer.scale_sp.requires_grad_(False)  # only the local coefficients learn
    mlp = make_mlp(args.seed)

    snapshots: list[dict[str, Any]] = []
    xs = torch.linspace(-1, 1, 1000).unsqueeze(1)
    for data in phases:
        kantk.fit(
            kan, data, steps=args.steps, optimizer="adam", lr=args.kan_lr, progress=False, seed=args.seed
        )
        train_mlp(mlp, data, args.steps, lr=args.mlp_lr)
        with torch.no_grad():
            snapshots.append({"kan": kan(xs).clone(), "mlp": mlp(xs).clone()})

    rows = [
        {"peak": i + 1, "centre": c, "kan": region_rmse(kan, i), "mlp": region_rmse(mlp, i)}
        for i, c in enumerate(CENTRES)
    ]
    elapsed = time.perf_counter() - start

    print(
        f"continual learning: {len(CENTRES)} phases, {args.samples} samples each, {args.steps} Adam steps "
        f"per phase; KAN [1, 1] G={args.grid} base_activation=zero vs MLP [1, 64, 64, 1] SiLU"
    )
    print("RMSE on each peak's interval after the last phase:")
    print("| peak | centre | interval | KAN RMSE | MLP RMSE |")
    print("|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["centre"] - HALF, r["centre"] + HALF
        print(
            f"| {r['peak']} | {r['centre']:+.1f} | [{lo:+.1f}, {hi:+.1f}] | {r['kan']:.2e} | {r['mlp']:.2e} |"
        )
    earlier_kan = math.sqrt(sum(r["kan"] ** 2 for r in rows[:-1]) / (len(rows) - 1))
    earlier_mlp = math.sqrt(sum(r["mlp"] ** 2 for r in rows[:-1]) / (len(rows) - 1))
    print(f"earlier peaks (1-{len(rows) - 1}) RMSE: KAN {earlier_kan:.2e}  MLP {earlier_mlp:.2e}")
    print(f"time: {elapsed:.1f} s")
    if args.plot:
        plot(args.plot, snapshots, phases)
        print(f"figure written to {args.plot}")
    return {"rows": rows, "earlier_kan": earlier_kan, "earlier_mlp": earlier_mlp, "seconds": elapsed}


if __name__ == "__main__":
    main()
