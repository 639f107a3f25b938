"""Fit a [2, 5, 1] B-spline KAN to f(x1, x2) = exp(sin(pi*x1) + x2**2) and print the test RMSE.

Run:  python examples/fit_formula.py [--steps 100] [--seed 0]

Until kantk.fit lands this uses a plain full-batch LBFGS loop; nothing is written to disk.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import kantk


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:2] ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(args.seed)
    x_train = torch.rand(1000, 2, generator=gen) * 2 - 1
    x_test = torch.rand(1000, 2, generator=gen) * 2 - 1
    y_train, y_test = target(x_train), target(x_test)

    model = kantk.KAN([2, 5, 1], basis="bspline", basis_kwargs={"grid_size": 5, "order": 3}, seed=args.seed)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-32, tolerance_change=1e-32)

    def closure():
        opt.zero_grad()
        loss = torch.mean((model(x_train) - y_train) ** 2)
        loss.backward()
        return loss

    start = time.perf_counter()
    for step in range(args.steps):
        opt.step(closure)
        if (step + 1) % 20 == 0:
            with torch.no_grad():
                rmse = torch.sqrt(torch.mean((model(x_test) - y_test) ** 2)).item()
            print(f"step {step + 1:4d}  test RMSE {rmse:.3e}", flush=True)
    with torch.no_grad():
        rmse = torch.sqrt(torch.mean((model(x_test) - y_test) ** 2)).item()
    print(f"final test RMSE {rmse:.3e} after {args.steps} LBFGS steps in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
