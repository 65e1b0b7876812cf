"""`creditflow ledger ...`: operator commands on the ledger (verify, seal, public-key)."""

from __future__ import annotations

import argparse
import json
import sys

import ledger
from orchestration.reports import audit
from orchestration.uow import unit_of_work
from runtime.db import make_engine, single_statement_engine
from runtime.local import with_local_defaults
from runtime.settings import Settings, settings_or_exit


def _settings() -> Settings:
    return with_local_defaults(settings_or_exit(), start_redis=False)


def run_verify(args: argparse.Namespace) -> int:
    """Verify hashes, chains, balances, zero sum, checkpoints, signatures, the audit log; non-zero if bad."""
    settings = _settings()
    verifier = ledger.verifier_from_key(args.public_key or settings.LEDGER_SIGNING_KEY)
    engine = make_engine(settings.database_url)
    try:
        with unit_of_work(engine, single_statement_engine(engine), snapshot=True) as db:
            report = audit.verify_books(db, verifier=verifier)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        chain = report["audit"]
        state = "OK" if report["ok"] else "FAILED"
        print(f"ledger {state}: {report['entries_checked']} entries, "
              f"{report['checkpoints_checked']} checkpoints, {chain['rows_checked']} audit rows "
              f"checked in {report['seconds']:.2f} s")
        if report["first_bad_entry"] is not None:
            print(f"first bad entry: {report['first_bad_entry']}")
        if chain["first_bad_seq"] is not None:
            print(f"first bad audit row: {chain['first_bad_seq']}")
        for problem in [*report["problems"], *chain["problems"]]:
            print(f"  {json.dumps(problem, default=str)}")
    return 0 if report["ok"] else 1


def run_seal(args: argparse.Namespace) -> int:
    """Seal every unsealed entry into signed checkpoints (batches of --limit)."""
    settings = _settings()
    signer = ledger.signer_from_key(settings.LEDGER_SIGNING_KEY)
    engine = make_engine(settings.database_url)
    sealed = checkpoints = 0
    try:
        while True:
            with unit_of_work(engine, engine) as db:
                checkpoint = ledger.seal(db, signer=signer, limit=args.limit)
            if checkpoint is None:
                break
            sealed, checkpoints = sealed + checkpoint.size, checkpoints + 1
            print(f"checkpoint {checkpoint.number}: {checkpoint.size} entries, root {checkpoint.root.hex()}")
    finally:
        engine.dispose()
    print(f"sealed {sealed} entries into {checkpoints} checkpoints")
    return 0


def run_public_key(args: argparse.Namespace) -> int:
    """Print the verification key clients use to check proofs (Ed25519 PEM)."""
    verifier = ledger.signer_from_key(_settings().LEDGER_SIGNING_KEY).verifier
    pem = verifier.public_key_pem()
    if pem is None:
        print("the ledger signs with HMAC: there is no public key to publish", file=sys.stderr)
        return 1
    print(pem, end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `ledger` command group."""
    parser = subparsers.add_parser("ledger", help="ledger operations (verify, seal, public-key)")
    parser.set_defaults(handler=lambda args: parser.print_help())
    commands = parser.add_subparsers(dest="ledger_command", metavar="ACTION")
    verify = commands.add_parser("verify", help="recompute and check the whole ledger")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--public-key", default=None, help="a PEM public key instead of LEDGER_SIGNING_KEY")
    verify.set_defaults(handler=run_verify)
    seal = commands.add_parser("seal", help="seal unsealed entries into signed checkpoints")
    seal.add_argument("--limit", type=int, default=100_000, help="entries per checkpoint")
    seal.set_defaults(handler=run_seal)
    public_key = commands.add_parser("public-key", help="print the checkpoint verification key")
    public_key.set_defaults(handler=run_public_key)
