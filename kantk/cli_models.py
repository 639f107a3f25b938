"""The ``kantk`` subcommands that work on a saved model: prune, symbolic, export, plot.

Each reads a model (a ``.kantk`` file from :func:`kantk.save`, or a Lightning ``.ckpt`` of a
:class:`kantk.lightning.KANModule`), takes samples to score it on (a CSV file, a formula, or
uniform samples over a range), and writes only the path given with ``-o``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import torch

import kantk
from kantk.model import KAN


def load_model(path: str) -> KAN:
    """A KAN from a ``.kantk`` file or a KANModule Lightning checkpoint (``.ckpt``)."""
    if not os.path.exists(path):
        raise SystemExit(f"kantk: no model file at {path!r}")
    if path.endswith(".ckpt"):
        from kantk.lightning import KANModule

        return KANModule.load_from_checkpoint(path, map_location="cpu").model
    try:
        return kantk.load(path)
    except (kantk.KantkFileError, kantk.UnknownComponentError) as exc:
        raise SystemExit(f"kantk: cannot load {path!r}: {exc}") from None


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data CSV`` or ``--range LO HI`` with ``--samples N`` and ``--seed``."""
    group = parser.add_argument_group("samples to score the model on (default: uniform over --range)")
    group.add_argument("--data", metavar="CSV", help="CSV file whose first columns are the model's inputs")
    group.add_argument("--range", nargs=2, type=float, default=(-1.0, 1.0), metavar=("LO", "HI"))
    group.add_argument("--samples", type=int, default=1000)
    group.add_argument("--seed", type=int, default=0)


def samples(args: argparse.Namespace, model: KAN) -> torch.Tensor:
    """(samples, widths[0]) inputs in the model's dtype, from the command's sample arguments."""
    dtype = model.layers[0].coef.dtype
    n_in = model.widths[0]
    if args.data:
        import numpy as np

        try:
            table = np.loadtxt(args.data, delimiter=",", ndmin=2)
        except ValueError:
            table = np.loadtxt(args.data, delimiter=",", ndmin=2, skiprows=1)
        if table.shape[1] < n_in:
            raise SystemExit(f"kantk: {args.data!r} has {table.shape[1]} columns; the model needs {n_in} inputs")
        return torch.as_tensor(table[:, :n_in], dtype=dtype)
    lo, hi = args.range
    if not lo < hi:
        raise SystemExit(f"kantk: --range needs LO < HI, got {lo} {hi}")
    gen = torch.Generator().manual_seed(args.seed)
    return torch.rand(args.samples, n_in, generator=gen, dtype=dtype) * (hi - lo) + lo


def _output(args: argparse.Namespace) -> str:
    out = os.fspath(args.output)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise SystemExit(f"kantk: the folder of {out!r} does not exist")
    return out


