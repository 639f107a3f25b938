"""Start-up cost of ``import kantk`` and of the ``kantk`` command's help, against ``import torch``.

Every figure is the median wall time of ``--runs`` fresh Python processes, measured in the same
run as the baseline ``python -c "import torch"``, and printed as seconds and as the excess over
(or ratio to) that baseline, since machines differ. Run::

    .venv/bin/python benchmarks/import_speed.py --runs 7

Targets (issue 19): ``import kantk`` at most 0.3 s over ``import torch`` (``import kantk; kantk.KAN``
is also shown, since the package imports torch only when a name is used); ``kantk --help`` and each
subcommand's ``--help`` at most 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = (
    "predict",
    "prune",
    "symbolic",
    "export",
    "plot",
    "discover",
    "plugins",
    "fit",
    "validate",
    "test",
)


def wall(argv: list[str], runs: int) -> float:
    """Median wall time (s) of ``runs`` runs of ``argv`` (output discarded; must exit 0)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired(a: list[str], b: list[str], runs: int) -> tuple[float, float]:
    """Median wall times of ``a`` and ``b``, run alternately ``runs`` times each."""
    ta, tb = [], []
    for _ in range(runs):
        ta.append(wall(a, 1))
        tb.append(wall(b, 1))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per figure (median; default 5)")
    args = parser.parse_args()
    py = sys.executable
    cli = [py, "-m", "kantk.cli"]
    env_note = f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    base = wall([py, "-c", "import torch"], args.runs)
    bare = wall([py, "-c", "pass"], args.runs)
    print(f"# median of {args.runs} processes; {env_note}")
    print(f"{'what':38s} {'seconds':>8s} {'over torch':>11s}")
    print(f"{'python -c pass':38s} {bare:8.3f}")
    print(f"{'import torch (baseline)':38s} {base:8.3f} {0.0:+11.3f}")
    for label, code in (
        ("import kantk", "import kantk"),
        ("import kantk; kantk.KAN", "import kantk; kantk.KAN"),
        ("import kantk; kantk.symbolic_formula", "import kantk; kantk.symbolic_formula"),
    ):
        # alternate with the baseline, so that a change in the machine's load hits both alike
        t, torch_t = paired([py, "-c", code], [py, "-c", "import torch"], args.runs)
        print(f"{label:38s} {t:8.3f} {t - torch_t:+11.3f}  (torch in the same runs: {torch_t:.3f})")
    print(f"{'what':38s} {'seconds':>8s} {'/ torch':>11s}")
    for command in ("", *COMMANDS):
        t = wall([*cli, *([command] if command else []), "--help"], args.runs)
        label = f"kantk {command + ' ' if command else ''}--help"
        print(f"{label:38s} {t:8.3f} {t / base:11.2f}")


if __name__ == "__main__":
    main()
