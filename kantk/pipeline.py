"""The flagship workflow in one call: fit -> sparsify -> prune -> refine -> symbolic -> refit.

``discover`` follows pykan's "hello KAN" recipe (Liu et al. 2024, section 2.5): a [n, 5, 1]
B-spline KAN trained with the l1_entropy sparsity regulariser, pruned to the edges that matter,
refined to a finer grid, every edge fitted to a symbolic function, and the symbolic model
refitted; the result is a closed-form formula. ``kantk discover`` is its command line.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from kantk.model import KAN

logger = logging.getLogger(__name__)

DEFAULT_FORMULA = "exp(sin(pi*x1) + x2**2)"


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes:
        formulas: One sympy expression per output; empty when some edge stayed numeric (its
            best symbolic fit was below the r^2 threshold); the model and files are still written.
        test_rmse: RMSE of the final symbolic model on the test split.
        widths: Widths after pruning.
        model: The final (symbolic) model.
        stages: Seconds spent per stage, in order.
        files: Paths written (model, graph, plot), empty when no output folder was given.
    """

    formulas: list[Any]  # empty when some edge could not be made symbolic
    test_rmse: float
    widths: list[int]
    model: KAN
    stages: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def discover(
    formula: str | None = DEFAULT_FORMULA,
    *,
    data: dict[str, torch.Tensor] | None = None,
    n_vars: int | None = None,
    hidden: int = 5,
    grid_size: int = 3,
    refine_to: int = 10,
    steps: int = 50,
    l1_entropy: float = 1e-3,
    library: Any = "minimal",
    var_names: Sequence[str] | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int | None = 1,
) -> Discovery:
    """Find a closed-form formula for data (or a formula's samples) with a KAN.

    Args:
        formula: A formula of x1..xn to sample (ignored when ``data`` is given).
        data: A dataset dict (``train_input``, ``train_label``, ``test_input``, ``test_label``),
            e.g. from :func:`kantk.load_csv`; one output column.
        n_vars: Number of variables of ``formula`` (default: the highest ``x<i>`` it names).
        hidden: Hidden width before pruning.
        grid_size, refine_to: B-spline grid before and after refinement.
        steps: LBFGS steps of each of the four fits.
        l1_entropy: Weight of the sparsity regulariser in the first fit.
        library: Symbolic library (registry name, as for :func:`kantk.auto_symbolic`).
        var_names: Names of the inputs in the formula (default ``x1 .. xn``).
        seed: Seeds data, initialisation and training.
        output_dir: When given, writes ``model.kantk``, ``graph.svg`` (needs Graphviz's ``dot``;
            ``graph.dot`` otherwise) and ``activations.png`` there. Nothing is written otherwise.
        progress: Called with a short message at every stage (e.g. ``print``).
        threads: torch intra-op threads during the run (restored afterwards); ``None`` leaves
            the setting alone. One thread is fastest for these tiny models: a few thousand
            small ops per step gain nothing from threads and stall badly on a busy machine.

    Returns:
        A :class:`Discovery`.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _discover(formula, data, n_vars, hidden, grid_size, refine_to, steps, l1_entropy,
                         library, var_names, seed, output_dir, progress)
    finally:
        torch.set_num_threads(old_threads)


def _discover(formula, data, n_vars, hidden, grid_size, refine_to, steps, l1_entropy, library, var_names,
              seed, output_dir, progress) -> Discovery:
    import kantk

    say = progress or (lambda message: logger.info(message))
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def done(stage: str, message: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = now - clock
        clock = now
        say(f"[{sum(stages.values()):5.1f} s] {message}")

    if data is None:
        if formula is None:
            raise ValueError("discover needs a formula or a data dict")
        if n_vars is None:
            import re

            found = [int(v) for v in re.findall(r"x(\d+)", formula)]
            if not found:
                raise ValueError(f"formula {formula!r} names no variable x1, x2, ...; pass n_vars")
            n_vars = max(found)
        data = kantk.create_dataset(formula, n_vars=n_vars, train_num=1000, test_num=1000, seed=seed,
                                    dtype=torch.float64)
    data = kantk.check_dataset(data)
    data = {k: v.to(torch.float64) for k, v in data.items()}
    n_in = data["train_input"].shape[1]
    if data["train_label"].dim() != 2 or data["train_label"].shape[1] != 1:
        raise ValueError("discover fits one output; give labels of shape (samples, 1)")
    with _float64():
        model = KAN([n_in, hidden, 1], basis_kwargs={"grid_size": grid_size, "order": 3}, seed=seed)
    fit = {"progress": False, "seed": seed}
    done("setup", f"data: {len(data['train_input'])} train / {len(data['test_input'])} test samples, model {model.widths}")

    kantk.fit(model, data, steps=steps, regularisers={"l1_entropy": {"weight": l1_entropy}}, **fit)
    done("sparsify", f"fitted with l1_entropy ({steps} LBFGS steps): test RMSE {_rmse(model, data):.2e}")
    model = kantk.prune(model, data["train_input"])
    kantk.fit(model, data, steps=steps, **fit)
    done("prune", f"pruned to {model.widths} and refitted: test RMSE {_rmse(model, data):.2e}")
    model = kantk.refine(model, grid_size=refine_to)
    kantk.fit(model, data, steps=steps, **fit)
    done("refine", f"refined to G={refine_to} and refitted: test RMSE {_rmse(model, data):.2e}")
    kantk.auto_symbolic(model, data["train_input"], library=library)
    kantk.fit(model, data, steps=steps, **fit)
    rmse = _rmse(model, data)
    done("symbolic", f"every edge symbolic, refitted: test RMSE {rmse:.2e}")
    try:
        formulas = kantk.symbolic_formula(model, var_names=var_names)
        done("formula", "formula: " + "; ".join(str(f) for f in formulas))
    except ValueError as exc:  # some edge stayed numeric: keep the model, report why
        formulas, problem = [], str(exc)
        done("formula", f"no closed form: {problem}")

    files: dict[str, str] = {}
    if output_dir is not None:
        files = _write_outputs(model, data["train_input"], os.fspath(output_dir), var_names)
        done("write", "wrote " + ", ".join(files.values()))
    return Discovery(formulas, rmse, list(model.widths), model, stages, files)


def _write_outputs(model: KAN, x: torch.Tensor, folder: str, var_names: Sequence[str] | None) -> dict[str, str]:
    import shutil

    import kantk
    from kantk.export import render_graph, to_graphviz

    os.makedirs(folder, exist_ok=True)
    files = {"model": os.path.join(folder, "model.kantk")}
    kantk.save(model, files["model"])
    dot = to_graphviz(model, x, var_names=var_names)
    if shutil.which("dot"):
        files["graph"] = render_graph(dot, os.path.join(folder, "graph.svg"))
    else:
        files["graph"] = os.path.join(folder, "graph.dot")
        dot.save(files["graph"])
        logger.warning("Graphviz 'dot' not found: wrote the DOT source %s instead of an SVG", files["graph"])
    files["plot"] = os.path.join(folder, "activations.png")
    kantk.plot_activations(model, x, in_vars=var_names).savefig(files["plot"], dpi=150)
    return files


def _rmse(model: KAN, data: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)))


class _float64:
    def __enter__(self) -> None:
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc: Any) -> None:
        torch.set_default_dtype(self.old)
