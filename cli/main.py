"""`creditflow` entry point: one subcommand module per concern, each with `register()`."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from cli import crypto_cmd, ledger_cmd, processes, tools


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="creditflow", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (processes, tools, ledger_cmd, crypto_cmd):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; its return value is the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        # The interpreter's last collections walk every object import made (web3, Celery, SQLAlchemy):
        # seconds of a stopping worker or API on a busy host. Frozen, they are left to the exit.
        gc.freeze()
