"""The KAN paper's 2-D Poisson problem (section 3.4) as a PINN trained by ``kantk.fit(loss=...)``.

    u_xx + u_yy = f   on [-1, 1]^2,   u = 0 on the boundary,
    f = -pi^2 (1 + 4 y^2) sin(pi x) sin(pi y^2) + 2 pi sin(pi x) cos(pi y^2),

with solution u* = sin(pi x) sin(pi y^2). ``examples/poisson_pde.py`` trains the same problem with
a hand-written LBFGS loop (and compares an MLP); here the whole training is ``kantk.fit`` with a
callable objective ``loss(model, batch)``:

    loss = alpha * mean over the batch's interior points of (u_xx + u_yy - f)^2
           + mean over the boundary points of u^2,          alpha = 0.01, float64.

The training "data" are the interior collocation points (``train_input``; ``train_label`` holds
u* there, which the loss ignores); the boundary points live in the callable. ``kantk.fit`` adds
its LBFGS settings (objective rescaling, strong Wolfe), grid updates on the interior points
(every 5 steps for the first 20 of each grid, ``grid_eps=1``) and grid extension by
``kantk.refine`` between fits. The Laplacian comes from double backward (``--derivatives
autograd``, default) or from ``torch.func.vmap(torch.func.hessian(...))`` (``--derivatives func``).

Printed: the squared L2 error of u against u* on an n x n test grid before training and after
each grid, and the PINN loss.

Run:  python examples/poisson_pinn.py [--interior 2500] [--grids 5 10 20] [--steps 50]
      python examples/poisson_pinn.py --quick          # seconds: 200 points, grids 3 -> 5, 10 steps
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

import kantk

ALPHA = 0.01
WIDTHS = [2, 10, 1]


def exact(x: torch.Tensor) -> torch.Tensor:
    """u*(x, y) = sin(pi x) sin(pi y^2); x: (N, 2) -> (N, 1)."""
    return (torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1] ** 2)).unsqueeze(-1)


def source(x: torch.Tensor) -> torch.Tensor:
    """f = u*_xx + u*_yy, (N,)."""
    a, b, y = math.pi * x[:, 0], math.pi * x[:, 1] ** 2, x[:, 1]
    return -(math.pi**2) * (1 + 4 * y**2) * torch.sin(a) * torch.sin(b) + 2 * math.pi * torch.sin(
        a
    ) * torch.cos(b)


def boundary_points(n_side: int) -> torch.Tensor:
    """``n_side`` evenly spaced points on each side of [-1, 1]^2, (4 n_side, 2)."""
    t = torch.linspace(-1, 1, n_side, dtype=torch.float64)
    one = torch.ones_like(t)
    return torch.cat([torch.stack(p, -1) for p in ((-one, t), (one, t), (t, -one), (t, one))])


def grid_points(n: int) -> torch.Tensor:
    """n x n evenly spaced points over [-1, 1]^2, (n * n, 2)."""
    t = torch.linspace(-1, 1, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def laplacian_autograd(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """u_xx + u_yy at x (N, 2) by double backward, differentiable in the parameters, (N,)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)  # (N, 2)
    u_xx = torch.autograd.grad(grad[:, 0].sum(), x, create_graph=True)[0][:, 0]
    u_yy = torch.autograd.grad(grad[:, 1].sum(), x, create_graph=True)[0][:, 1]
    return u_xx + u_yy


def laplacian_func(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same by ``torch.func``: the trace of each point's Hessian, (N,)."""

    def u(point: torch.Tensor) -> torch.Tensor:  # (2,) -> ()
        return model(point.unsqueeze(0)).reshape(())

    hessians = torch.func.vmap(torch.func.hessian(u))(x.detach())  # (N, 2, 2)
    return hessians.diagonal(dim1=-2, dim2=-1).sum(-1)


class PoissonLoss:
    """The PINN objective as ``kantk.fit``'s ``loss(model, batch)``: the batch is ``(interior
    points (B, 2), labels)``; the boundary points are fixed here."""

    def __init__(self, boundary: torch.Tensor, derivatives: str = "autograd"):
        self.boundary = boundary
        self.laplacian = laplacian_func if derivatives == "func" else laplacian_autograd

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        interior = batch[0]
        pde = (self.laplacian(model, interior) - source(interior)).square().mean()
        bc = model(self.boundary.to(interior)).square().mean()
        return ALPHA * pde + bc


def l2_error(model: torch.nn.Module, x: torch.Tensor) -> float:
    """mean (u - u*)^2 over the points x (N, 2)."""
    with torch.no_grad():
        return float((model(x) - exact(x)).square().mean())


def train(
    interior: int = 2500,
    side: int = 200,
    grids: Sequence[int] = (5, 10, 20),
    steps: int = 50,
    max_iter: int = 20,
    test: int = 100,
    derivatives: str = "autograd",
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train the PINN KAN; returns the errors and losses after each grid (and before training)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(interior, 2, generator=g, dtype=torch.float64) * 2 - 1
    data = {"train_input": points, "train_label": exact(points)}
    loss = PoissonLoss(boundary_points(side), derivatives)
    x_test = grid_points(test)
    model = kantk.KAN(WIDTHS, basis_kwargs={"grid_size": grids[0]}, seed=seed).to(torch.float64)
    rows = [
        {"grid": None, "l2": l2_error(model, x_test), "loss": float(loss(model, (points, None)).detach())}
    ]
    start = time.perf_counter()
    for i, grid in enumerate(grids):
        if i > 0:
            model = kantk.refine(model, grid)
        history = kantk.fit(
            model,
            data,
            steps=steps,
            loss=loss,
            optimizer="lbfgs",
            optimizer_kwargs={"max_iter": max_iter},
            grid_update_every=5,
            grid_update_until=min(20, steps),
            grid_eps=1.0,
            seed=seed,
            progress=False,
        )
        rows.append({"grid": grid, "l2": l2_error(model, x_test), "loss": history.train_loss[-1]})
        if verbose:
            print(
                f"G={grid}: PINN loss {rows[-1]['loss']:.2e}, L2^2 {rows[-1]['l2']:.2e} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return {"rows": rows, "model": model}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interior", type=int, default=2500, help="interior points (paper 10000)")
    parser.add_argument("--side", type=int, default=200, help="boundary points per side")
    parser.add_argument("--grids", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps per grid")
    parser.add_argument("--max-iter", type=int, default=20, help="LBFGS iterations per step")
    parser.add_argument("--test", type=int, default=100, help="test grid points per side")
    parser.add_argument("--derivatives", choices=("autograd", "func"), default="autograd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, a few steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.interior, args.side, args.grids, args.steps, args.max_iter, args.test = (
            200,
            20,
            [3, 5],
            10,
            10,
            20,
        )
    print(f"{args.interior} interior + {4 * args.side} boundary points, alpha = {ALPHA}, float64", flush=True)
    result = train(
        args.interior,
        args.side,
        args.grids,
        args.steps,
        args.max_iter,
        args.test,
        args.derivatives,
        args.seed,
    )
    first, last = result["rows"][0], result["rows"][-1]
    print(f"L2^2: {first['l2']:.2e} before training -> {last['l2']:.2e}")
    return result


if __name__ == "__main__":
    main()
