"""The ``kantk`` command line."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import kantk


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kantk`` console command."""
    parser = argparse.ArgumentParser(prog="kantk", description="Kolmogorov-Arnold Network toolkit")
    parser.add_argument("--version", action="version", version=f"kantk {kantk.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("plugins", help="list the registered bases, regularisers, pruners and symbolic libraries")
    args = parser.parse_args(argv)
    if args.command == "plugins":
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
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
