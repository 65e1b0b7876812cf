"""Soak: many users x many jobs of mixed kinds at saturation for minutes; memory and promises after it.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/soak.py
     [--users 16 --seconds 300 --seed N]

The stack `creditflow dev` runs (API; critical/maintenance prefork pool; the interactive/agents/images
threads pool; beat) on a throw-away database. `--users` clients each send one job after another as fast as
their jobs end: echo chat turns, diagnostic jobs on each I/O queue, cancelled diagnostic jobs (a cancel
path), bounded by `--seconds` and `--max-jobs`. The RSS of every process is sampled after a warm-up, halfway
and at the end; its growth over the second half is printed per thousand jobs against GROWTH_BUDGET_KIB; then
the promises the chaos suite checks (tests/chaos/invariants.py): every job ended, every hold resolved
exactly once, no AI step run twice, the books sum to zero, no dead letter. `--seconds 20` is the short
variant the test suite runs."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import Results, add_json_argument
from orchestration.tables import jobs
from tests.chaos.invariants import ENDED, problems
from tests.chaos.stack import Stack, stack_env
from tests.integration.api.conftest import bearer, make_token
from tests.support.databases import fresh_database
from tests.support.processes import ROOT, creditflow, wait_for_log, wait_http

# RSS a process may gain per thousand jobs once warm (allocator arenas and caches settle in the warm-up).
GROWTH_BUDGET_KIB = 2048
WARM_UP_JOBS = 200
# Every job ends this long after the load stops at the latest (the longest job is seconds; a lost one
# is failed by the reaper within its heartbeat timeout).
DRAIN_S = 60.0


class Client(threading.Thread):
    """One user sending one job after another until the deadline or the shared job budget runs out."""

    def __init__(self, base: str, n: int, rng: random.Random, soak: Soak) -> None:
        super().__init__(name=f"soak-{n}", daemon=True)
        self.base, self.rng, self.soak = base, rng, soak
        self.http = requests.Session()
        user = f"soak-user-{n}-{uuid.uuid4().hex[:6]}"
        self.http.headers.update(bearer(make_token(user, exp=int(time.time()) + 7200)))
        self.conversation: str | None = None

    def run(self) -> None:
        """Jobs until told to stop; each waits for its end (saturation comes from the number of users)."""
        while self.soak.take():
            kind = self.rng.choices(list(self.soak.mix), weights=list(self.soak.mix.values()))[0]
            try:
                self._one(kind)
            except requests.RequestException as exc:
                self.soak.count(f"{kind} error {type(exc).__name__}")

    def _one(self, kind: str) -> None:
        if kind == "chat":
            if self.conversation is None:
                path = f"{self.base}/api/v1/chat/conversations"
                made = self.http.post(path, json={"model": "echo"}, timeout=30)
                made.raise_for_status()
                self.conversation = made.json()["id"]
            text = f"soak {self.rng.randrange(10**9)}"
            job_id = self._post(f"/api/v1/chat/conversations/{self.conversation}/messages", {"content": text})
            if job_id:
                self.soak.chat(job_id, text)
        else:
            body = {"steps": self.rng.randint(1, 3), "sleep_ms": self.rng.choice((0, 20, 100)),
                    "cost_per_step": "0.001", "queue": self.rng.choice(("interactive", "agents", "images"))}
            job_id = self._post("/api/v1/diagnostics/jobs", body)
            if job_id and kind == "cancel":
                self.http.post(f"{self.base}/api/v1/jobs/{job_id}/cancel", timeout=30)
        if job_id:
            self._follow(job_id)
            self.soak.count(f"{kind} ended")

    def _post(self, path: str, body: dict[str, Any]) -> str | None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        answer = self.http.post(f"{self.base}{path}", json=body, headers=key, timeout=30)
        if answer.status_code != 202:
            self.soak.count(f"refused {answer.status_code}")
            return None
        return str(answer.json()["job_id"])

    def _follow(self, job_id: str) -> None:
        deadline = time.monotonic() + 60
        with self.http.get(f"{self.base}/api/v1/jobs/{job_id}/events", stream=True, timeout=60) as events:
            for line in events.iter_lines():
                if line.startswith(b"event: ") and line[7:].decode() in ("result", "failed", "canceled"):
                    return
                if time.monotonic() > deadline:
                    self.soak.count("stream gave up")
                    return


class Soak:
    """The shared budget of jobs, the counts, and the chat texts the invariants check."""

    def __init__(self, max_jobs: int, seconds: float, mix: dict[str, float]) -> None:
        self.left, self.deadline, self.mix = max_jobs, time.monotonic() + seconds, mix
        self.counts: Counter[str] = Counter()
        self.chats: dict[str, str] = {}
        self.lock = threading.Lock()

    def take(self) -> bool:
        """One more job, if the budget and the clock allow."""
        with self.lock:
            if self.left <= 0 or time.monotonic() > self.deadline:
                return False
            self.left -= 1
            return True

    def count(self, what: str) -> None:
        """Count one outcome."""
        with self.lock:
            self.counts[what] += 1

    def chat(self, job_id: str, text: str) -> None:
        """Remember what a chat job sent (the echo model answers it back)."""
        with self.lock:
            self.chats[job_id] = text

    def ended(self) -> int:
        """Jobs followed to their end so far."""
        with self.lock:
            return sum(n for what, n in self.counts.items() if what.endswith(" ended"))


def drain(engine: Any) -> float:
    """Seconds until every job ended after the load stopped (-1: not within DRAIN_S)."""
    began = time.monotonic()
    while time.monotonic() - began < DRAIN_S:
        with engine.connect() as db:
            open_jobs = db.execute(select(func.count()).where(jobs.c.status.not_in(ENDED))).scalar_one()
        if not open_jobs:
            return time.monotonic() - began
        time.sleep(1.0)
    return -1.0


def start_together(stack: Stack) -> None:
    """Every role at once, then wait until each serves (one after another costs their imports in turn)."""
    for role in stack.roles.values():
        role.starts += 1
        role.log = stack.logs / f"{role.name}.{role.starts}.log"
        role.process = creditflow(*role.args, env={**stack.env, **role.env}, cwd=ROOT, log=role.log)
    for role in stack.roles.values():
        wait_for_log(role.log, role.ready, process=role.process, timeout=120)
    wait_http(f"{stack.base}/healthz", process=stack.roles["api"].process, log=stack.roles["api"].log)


def rss_kib(stack: Stack) -> dict[str, int]:
    """Each process's resident memory: roles by name, prefork children as `<role> child <i>`."""
    sizes: dict[str, int] = {}
    for name in ("api", "critical", "io", "beat"):
        main = psutil.Process(stack.main_pid(name))
        sizes[name] = main.memory_info().rss // 1024
        for index, child in enumerate(sorted(main.children(recursive=True), key=lambda p: p.pid)):
            sizes[f"{name} child {index}"] = child.memory_info().rss // 1024
    return sizes


