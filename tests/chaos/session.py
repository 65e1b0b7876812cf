"""One seeded chaos session on the real stack: a private PostgreSQL cluster and Redis, the API, a prefork
critical pool, a threads pool for the waiting jobs and beat (the pools and beat reach Redis and PostgreSQL
through TCP proxies of the suite's own, tests/chaos/proxy.py), under a steady mixed load (diagnostic jobs on
every I/O queue, echo chat turns, four users), with a plan's faults (tests/chaos/schedule.py) in turn.

After the faults every job must end within BOUND_S, every hold be resolved exactly once (held =
charged + released), no AI step run twice, the books sum to zero, `creditflow ledger verify` pass, no
dead letter be left and no client be answered a 500. The session prints its seed and what it did.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import Engine, select

from orchestration.tables import jobs
from runtime.db import make_engine
from runtime.migrate import upgrade
from tests.chaos.faults import Faults
from tests.chaos.invariants import ENDED, problems
from tests.chaos.load import Load
from tests.chaos.proxy import Proxy
from tests.chaos.schedule import Plan
from tests.chaos.stack import ChaosRedis, Stack, stack_env
from tests.support.postgres_server import private_postgres
from tests.support.processes import ROOT

# Every job ends this long after the last fault at the latest: the reaper's heartbeat timeout, a
# retried settlement's backoff, the longest diagnostic job (9 s) and JOB_QUEUE_TIMEOUT_S for a message a
# dead link swallowed (counted from the job's creation, before the last fault) fit in it.
BOUND_S = 90.0


def seed_from_env() -> int:
    """CHAOS_SEED (a replay), else a fresh seed."""
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))


def keeps_every_promise(plan: Plan, tmp_path: Path, *, label: str, **settings: str) -> None:
    """Run the plan on a fresh stack (`settings` over the suite's), print what it did and found, and
    assert every promise."""
    seed = plan.seed
    print(
        f"\n{label} seed {seed} (replay: CHAOS_SEED={seed}): {len(plan.jobs)} jobs, "
        f"faults {[f.name for f in plan.faults]}"
    )
    with private_postgres() as postgres:
        database = postgres.url
        engine = make_engine(database)
        upgrade(engine)
        redis = ChaosRedis(tmp_path / "redis")
        redis.start(persist=True)
        env = stack_env(database, redis.url, tmp_path / "var", **settings)
        links = (Proxy(redis.port), Proxy(postgres.port))
        worker_env = {
            "REDIS_URL": f"redis://127.0.0.1:{links[0].port}/0",
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{links[1].port}/postgres",
        }
        stack = Stack(env, tmp_path, worker_env=worker_env)
        faults = Faults(stack, redis, postgres, links, engine, random.Random(seed))
        started = time.monotonic()
        try:
            stack.start_all()
            applied = _run(plan, stack, faults)
            load_counts, accepted, chats, unexpected = applied.pop("load")  # type: ignore[misc]
            waited, still_open = _until_all_ended(engine, time.monotonic() + BOUND_S, stack, applied)
            if still_open:  # where each process is stuck, for the report
                print(f"  stacks of every process: {_dump_stacks(stack, tmp_path / 'stacks.txt')}")
            ready = requests.get(f"{stack.base}/readyz", timeout=10).json()
            found, outcomes = problems(engine, chats)
            verify = _verify(env)
        finally:
            faults.close()
            stack.stop_all()
            for link in links:
                link.close()
            redis.kill()
            engine.dispose()
    print(f"{label} seed {seed}: load {dict(load_counts)}")
    for name, notes in applied.items():
        print(f"  {name}: {len(notes)}x: {'; '.join(notes)}")
    print(
        f"  every job ended {waited:.1f} s after the last fault (bound {BOUND_S:g} s); jobs {dict(outcomes)}"
    )
    print(f"  readyz at the end: {ready}")
    print(f"  ledger verify: {verify.get('ok')} ({verify.get('entries_checked')} entries)")
    print(f"  took {time.monotonic() - started:.0f} s")
    assert accepted, "the load got no job through"
    assert not unexpected, f"seed {seed}: answers no client should see: {unexpected[:10]}"
    assert not still_open, f"seed {seed}: jobs not ended within {BOUND_S:g} s: {still_open[:20]}"
    assert not found, f"seed {seed}: " + "\n".join(found[:40])
    assert verify.get("ok") is True, f"seed {seed}: {verify}"


def _run(plan: Plan, stack: Stack, faults: Faults) -> dict[str, object]:
    """The load in its thread, the faults in this one at their offsets; the notes of each fault."""
    started = time.monotonic()
    load = Load(stack.base, plan, started)
    load.start()
    notes: dict[str, list[str]] = {}
    for fault in plan.faults:
        delay = started + fault.at_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for exit_seen in stack.revive():  # a process the previous fault took down on its own
            notes.setdefault("unexpected exits", []).append(f"before {fault.name}: {exit_seen}")
        note = faults.apply(fault.name)
        notes.setdefault(fault.name, []).append(f"at {time.monotonic() - started:.0f} s, {note}")
    load.join(timeout=plan.duration_s + 120)  # a send may be retried for 20 s while a server is down
    for exit_seen in [*faults.revived, *stack.revive()]:
        notes.setdefault("unexpected exits", []).append(f"after the faults: {exit_seen}")
    assert not load.is_alive(), "the load did not finish"
    return {**notes, "load": (load.counts, load.accepted, load.chats, load.unexpected)}


def _until_all_ended(
    engine: Engine, deadline: float, stack: Stack, notes: dict[str, Any]
) -> tuple[float, list[Any]]:
    """Seconds until every job ended, or to the deadline, and the jobs still open then (a process
    that exits meanwhile, e.g. stopped by its consume watchdog, is started again and noted)."""
    started = time.monotonic()
    while True:
        for exit_seen in stack.revive():
            notes.setdefault("unexpected exits", []).append(f"while ending the jobs: {exit_seen}")
        try:
            with engine.connect() as db:
                open_jobs = db.execute(
                    select(
                        jobs.c.id,
                        jobs.c.status,
                        jobs.c.queue,
                        jobs.c.created_at,
                        jobs.c.enqueued_at,
                        jobs.c.enqueues,
                        jobs.c.attempts,
                        jobs.c.heartbeat_at,
                    ).where(jobs.c.status.not_in(ENDED))
                ).all()
        except Exception:  # a connection the restart broke: ask again
            engine.dispose()
            open_jobs = [("?", "unknown", "?")]
        if not open_jobs or time.monotonic() > deadline:
            return time.monotonic() - started, list(open_jobs)
        time.sleep(0.5)


def _verify(env: dict[str, str]) -> dict[str, object]:
    """`creditflow ledger verify --json` on the stack's database."""
    argv = [sys.executable, "-m", "cli.main", "ledger", "verify", "--json"]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    try:
        return dict(json.loads(done.stdout))
    except json.JSONDecodeError:
        return {"ok": False, "output": (done.stdout + done.stderr)[-2000:]}


def _dump_stacks(stack: Stack, out: Path) -> Path:
    """py-spy's dump of every role's processes (when py-spy is installed) into `out`."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    with out.open("w") as sink:
        for name, role in stack.roles.items():
            if spy is None or role.process is None or role.process.poll() is not None:
                continue
            pids = [
                role.process.pid,
                *(p.pid for p in psutil.Process(role.process.pid).children(recursive=True)),
            ]
            for pid in pids:
                sink.write(f"==== {name} pid {pid}\n")
                sink.flush()
                subprocess.run(
                    [spy, "dump", "--pid", str(pid)], stdout=sink, stderr=sink, timeout=30, check=False
                )
    return out