def configure_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the pruned model (.kantk)")
    parser.add_argument("--pruner", default="threshold", help="registry name (kantk plugins lists them)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="pruner option, e.g. --option node_th=0.01 (repeatable)")
    parser.add_argument("--prune-inputs", action="store_true", help="also remove unimportant input features")
    add_sample_arguments(parser)


def run_prune(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    out = _output(args)
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"kantk: --option needs KEY=VALUE, got {item!r}")
        options[key] = json.loads(value) if value[:1] in "-0123456789[{tfn" else value
    x = samples(args, model)
    try:
        pruned = kantk.prune(model, x, pruner=args.pruner, prune_inputs=args.prune_inputs, **options)
    except (ValueError, TypeError, kantk.UnknownComponentError) as exc:
        raise SystemExit(f"kantk prune: {exc}") from None
    kantk.save(pruned, out)
    print(f"pruned {model.widths} -> {pruned.widths}; wrote {out}")
    return 0


def configure_symbolic(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="where to write the symbolic model (.kantk)")
    parser.add_argument("--library", default="default", help="symbolic library (kantk plugins lists them)")
    parser.add_argument("--r2-threshold", type=float, default=0.9, help="keep an edge numeric below this r^2")
    parser.add_argument("--var-names", nargs="+", help="names of the inputs in the printed formula")
    parser.add_argument("--latex", action="store_true", help="also print the formula as LaTeX")
    add_sample_arguments(parser)


def run_symbolic(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    out = _output(args)
    x = samples(args, model)
    try:
        kantk.auto_symbolic(model, x, library=args.library, r2_threshold=args.r2_threshold)
    except (ValueError, kantk.UnknownComponentError) as exc:
        raise SystemExit(f"kantk symbolic: {exc}") from None
    kantk.save(model, out)
    try:
        formulas = kantk.symbolic_formula(model, var_names=args.var_names)
    except ValueError as exc:
        print(f"wrote {out}; no closed form yet: {exc}", file=sys.stderr)
        return 1
    for q, expr in enumerate(formulas):
        print(f"y{q + 1} = {expr}")
        if args.latex:
            print(f"    LaTeX: {kantk.formula_to_latex(expr)}")
    print(f"wrote {out}")
    return 0


EXPORT_FORMATS = ("svg", "png", "pdf", "dot", "json")


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="output file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=None, help="default: from the output's extension")
    parser.add_argument("--var-names", nargs="+", help="names of the inputs")
    parser.add_argument("--edge-plots", action="store_true",
                        help="draw each edge's function on the diagram (pictures go beside the output)")
    add_sample_arguments(parser)


def run_export(args: argparse.Namespace) -> int:
    from kantk.export import GraphvizNotFoundError, render_graph, to_graphviz, to_networkx

    model = load_model(args.model)
    out = _output(args)
    fmt = args.format or os.path.splitext(out)[1].lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise SystemExit(f"kantk export: unknown format {fmt!r}; accepted: {', '.join(EXPORT_FORMATS)}")
    x = samples(args, model)
    if fmt == "json":
        import networkx as nx

        graph = to_networkx(model, x, var_names=args.var_names)
        with open(out, "w") as f:
            json.dump(nx.node_link_data(graph, edges="links"), f, indent=1, default=list)
    else:
        plots = os.path.splitext(out)[0] + "_edges" if args.edge_plots else None
        dot = to_graphviz(model, x, var_names=args.var_names, edge_plots=plots)
        if fmt == "dot":
            dot.save(out)
        else:
            try:
                out = render_graph(dot, out, format=fmt)
            except GraphvizNotFoundError as exc:
                raise SystemExit(f"kantk export: {exc}") from None
    print(f"wrote {out}")
    return 0


def configure_plot(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.kantk or KANModule .ckpt)")
    parser.add_argument("-o", "--output", required=True, help="image file (.png, .svg, .pdf)")
    parser.add_argument("--var-names", nargs="+", help="names of the inputs")
    add_sample_arguments(parser)


def run_plot(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    out = _output(args)
    x = samples(args, model)
    fig = kantk.plot_activations(model, x, in_vars=args.var_names)
    fig.savefig(out, dpi=150)
    print(f"wrote {out}")
    return 0


def commands() -> dict[str, Any]:
    """(help, configure, run) of each model command, for :mod:`kantk.cli`."""
    return {
        "prune": ("prune a saved model on samples and write the smaller model", configure_prune, run_prune),
        "symbolic": ("fit every edge to a symbolic function, print the formula, write the model",
                     configure_symbolic, run_symbolic),
        "export": ("export the network graph as svg, png, pdf, dot or json", configure_export, run_export),
        "plot": ("draw every edge's function into an image", configure_plot, run_plot),
        "discover": ("the whole workflow: fit, sparsify, prune, refine, symbolic, refit; print the formula",
                     configure_discover, run_discover),
    }


def configure_discover(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--formula", default=None,
                        help="formula of x1..xn to sample (default: exp(sin(pi*x1) + x2**2))")
    parser.add_argument("--csv", metavar="PATH",
                        help="your own data instead: a CSV whose last column is the label (header optional)")
    parser.add_argument("-o", "--output", default="kantk-out", help="output folder (default: kantk-out/)")
    parser.add_argument("--steps", type=int, default=50, help="LBFGS steps of each of the four fits")
    parser.add_argument("--hidden", type=int, default=5, help="hidden width before pruning")
    parser.add_argument("--library", default="minimal", help="symbolic library (kantk plugins lists them)")
    parser.add_argument("--var-names", nargs="+", help="names of the inputs in the formula")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print only the formula and the test RMSE")


def run_discover(args: argparse.Namespace) -> int:
    from kantk.pipeline import DEFAULT_FORMULA, discover

    data = None
    if args.csv:
        if args.formula:
            raise SystemExit("kantk discover: give --formula or --csv, not both")
        data = _csv_dataset(args.csv, args.seed)
    say = None if args.quiet else (lambda message: print(message, flush=True))
    if say:
        say(f"kantk discover: {args.csv or args.formula or DEFAULT_FORMULA} -> {args.output}/")
    try:
        result = discover(
            None if data is not None else (args.formula or DEFAULT_FORMULA),
            data=data, hidden=args.hidden, steps=args.steps, library=args.library,
            var_names=args.var_names, seed=args.seed, output_dir=args.output, progress=say,
        )
    except (ValueError, kantk.UnknownComponentError) as exc:
        raise SystemExit(f"kantk discover: {exc}") from None
    for q, expr in enumerate(result.formulas):
        print(f"formula: y{q + 1} = {expr}" if len(result.formulas) > 1 else f"formula: {expr}")
    if not result.formulas:
        print("formula: none found (some edges stayed numeric; try more --steps or --library default)")
    print(f"test RMSE: {result.test_rmse:.3e}")
    return 0 if result.formulas else 1


def _csv_dataset(path: str, seed: int) -> dict[str, torch.Tensor]:
    import numpy as np

    if not os.path.exists(path):
        raise SystemExit(f"kantk discover: no CSV file at {path!r}")
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError:
        table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
    if table.shape[1] < 2 or table.shape[0] < 10:
        raise SystemExit(f"kantk discover: {path!r} needs input columns and a label column, and at least 10 rows")
    table = torch.as_tensor(table, dtype=torch.float64)
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(table))
    train, test = table[order[:cut]], table[order[cut:]]
    return {"train_input": train[:, :-1], "train_label": train[:, -1:],
            "test_input": test[:, :-1], "test_label": test[:, -1:]}
