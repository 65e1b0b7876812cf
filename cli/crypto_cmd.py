"""`creditflow crypto review`: the crypto transfers an operator must look at, and marking one dealt with."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from orchestration.bootstrap import bootstrap
from orchestration.payments.crypto import review as payments_crypto_review
from runtime.local import with_local_defaults
from runtime.settings import settings_or_exit


def run_review(args: argparse.Namespace) -> int:
    """List the transfers waiting for an operator (JSON lines), or mark one reviewed; 1 if it is unknown."""
    services = bootstrap(with_local_defaults(settings_or_exit(), start_redis=False))
    try:
        if args.reviewed is not None:
            done = payments_crypto_review.reviewed(services, args.reviewed, datetime.now(UTC))
            print(f"transfer {args.reviewed}: {'reviewed' if done else 'not a transfer listed for review'}")
            return 0 if done else 1
        for row in payments_crypto_review.listed(services):
            print(json.dumps(row, default=str))
    finally:
        services.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `crypto` command group."""
    parser = subparsers.add_parser("crypto", help="crypto payments (review)")
    parser.set_defaults(handler=lambda args: parser.print_help())
    commands = parser.add_subparsers(dest="crypto_command", metavar="ACTION")
    review = commands.add_parser("review", help="transfers an operator must look at (README, crypto)")
    review.add_argument("--reviewed", type=int, metavar="ID", help="mark transfer ID as dealt with")
    review.set_defaults(handler=run_review)
