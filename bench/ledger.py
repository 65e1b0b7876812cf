"""Ledger benchmark on PostgreSQL: hold+capture pairs/s next to raw single-statement updates.

Run: DATABASE_URL=postgresql://... .venv/bin/python bench/ledger.py [--seconds 8]
Creates (and drops) its own throw-away database.

Floor: the same number of raw `UPDATE bench_floor SET balance = balance - 1 WHERE id = :id AND
balance >= 1` statements, one per transaction, through the same engine and connection pool.
Both sides open their transactions the same way, `engine.begin()` (a Connection); the application
passes ORM Sessions, which costs a little more client CPU: the "via Session" row shows that figure.
A hold+capture pair is two ledger transactions, so the table shows pairs/s against both the
floor's updates/s (one update per pair) and half of it (one update per ledger transaction).
The "  no raw path" row runs the 1000-accounts scenario with `ledger.sql.pg_one`'s statements sent
through SQLAlchemy's `exec_driver_sql` instead of the raw psycopg cursor: what that speed trick buys.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ClauseElement, Connection, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger
import ledger.sql
from bench.results import Results, add_json_argument
from ledger.tables import unsealed
from tests.support.databases import fresh_database

THREADS = 8
ACCOUNTS = 1000
M = ledger.MICRO
KEY = "hmac:bench-ledger-signing-key-0123456789"


def setup(factory: sessionmaker[Session], engine: Engine) -> list[str]:
    """1000 funded users plus a hot one, and the floor's plain balance table."""
    users = [f"user-{i}" for i in range(ACCOUNTS)] + ["hot"]
    for start in range(0, len(users), 100):
        with factory.begin() as session:
            for user in users[start : start + 100]:
                ledger.ensure_user_account(session, user_id=user)
                ledger.purchase(
                    session,
                    user_id=user,
                    amount=1_000_000 * M,
                    rail="stripe",
                    reference=f"seed-{user}",
                    idempotency_key=f"seed-{user}",
                )
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE bench_floor (id integer PRIMARY KEY, balance bigint NOT NULL "
                "CHECK (balance >= 0))"
            )
        )
        conn.execute(
            text("INSERT INTO bench_floor SELECT g, 1000000000000 FROM generate_series(0, :n) g"),
            {"n": ACCOUNTS},
        )
    return users


def _on_threads(loop: Callable[[int], None]) -> float:
    """Run loop(i) on THREADS threads started together; the elapsed seconds (the first error re-raised)."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            loop(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def run_threads(work: Callable[[int, random.Random], None], count: int) -> float:
    """Run `count` calls of work spread over THREADS threads; returns elapsed seconds."""
    per_thread = [count // THREADS + (1 if i < count % THREADS else 0) for i in range(THREADS)]

    def loop(index: int) -> None:
        rng = random.Random(index)
        for _ in range(per_thread[index]):
            work(index, rng)

    return _on_threads(loop)


def run_for(work: Callable[[int, random.Random], None], seconds: float) -> tuple[int, float]:
    """Run work on THREADS threads for about `seconds`; returns (calls, elapsed)."""
    deadline = time.perf_counter() + seconds
    counts = [0] * THREADS

    def loop(index: int) -> None:
        rng = random.Random(1000 + index)
        while time.perf_counter() < deadline:
            work(index, rng)
            counts[index] += 1

    elapsed = _on_threads(loop)
    return sum(counts), elapsed


class Sealer:
    """Seals every `interval` seconds in the background and records the unsealed backlog."""

    def __init__(self, factory: sessionmaker[Session], interval: float = 0.5) -> None:
        self.factory, self.interval = factory, interval
        self.signer = ledger.signer_from_key(KEY)
        self.max_backlog = 0
        self.sealed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self.factory.begin() as session:
                checkpoint = ledger.seal(session, signer=self.signer)
                self.sealed += checkpoint.size if checkpoint else 0
            with self.factory() as session:
                backlog = session.execute(select(func.count()).select_from(unsealed)).scalar_one()
            self.max_backlog = max(self.max_backlog, backlog)

    def __enter__(self) -> Sealer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ledger_pairs(
    begin: Callable[[], AbstractContextManager[Session | Connection]],
    pick: Callable[[random.Random], str],
    charged: dict[str, int],
    lock: threading.Lock,
) -> Callable[[int, random.Random], None]:
    """One hold (3 credits) and one capture (1..3 credits), each in its own transaction."""

    def pair(index: int, rng: random.Random) -> None:
        user = pick(rng)
        key = uuid.uuid4().hex
        now = datetime.now(UTC)
        with begin() as session:
            held = ledger.hold(
                session,
                user_id=user,
                amount=3 * M,
                expires_at=now + timedelta(minutes=10),
                reference=f"job-{key}",
                idempotency_key=f"h-{key}",
                now=now,
            )
        amount = rng.randint(1, 3) * M
        with begin() as session:
            ledger.capture(session, hold_id=held.id, amount=amount, idempotency_key=f"c-{key}")
        with lock:
            charged[user] = charged.get(user, 0) + amount

    return pair


def floor_updates(
    engine: Engine, pick: Callable[[random.Random], int]
) -> Callable[[int, random.Random], None]:
    """The floor: one raw conditional update per transaction, same engine and pool."""
    statement = text("UPDATE bench_floor SET balance = balance - 1 WHERE id = :id AND balance >= 1")

    def update(index: int, rng: random.Random) -> None:
        with engine.begin() as conn:
            if conn.execute(statement, {"id": pick(rng)}).rowcount != 1:
                raise RuntimeError("floor update refused")

    return update


@contextmanager
def without_raw_path() -> Iterator[None]:
    """Run pg_one's precompiled statements through SQLAlchemy's exec_driver_sql for a while."""
    compiled: dict[int, str] = {}

    def through_sqlalchemy(connection: Connection, statement: ClauseElement, params: dict[str, Any]) -> Any:
        sql = compiled.get(id(statement))
        if sql is None:
            sql = compiled[id(statement)] = str(statement.compile(dialect=connection.dialect))
        return connection.exec_driver_sql(sql, params).first()

    raw, ledger.sql.pg_one = ledger.sql.pg_one, through_sqlalchemy
    try:
        yield
    finally:
        ledger.sql.pg_one = raw


def check_invariants(factory: sessionmaker[Session], charged: dict[str, int]) -> int:
    """Violations: held left over, balances that don't match what was charged, negative available."""
    violations = 0
    with factory() as session:
        for user, spent in charged.items():
            posted, held, available = ledger.balance(session, user_id=user)
            expected = 1_000_000 * M + ledger.WELCOME_GRANT - spent
            violations += int(held != 0) + int(posted != expected) + int(available < 0)
    return violations


