"""What the low-balance check costs a job's hold, on PostgreSQL: money units/s of a hold through the unit
of work (its account lock also reads the user's watch, then the check) next to a floor measured in the
same run: the same hold after the lock statement as it was before notifications (no watch read, no check).

Run: DATABASE_URL=postgresql://... .venv/bin/python bench/notify.py [--seconds 4]
Creates (and drops) its own throw-away database. Rows:
  floor            lock (account only) + ledger.hold, one transaction each
  no watch         services.uow(account_of=...) + ledger.hold + thresholds.check_debit (most users)
  watched, above   the same for a user with a threshold far below the balance (one more balance read)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger
from ledger.tables import accounts
from orchestration.notify import thresholds
from orchestration.uow import unit_of_work
from runtime.db import single_statement_engine
from tests.support.databases import fresh_database

M = ledger.MICRO
ROUNDS = 3
_OLD_LOCK = select(accounts.c.id).where(accounts.c.user_id == bindparam("user_id")).with_for_update()


def _fund(engine: Engine, user_id: str) -> None:
    with engine.begin() as db:
        ledger.ensure_user_account(db, user_id=user_id, welcome_grant=False)
        ledger.purchase(
            db, user_id=user_id, amount=10**9 * M, rail="stripe", reference=None,
            idempotency_key=f"fund:{user_id}",
        )


def _hold(db: object, user_id: str) -> None:
    ledger.hold(
        db,  # type: ignore[arg-type]
        user_id=user_id,
        amount=M,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        reference=None,
        idempotency_key=uuid.uuid4().hex,
    )


def _rate(step: Callable[[], None], seconds: float, limit: int = 50_000) -> tuple[float, float]:
    """(operations/s, client CPU µs per operation) over at most `seconds` and `limit` operations."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while done < limit and time.perf_counter() - start < seconds:
        step()
        done += 1
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return done / wall, used / done * 1e6


def main() -> None:
    """Print each row's rate and CPU next to the floor's."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fresh_database("postgresql", Path(tmp), pool_size=2) as engine:
        single = single_statement_engine(engine)
        plain, watched = "bench-plain", "bench-watched"
        for user in (plain, watched):
            _fund(engine, user)
        with unit_of_work(engine, single, account_of=watched) as db:
            thresholds.choose(db, user_id=watched, preference=[M])  # far below the balance

        def floor() -> None:
            with engine.begin() as db:
                db.execute(_OLD_LOCK, {"user_id": plain})
                _hold(db, plain)

        def checked(user: str) -> Callable[[], None]:
            def step() -> None:
                with unit_of_work(engine, single, account_of=user) as db:
                    _hold(db, user)
                    thresholds.check_debit(db, user_id=user)

            return step

        for warm in (floor, checked(plain), checked(watched)):
            _rate(warm, 0.3)
        # Rounds interleaved, best of each kept: commits wait on the disk, whose pace drifts over a run.
        steps = {"floor": floor, "no watch": checked(plain), "watched, above": checked(watched)}
        best: dict[str, tuple[float, float]] = {}
        for _round in range(ROUNDS):
            for name, step in steps.items():
                rate, cpu = _rate(step, args.seconds / ROUNDS)
                old = best.get(name, (0.0, float("inf")))
                best[name] = (max(old[0], rate), min(old[1], cpu))
        rows = list(best.items())
        base_rate, base_cpu = rows[0][1]
        print(f"{'row':<16}{'holds/s':>10}{'CPU µs':>10}{'rate/floor':>12}{'CPU/floor':>11}")
        for name, (rate, cpu) in rows:
            print(f"{name:<16}{rate:>10.0f}{cpu:>10.0f}{rate / base_rate:>12.2f}{cpu / base_cpu:>11.2f}")


if __name__ == "__main__":
    main()