def _mix(text: str) -> dict[str, float]:
    weights = {name: float(weight) for name, _, weight in (part.partition("=") for part in text.split(","))}
    if not weights or set(weights) - {"chat", "diagnostic", "cancel"} or min(weights.values()) < 0:
        raise argparse.ArgumentTypeError("kinds are chat, diagnostic and cancel, e.g. chat=4,diagnostic=5")
    return weights


def main() -> int:
    """Run the soak and print memory per thousand jobs and the promises checked after it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--max-jobs", type=int, default=100_000)
    parser.add_argument(
        "--mix", type=_mix, default=_mix("chat=4,diagnostic=5,cancel=1"),
        help="kinds of jobs and their weights (chat, diagnostic, cancel: a diagnostic job cancelled)",
    )
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**32))
    add_json_argument(parser)
    args = parser.parse_args()
    base_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base_url.startswith("postgres") or not redis_url:
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    began = time.monotonic()
    print(f"soak seed {args.seed}, mix {args.mix}: {args.users} users, {args.seconds:.0f} s, "
          f"at most {args.max_jobs} jobs")
    tmp = Path(tempfile.mkdtemp(prefix="cf-soak-"))
    with fresh_database("postgresql", tmp, pool_size=5) as engine:
        url = engine.url.render_as_string(hide_password=False)
        stack = Stack(stack_env(url, redis_url, tmp / "var"), tmp)
        try:
            start_together(stack)
            print(f"stack up in {time.monotonic() - began:.0f} s")
            report = soak(stack, args)
            drained = drain(engine)
            print(f"every job ended {drained:.0f} s after the load stopped" if drained >= 0
                  else f"jobs still open {DRAIN_S:.0f} s after the load stopped")
            found, outcomes = problems(engine, report.pop("chats"))
        finally:
            stack.stop_all()
    print("job outcomes:", dict(sorted(outcomes.items())))
    print("client counts:", dict(sorted(report["counts"].items())))
    print(f"promises after the soak: {'all kept' if not found else f'{len(found)} BROKEN'}")
    for problem in found[:20]:
        print("  ", problem)
    results = Results("soak")
    for name, growth in report["growth_kib_per_1000"].items():
        results.add(f"RSS growth, {name}", growth, "KiB/1000 jobs", goal_value=GROWTH_BUDGET_KIB,
                    higher_is_better=False)
    results.write(args.json)
    over = [name for name, growth in report["growth_kib_per_1000"].items() if growth > GROWTH_BUDGET_KIB]
    print(f"memory: {'within' if not over else 'OVER'} {GROWTH_BUDGET_KIB} KiB per 1000 jobs"
          + (f" ({', '.join(over)})" if over else ""))
    return 1 if found or any(outcome.split()[1] not in ENDED for outcome in outcomes) else 0


def soak(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """The load, the RSS samples around it, and what it did."""
    rng = random.Random(args.seed)
    state = Soak(args.max_jobs, args.seconds, args.mix)
    clients = [Client(stack.base, n, random.Random(rng.random()), state) for n in range(args.users)]
    started = time.monotonic()
    for client in clients:
        client.start()
    while state.ended() < WARM_UP_JOBS and time.monotonic() - started < args.seconds / 3:
        time.sleep(0.2)
    warm, warm_jobs, warm_at = rss_kib(stack), state.ended(), time.monotonic()
    # A second sample halfway through what is left: what loads on first use later in the run (the
    # embedding model, once a conversation outgrows its window) is a step between the first two
    # samples; growth per job is judged on the second half.
    halfway = warm_at + max(0.0, state.deadline - warm_at) / 2
    while time.monotonic() < halfway and any(client.is_alive() for client in clients):
        time.sleep(0.2)
    mid, mid_jobs = rss_kib(stack), state.ended()
    for client in clients:
        client.join(timeout=args.seconds + 120)
    elapsed = time.monotonic() - warm_at
    final, jobs, late = rss_kib(stack), state.ended() - warm_jobs, state.ended() - mid_jobs
    names = [name for name in sorted(final) if name in warm and name in mid]
    growth = {name: 1000 * (final[name] - mid[name]) / max(late, 1) for name in names}
    print(f"{state.ended()} jobs ended in {time.monotonic() - started:.0f} s; {jobs} after the warm-up "
          f"({jobs / max(elapsed, 1e-9):.1f} jobs/s), {late} in the second half")
    print("RSS (KiB) after the warm-up -> halfway -> at the end; growth per 1000 jobs in the second half:")
    for name in names:
        print(f"  {name:18} {warm[name]:8} -> {mid[name]:8} -> {final[name]:8}  {growth[name]:+8.0f}")
    # Processes that came or went (a recycled child) have no pair: named, not compared.
    changed = sorted(set(final) ^ set(warm))
    if changed:
        print("  processes that came or went:", ", ".join(changed))
    print(json.dumps({"warm": warm, "mid": mid, "final": final}))
    return {"counts": state.counts, "chats": state.chats, "growth_kib_per_1000": growth}


if __name__ == "__main__":
    sys.exit(main())
