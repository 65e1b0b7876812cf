"""`creditflow ledger ...`: operator commands on the ledger (filled in by the ledger work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `ledger` command group."""
    parser = subparsers.add_parser("ledger", help="ledger operations (verify, seal)")
    parser.set_defaults(handler=lambda args: parser.print_help())