def scenario(
    *,
    engine: Engine,
    factory: sessionmaker[Session],
    users: list[str],
    charged: dict[str, int],
    seconds: float,
    hot: bool,
    orm: bool = False,
    rounds: int = 4,
) -> tuple[float, float, int, int, float]:
    """Ledger pairs and the floor in alternating rounds (the same number of updates as pairs each
    round), so a passing disturbance (autovacuum, a checkpoint) hits both sides alike.

    Returns (pairs/s, floor updates/s, invariant violations, largest unsealed backlog in entries,
    this process's CPU per pair in ms: steadier than rates on a shared machine)."""
    lock = threading.Lock()
    pick_user = (lambda rng: "hot") if hot else (lambda rng: users[rng.randrange(ACCOUNTS)])
    pick_row = (lambda rng: ACCOUNTS) if hot else (lambda rng: rng.randrange(ACCOUNTS))
    begin = factory.begin if orm else engine.begin
    total_pairs, ledger_elapsed, floor_elapsed, backlog, cpu = 0, 0.0, 0.0, 0, 0.0
    for _ in range(rounds):
        started = time.process_time()
        with Sealer(factory) as sealer:  # sealing is ledger work: it runs during ledger rounds only
            pairs, elapsed = run_for(ledger_pairs(begin, pick_user, charged, lock), seconds / rounds)
        cpu += time.process_time() - started
        backlog = max(backlog, sealer.max_backlog)
        floor_elapsed += run_threads(floor_updates(engine, pick_row), pairs)
        total_pairs += pairs
        ledger_elapsed += elapsed
    violations = check_invariants(factory, charged)
    cpu_ms = 1000 * cpu / total_pairs
    return total_pairs / ledger_elapsed, total_pairs / floor_elapsed, violations, backlog, cpu_ms


