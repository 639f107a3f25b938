"""The ``kantk`` command line.

``kantk fit|validate|test --config configs/<name>.yaml`` hands over to Lightning's
``LightningCLI`` (any key can be overridden on the command line, ``--print_config`` prints the
merged config). Every other command is an entry of :data:`COMMANDS`; later commands (prune,
symbolic, export, plot) are added there.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import kantk

#: Subcommands run by LightningCLI, with their one-line help.
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a KAN from a YAML config: kantk fit --config configs/toy.yaml",
    "validate": "evaluate a KAN on the validation split (LightningCLI validate)",
    "test": "evaluate a KAN on the test split (LightningCLI test)",
}


@dataclass(frozen=True)
class Command:
    """A plain (non-Lightning) subcommand.

    Attributes:
        help: One line for ``kantk --help``.
        configure: Adds the command's arguments to its ``argparse`` sub-parser.
        run: Runs it with the parsed arguments; returns the exit status.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _plugins_run(args: argparse.Namespace) -> int:
    registry = kantk.default_registry()
    for kind, table in (
        ("bases", registry.bases),
        ("regularisers", registry.regularisers),
        ("pruners", registry.pruners),
        ("symbolic libraries", registry.symbolic_libraries),
    ):
        names = ", ".join(f"{n} ({table.owner(n)})" for n in table.names()) or "(none)"
        print(f"{kind}: {names}")
    for failed in registry.failed_plugins:
        print(f"failed to load: {failed.name} from {failed.package}: {failed.error}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Command] = {
    "plugins": Command(
        "list the registered bases, regularisers, pruners and symbolic libraries",
        lambda parser: None,
        _plugins_run,
    ),
}


def _model_commands() -> None:
    from kantk.cli_models import commands

    for name, (help_text, configure, run) in commands().items():
        COMMANDS.setdefault(name, Command(help_text, configure, run))


_model_commands()


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--version``, the plain commands, and the Lightning ones (for help)."""
    parser = argparse.ArgumentParser(prog="kantk", description="Kolmogorov-Arnold Network toolkit")
    parser.add_argument("--version", action="version", version=f"kantk {kantk.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # parsed by LightningCLI instead
    for name, command in COMMANDS.items():
        command.configure(sub.add_parser(name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kantk`` console command."""
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        # From the console LightningCLI reads sys.argv itself (it warns when given both).
        cli = run_lightning_cli(None if from_console else argv)
        summary = _summary(argv[0], cli)
        if summary:
            print(summary)
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        return COMMANDS[args.command].run(args)
    parser.print_help()
    return 0


def _summary(command: str, cli: Any) -> str:
    """One closing line: the step reached, the final evaluation metrics and where the logs are."""
    trainer = getattr(cli, "trainer", None)
    if trainer is None:
        return ""
    metrics = {
        k: float(v) for k, v in sorted(trainer.callback_metrics.items())
        if k.startswith(("val_", "test_")) and getattr(v, "numel", lambda: 1)() == 1
    }
    parts = [f"kantk {command}: step {trainer.global_step}"]
    parts += [f"{k} {v:.3e}" for k, v in metrics.items()]
    where = trainer.log_dir or trainer.default_root_dir
    return ", ".join(parts) + (f" (logs in {where})" if where else "")


def run_lightning_cli(argv: Sequence[str] | None, **cli_kwargs: Any) -> Any:
    """Run ``LightningCLI`` over :class:`kantk.lightning.KANModule` and any LightningDataModule.

    Args:
        argv: Starting with the subcommand, e.g. ``["fit", "--config", "configs/toy.yaml"]``;
            ``None`` reads ``sys.argv``.
        **cli_kwargs: Passed to ``LightningCLI`` (e.g. ``run=False`` in tests).

    Returns:
        The ``LightningCLI`` object (its ``trainer`` and ``model`` hold the results).
    """
    try:
        from pytorch_lightning import LightningDataModule
        from pytorch_lightning.cli import LightningCLI
    except ImportError as exc:  # jsonargparse comes with the 'cli' extra
        raise SystemExit(f"kantk's Lightning commands need the CLI extra: pip install 'kantk[cli]' ({exc})") from None
    from kantk.lightning import KANModule

    settings: dict[str, Any] = {
        "subclass_mode_data": True,
        "auto_configure_optimizers": False,  # KANModule configures its own optimizer
        "save_config_kwargs": {"overwrite": True},
        "parser_kwargs": {"prog": "kantk"},
        "args": None if argv is None else list(argv),
    }
    settings.update(cli_kwargs)
    return LightningCLI(KANModule, LightningDataModule, **settings)


if __name__ == "__main__":
    sys.exit(main())
