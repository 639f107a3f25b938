"""Solving a PDE (the KAN paper's section 3.4, Figure 3.3): a 2-D Poisson problem as a PINN.

    u_xx + u_yy = f   on [-1, 1]^2,   u = 0 on the boundary,
    f = -pi^2 (1 + 4 y^2) sin(pi x) sin(pi y^2) + 2 pi sin(pi x) cos(pi y^2),

whose solution is u = sin(pi x) sin(pi y^2). A network u_theta(x, y) is trained on the
physics-informed loss

    loss = alpha * mean over interior points of (u_xx + u_yy - f)^2 + mean over boundary points of u^2,

alpha = 0.01, float64. The second derivatives come from double backward through the network
(``torch.autograd.grad(..., create_graph=True)`` twice), through the KAN's B-spline layers too.

Models:

* KAN [2, 10, 1], cubic B-splines, grid extension G = 5 -> 10 -> 20 (``kantk.refine``, exact
  knot insertion). At each grid: LBFGS (pykan's settings: strong Wolfe, history 10, max_iter 20,
  tolerances 1e-32) on the loss divided by its value at the start of the grid (torch's LBFGS
  skips curvature pairs with y.s <= 1e-10, which stalls it at small losses; see
  ``examples/grid_extension.py``), with ``update_grid`` on the interior points every 5 steps for
  the first 20 steps of each grid. The grid update uses ``grid_eps=1.0`` (uniform knots over the
  range of each layer's inputs), so the fast uniform path stays. At G <= 20 kantk evaluates the
  splines on its dense path (the sparse one is chosen from G + k >= 64 on); both support the
  double backward (and the backward through it) that the loss needs.
* MLP [2, 100, 100, 100, 1], tanh, the same LBFGS loop (restarted, with a fresh normalisation,
  every 25 steps).

Errors on a 100 x 100 test grid over [-1, 1]^2 (boundary included): L2^2 = mean (u - u*)^2 and
H1^2 = L2^2 + mean |grad u - grad u*|^2, recorded after every LBFGS step. Parameters: KAN spline
coefficients (edges x (G + 3), as the paper counts them) and all trainable ones (with the
per-edge scales); MLP all weights and biases.

Points: interior points uniform at random in (-1, 1)^2 (``--interior``, paper 10000) and 200
evenly spaced points per side of the boundary (800). The MLP's Laplacian costs ~6x the KAN's per
point (20k parameters vs ~750), so the default interior set is smaller than the paper's to keep
the full run within ~10 minutes on one CPU thread; ``--interior 10000`` is the paper's size.

Run:  python examples/poisson_pde.py [--plot poisson_pde.png] [--interior 10000] \
          [--kan-steps 50] [--mlp-steps 50]
      python examples/poisson_pde.py --interior 10000 --models kan      # the paper's point count, KAN only

``--quick`` is a smoke test (200 interior points, grids 3 -> 5, a few short steps) that runs in
seconds. Nothing is written unless ``--plot`` names a path: error versus step (log scale) for
both models, and the KAN's solution and error maps.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

import kantk

ALPHA = 0.01
KAN_WIDTHS = (2, 10, 1)
MLP_WIDTHS = (2, 100, 100, 100, 1)
GRIDS = (5, 10, 20)
#: The paper's Figure 3.3 (approximate): final L2^2 of KAN [2, 10, 1] and of the MLP.
PAPER = {"KAN": 1e-7, "MLP": 1e-5}


def exact(x: torch.Tensor) -> torch.Tensor:
    """u*(x, y) = sin(pi x) sin(pi y^2); x: (N, 2) -> (N, 1)."""
    return (torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1] ** 2)).unsqueeze(-1)


def exact_grad(x: torch.Tensor) -> torch.Tensor:
    """grad u*, (N, 2)."""
    a, b = math.pi * x[:, 0], math.pi * x[:, 1] ** 2
    return torch.stack(
        [math.pi * torch.cos(a) * torch.sin(b), 2 * math.pi * x[:, 1] * torch.sin(a) * torch.cos(b)], dim=-1
    )


def source(x: torch.Tensor) -> torch.Tensor:
    """f = u*_xx + u*_yy, (N,)."""
    a, b, y = math.pi * x[:, 0], math.pi * x[:, 1] ** 2, x[:, 1]
    return -(math.pi**2) * (1 + 4 * y**2) * torch.sin(a) * torch.sin(b) + 2 * math.pi * torch.sin(
        a
    ) * torch.cos(b)


def make_points(n_interior: int, n_side: int, seed: int) -> dict[str, torch.Tensor]:
    """Interior points uniform in (-1, 1)^2, ``n_side`` evenly spaced points on each side, f."""
    g = torch.Generator().manual_seed(seed)
    interior = torch.rand(n_interior, 2, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.linspace(-1, 1, n_side, dtype=torch.float64)
    one = torch.ones_like(t)
    boundary = torch.cat(
        [
            torch.stack([-one, t], -1),
            torch.stack([one, t], -1),
            torch.stack([t, -one], -1),
            torch.stack([t, one], -1),
        ]
    )
    return {"interior": interior, "boundary": boundary, "f": source(interior)}


def test_grid(n: int) -> torch.Tensor:
    """n x n evenly spaced points over [-1, 1]^2, (n * n, 2)."""
    t = torch.linspace(-1, 1, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def laplacian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """u_xx + u_yy at x (N, 2), differentiable w.r.t. the parameters (double backward), (N,)."""
    x = x.detach().requires_grad_(True)
    u = model(x)
    grad = torch.autograd.grad(u.sum(), x, create_graph=True)[0]  # (N, 2)
    u_xx = torch.autograd.grad(grad[:, 0].sum(), x, create_graph=True)[0][:, 0]
    u_yy = torch.autograd.grad(grad[:, 1].sum(), x, create_graph=True)[0][:, 1]
    return u_xx + u_yy


def pinn_loss(model: torch.nn.Module, pts: dict[str, torch.Tensor]) -> torch.Tensor:
    """alpha * mean (u_xx + u_yy - f)^2 over the interior + mean u^2 over the boundary."""
    pde = torch.mean((laplacian(model, pts["interior"]) - pts["f"]) ** 2)
    bc = torch.mean(model(pts["boundary"]) ** 2)
    return ALPHA * pde + bc


def errors(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """(L2^2, H1^2) of the model against u* on the points x (N, 2)."""
    x = x.detach().requires_grad_(True)
    u = model(x)
    grad = torch.autograd.grad(u.sum(), x)[0]
    l2 = float(torch.mean((u.detach() - exact(x.detach())) ** 2))
    return l2, l2 + float(torch.mean(torch.sum((grad - exact_grad(x.detach())) ** 2, dim=-1)))


def train_lbfgs(
    model: torch.nn.Module,
    pts: dict[str, torch.Tensor],
    steps: int,
    max_iter: int,
    record: Callable[[float], None],
    grid_update_until: int = 0,
    grid_update_every: int = 5,
    history: int = 10,
) -> None:
    """LBFGS (pykan's settings) on the PINN loss divided by its value at the start.

    With ``grid_update_until > 0`` (KANs) the grids follow the interior points (uniform knots
    over each layer's input range, ``grid_eps=1.0``) every ``grid_update_every`` steps before
    that step. ``record(loss)`` is called after every step.
    """
    opt = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=history,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-32,
        tolerance_change=1e-32,
    )
    scale = 1.0

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = pinn_loss(model, pts) / scale
        loss.backward()
        return loss

    for step in range(steps):
        if step < grid_update_until and step % grid_update_every == 0:
            model.update_grid(pts["interior"], grid_eps=1.0)
        if step == 0:  # keeps LBFGS's absolute curvature test y.s > 1e-10 relative to the loss
            scale = max(float(pinn_loss(model, pts).detach()), 1e-300)
        opt.step(closure)
        record(float(pinn_loss(model, pts).detach()))


def kan_params(model: kantk.KAN) -> tuple[int, int]:
    """(spline coefficients, all trainable parameters)."""
    return (
        sum(layer.coef.numel() for layer in model.layers),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def make_mlp(widths: Sequence[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(widths[:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(widths[-2], widths[-1])).to(torch.float64)


class Recorder:
    """Loss, L2^2 and H1^2 after every step, and the wall-clock time."""

    def __init__(self, model_fn: Callable[[], torch.nn.Module], x_test: torch.Tensor):
        self.model_fn, self.x_test = model_fn, x_test
        self.loss: list[float] = []
        self.l2: list[float] = []
        self.h1: list[float] = []
        self.start = time.perf_counter()

    def __call__(self, loss: float) -> None:
        self.loss.append(loss)
        l2, h1 = errors(self.model_fn(), self.x_test)
        self.l2.append(l2)
        self.h1.append(h1)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def run_kan(
    pts: dict[str, torch.Tensor],
    x_test: torch.Tensor,
    grids: Sequence[int],
    steps: int,
    max_iter: int,
    update_until: int,
    seed: int,
) -> tuple[list[dict[str, Any]], Recorder, kantk.KAN]:
    model = kantk.KAN(list(KAN_WIDTHS), basis_kwargs={"grid_size": grids[0], "order": 3}, seed=seed)
    model = model.to(torch.float64)
    box = {"model": model}
    rec = Recorder(lambda: box["model"], x_test)
    initial = float(pinn_loss(model, pts).detach())
    rows = []
    for i, grid in enumerate(grids):
        if i > 0:
            box["model"] = model = kantk.refine(model, grid)
        train_lbfgs(model, pts, steps, max_iter, rec, grid_update_until=update_until)
        coefs, total = kan_params(model)
        rows.append(
            {
                "model": f"KAN {list(KAN_WIDTHS)} G={grid}",
                "coefs": coefs,
                "params": total,
                "steps": len(rec.loss),
                "initial_loss": initial,
                "loss": rec.loss[-1],
                "l2": rec.l2[-1],
                "h1": rec.h1[-1],
                "seconds": rec.seconds,
            }
        )
        r = rows[-1]
        print(
            f"{r['model']}: loss {r['loss']:.2e}, L2^2 {r['l2']:.2e}, H1^2 {r['h1']:.2e} "
            f"({r['steps']} steps, {r['seconds']:.0f} s)",
            flush=True,
        )
    return rows, rec, model


def run_mlp(
    pts: dict[str, torch.Tensor], x_test: torch.Tensor, steps: int, max_iter: int, restart: int, seed: int
) -> tuple[dict[str, Any], Recorder, torch.nn.Module]:
    model = make_mlp(MLP_WIDTHS, seed)
    rec = Recorder(lambda: model, x_test)
    initial = float(pinn_loss(model, pts).detach())
    for done in range(0, steps, restart):  # fresh LBFGS (and normalisation) every `restart` steps
        train_lbfgs(model, pts, min(restart, steps - done), max_iter, rec)
        print(
            f"MLP {list(MLP_WIDTHS)}: step {len(rec.loss)}: loss {rec.loss[-1]:.2e}, L2^2 {rec.l2[-1]:.2e}, "
            f"H1^2 {rec.h1[-1]:.2e} ({rec.seconds:.0f} s)",
            flush=True,
        )
    n = sum(p.numel() for p in model.parameters())
    row = {
        "model": f"MLP {list(MLP_WIDTHS)} tanh",
        "coefs": n,
        "params": n,
        "steps": len(rec.loss),
        "initial_loss": initial,
        "loss": rec.loss[-1],
        "l2": rec.l2[-1],
        "h1": rec.h1[-1],
        "seconds": rec.seconds,
    }
    return row, rec, model


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| model | coefficients / all parameters | LBFGS steps (cumulative) | PINN loss | L2^2 | H1^2 "
        "| paper L2^2 | time |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kind = r["model"].split()[0]
        last = r is rows[-1] or rows[rows.index(r) + 1]["model"].split()[0] != kind
        paper = f"~{PAPER[kind]:.0e}" if last else "-"
        lines.append(
            f"| {r['model']} | {r['coefs']} / {r['params']} | {r['steps']} | {r['loss']:.2e} | "
            f"{r['l2']:.2e} | {r['h1']:.2e} | {paper} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def plot(
    path: str, curves: list[tuple[str, Recorder]], model: torch.nn.Module, name: str, grid_steps: list[int]
) -> None:
    """Error versus step for every model (log scale), and ``model``'s solution and error maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for (label, rec), color in zip(curves, ("C0", "C1")):
        steps = range(1, len(rec.l2) + 1)
        ax.plot(steps, rec.l2, "-", color=color, label=f"{label} L2$^2$")
        ax.plot(steps, rec.h1, "--", color=color, label=f"{label} H1$^2$")
    for s in grid_steps[:-1]:  # KAN grid extensions
        ax.axvline(s + 0.5, color="0.8", lw=0.8)
    ax.set(yscale="log", xlabel="LBFGS step", ylabel="squared error", title="Poisson PINN: error vs step")
    ax.legend(fontsize=7)
    n = 100
    x = test_grid(n)
    with torch.no_grad():
        u = model(x).reshape(n, n)
    err = (u - exact(x).reshape(n, n)).abs()
    for ax, values, title in ((axes[1], u, f"{name}: u(x, y)"), (axes[2], err, f"{name}: |u - u*|")):
        im = ax.imshow(values.T.numpy(), origin="lower", extent=(-1, 1, -1, 1), cmap="viridis")
        ax.set(xlabel="x", ylabel="y", title=title)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--interior", type=int, default=2500, help="interior points (paper 10000; default 2500)"
    )
    parser.add_argument("--side", type=int, default=200, help="boundary points per side (default 200)")
    parser.add_argument("--grids", type=int, nargs="+", default=list(GRIDS))
    parser.add_argument("--kan-steps", type=int, default=50, help="KAN LBFGS steps per grid (default 50)")
    parser.add_argument("--mlp-steps", type=int, default=50, help="MLP LBFGS steps (default 50)")
    parser.add_argument("--max-iter", type=int, default=20, help="LBFGS iterations per step (default 20)")
    parser.add_argument("--test", type=int, default=100, help="test grid points per side (default 100)")
    parser.add_argument("--models", nargs="+", choices=("kan", "mlp"), default=["kan", "mlp"])
    parser.add_argument("--seed", type=int, default=0, help="model and data seed")
    parser.add_argument("--plot", metavar="PATH", help="write the error-versus-step figure here")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny point sets, a few short steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.interior, args.side, args.grids, args.test = 200, 20, [3, 5], 20
        args.kan_steps, args.mlp_steps, args.max_iter = 3, 3, 5
    start = time.perf_counter()
    pts = make_points(args.interior, args.side, args.seed)
    x_test = test_grid(args.test)
    print(
        f"{args.interior} interior + {4 * args.side} boundary points, alpha = {ALPHA}, "
        f"test grid {args.test}x{args.test}, float64",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    curves: list[tuple[str, Recorder]] = []
    shown: tuple[str, torch.nn.Module] | None = None
    grid_steps: list[int] = []
    if "kan" in args.models:
        update_until = min(20, args.kan_steps)
        kan_rows, kan_rec, kan = run_kan(
            pts, x_test, args.grids, args.kan_steps, args.max_iter, update_until, args.seed
        )
        rows += kan_rows
        curves.append((f"KAN {list(KAN_WIDTHS)}", kan_rec))
        shown, grid_steps = (
            (f"KAN {list(KAN_WIDTHS)} G={args.grids[-1]}", kan),
            [r["steps"] for r in kan_rows],
        )
    if "mlp" in args.models:
        mlp_row, mlp_rec, mlp = run_mlp(pts, x_test, args.mlp_steps, args.max_iter, 25, args.seed)
        rows.append(mlp_row)
        curves.append((f"MLP {list(MLP_WIDTHS)}", mlp_rec))
        shown = shown or (f"MLP {list(MLP_WIDTHS)}", mlp)
    print()
    print(table(rows))
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")
    for r in rows:  # sanity: training reduced the loss, errors are finite
        assert r["loss"] < r["initial_loss"], r
        assert math.isfinite(r["l2"]) and math.isfinite(r["h1"]), r
    if args.plot and shown is not None:
        plot(args.plot, curves, shown[1], shown[0], grid_steps)
        print(f"plot written to {args.plot}")
    return {"rows": rows, "curves": curves}


if __name__ == "__main__":
    main()