def bulk_fill(factory: sessionmaker[Session], pairs: int) -> None:
    """More history for verify to chew on: hold+capture pairs, 250 per transaction, on 2 threads."""

    def fill(index: int, rng: random.Random) -> None:
        user = f"bulk-{index}-{rng.random()}"
        with factory.begin() as session:
            ledger.ensure_user_account(session, user_id=user)
            ledger.purchase(
                session,
                user_id=user,
                amount=10**7 * M,
                rail="paypal",
                reference=user,
                idempotency_key=f"fill-{user}",
            )
            for i in range(250):
                key = f"{user}-{i}"
                held = ledger.hold(
                    session,
                    user_id=user,
                    amount=2 * M,
                    expires_at=datetime.now(UTC) + timedelta(minutes=10),
                    reference=key,
                    idempotency_key=f"h-{key}",
                )
                ledger.capture(session, hold_id=held.id, amount=M, idempotency_key=f"c-{key}")

    threads = [
        threading.Thread(target=lambda i=i: [fill(i, random.Random(f"{i}-{n}")) for n in range(pairs // 500)])
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> int:
    """Run both scenarios, sealing and verification; print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="ledger run time per scenario")
    parser.add_argument("--verify-pairs", type=int, default=20_000, help="extra history for verify")
    add_json_argument(parser)
    args = parser.parse_args()
    results = Results("ledger")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("bench/ledger.py needs DATABASE_URL=postgresql://...", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database("postgresql", Path(tmp), pool_size=THREADS) as engine,
    ):
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        users = setup(factory, engine)
        print(
            f"PostgreSQL, {THREADS} client threads, pool {THREADS}; floor = raw single-statement UPDATE "
            "per transaction\n"
        )
        print(
            f"{'scenario':<14}{'pairs/s':>10}{'floor upd/s':>13}{'pair:upd':>10}{'pair:upd/2':>12}"
            f"{'violations':>12}{'max unsealed':>14}{'CPU/pair':>10}"
        )
        total_violations = 0
        backlog_ok = True
        charged: dict[str, int] = {}
        per_transaction: dict[str, float] = {}
        for name, hot, orm, raw in (
            ("1000 accounts", False, False, True),
            ("hot account", True, False, True),
            ("  via Session", False, True, True),
            ("  no raw path", False, False, False),
        ):
            with nullcontext() if raw else without_raw_path():
                rate, floor_rate, violations, backlog, cpu_ms = scenario(
                    engine=engine,
                    factory=factory,
                    users=users,
                    charged=charged,
                    seconds=args.seconds,
                    hot=hot,
                    orm=orm,
                )
            backlog_s = backlog / (2 * rate)
            backlog_ok &= backlog_s < 5
            total_violations += violations
            per_transaction[name] = 2 * rate / floor_rate
            goal = {"1000 accounts": 0.50, "hot account": 0.30}.get(name)
            results.add(f"{name.strip()}: ledger transactions/s", 2 * rate, "tx/s", floor=floor_rate,
                        floor_name="raw UPDATE/s", goal_ratio=goal)
            print(
                f"{name:<14}{rate:>10.0f}{floor_rate:>13.0f}{rate / floor_rate:>10.1%}"
                f"{2 * rate / floor_rate:>12.1%}{violations:>12}{backlog_s:>12.2f} s{cpu_ms:>7.2f} ms"
            )
        bulk_fill(factory, args.verify_pairs)
        with factory.begin() as session:
            while ledger.seal(session, signer=ledger.signer_from_key(KEY)):
                pass
        print()
        for attempt in ("cold", "warm"):
            with factory() as session:
                cpu = time.process_time()
                report = ledger.verify(session, verifier=ledger.verifier_from_key(KEY))
                cpu = time.process_time() - cpu
            print(
                f"verify ({attempt}): {report.entries_checked} entries, "
                f"{report.checkpoints_checked} checkpoints "
                f"in {report.seconds:.2f} s = {report.entries_checked / report.seconds:,.0f} entries/s "
                f"(client CPU {cpu:.2f} s), ok={report.ok}"
            )
        if not report.ok:
            print(f"  problems: {report.problems[:5]}")
        elapsed = time.perf_counter() - started
        speed = report.entries_checked / report.seconds
        verdicts = [
            ("1000 accounts", per_transaction["1000 accounts"], 0.50),
            ("hot account", per_transaction["hot account"], 0.30),
        ]
        print(
            "goals, per ledger transaction (a pair against two raw updates): "
            + "; ".join(f"{name} {got:.1%} (>= {goal:.0%}) {'OK' if got >= goal else 'BELOW'}"
                        for name, got, goal in verdicts)
            + f"; verify {speed:,.0f} entries/s (>= 100,000) {'OK' if speed >= 100_000 else 'BELOW'}"
        )
        print(
            f"invariant violations: {total_violations}; zero sum and cached balances: {report.ok}; "
            f"sealing kept up (< 5 s backlog): {backlog_ok}; total run {elapsed:.0f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        results.add("verify", speed, "entries/s", goal_value=100_000)
        results.add("invariant violations", total_violations, "", goal_value=0, higher_is_better=False)
        results.write(args.json)
    return 0 if report.ok and total_violations == 0 and backlog_ok else 1


if __name__ == "__main__":
    sys.exit(main())
