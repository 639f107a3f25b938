"""Fit a [2, 5, 1] B-spline KAN to f(x1, x2) = exp(sin(pi*x1) + x2**2) and print the test RMSE.

Run:  python examples/fit_formula.py [--steps 100] [--seed 0]

kantk.fit trains in place (full-batch LBFGS, pykan's settings) and writes nothing to disk.
"""

from __future__ import annotations

import argparse
import time

import torch

import kantk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    data = kantk.create_dataset(
        "exp(sin(pi*x1) + x2**2)", n_vars=2, train_num=1000, test_num=1000, seed=args.seed
    )
    model = kantk.KAN([2, 5, 1], basis="bspline", basis_kwargs={"grid_size": 5, "order": 3}, seed=args.seed)
    start = time.perf_counter()
    history = kantk.fit(model, data, steps=args.steps, optimizer="lbfgs", seed=args.seed)
    print(
        f"final test RMSE {history.test_rmse[-1]:.3e} after {args.steps} LBFGS steps "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
