"""A seeded schedule of load and faults: the same seed gives the same jobs at the same offsets and the
same faults in the same order, so a failure found once can be replayed (CHAOS_SEED=...)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

# Every fault the suite knows; each round runs them all once, in an order and at offsets the seed picks.
FAULTS = (
    "kill_io_main",  # SIGKILL the threads pool's process mid-job (its jobs run in it)
    "kill_pool_child",  # SIGKILL a prefork child of the critical pool (settlement) mid-task
    "kill_critical_main",  # SIGKILL the critical pool's main process
    "term_io_warm",  # SIGTERM the threads pool: a warm shutdown while jobs run, then start it again
    "restart_redis_empty",  # SIGKILL Redis and start it without its data (queues, streams gone)
    "restart_redis_kept",  # SIGKILL Redis and start it from its append-only file
    "restart_postgres",  # a fast restart of PostgreSQL: every backend terminated
    "pause_beat",  # beat stopped (SIGSTOP) for a while, then going on
    "double_delivery",  # a running job's `run` message delivered a second time
    "past_visibility",  # a running job's own message handed out again, as past the visibility timeout
    "slow_links",  # the workers' links to Redis and PostgreSQL 200 ms slower per chunk, for 6 s
    "hang_links",  # the workers' links forward nothing for 5 s, connections kept open
    "reset_links",  # every connection of the workers to Redis and PostgreSQL reset
)
USERS = 4


@dataclass(frozen=True)
class Job:
    """One job of the load: who sends it, when (s after the start), what."""

    at_s: float
    user: int
    kind: str  # "diagnostic" or "chat"
    body: dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """One fault: when (s after the start) and which."""

    at_s: float
    name: str


@dataclass(frozen=True)
class Plan:
    """The whole schedule of a run."""

    seed: int
    jobs: tuple[Job, ...]
    faults: tuple[Fault, ...]
    duration_s: float


# The short variant of the default run (tests/chaos/test_short.py): a process killed on each pool, a
# store restarted, the broker links reset, a message delivered again two ways, in about 20 s.
SHORT = (
    "kill_io_main",
    "kill_pool_child",
    "restart_postgres",
    "reset_links",
    "double_delivery",
    "past_visibility",
)


def make_plan(seed: int, *, rounds: int = 1, gap_s: float = 5.0, faults_of: tuple[str, ...] = FAULTS) -> Plan:
    """The load and faults of `rounds` rounds (each of `faults_of` once per round), `gap_s` apart on
    average."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = 4.0
    for _round in range(rounds):
        for name in rng.sample(faults_of, len(faults_of)):
            faults.append(Fault(round(at, 2), name))
            at += gap_s * rng.uniform(0.6, 1.4)
    duration = at
    jobs: list[Job] = []
    moment = 0.0
    while moment < duration:
        jobs.append(_job(rng, moment))
        moment += rng.uniform(0.3, 0.9)
    return Plan(seed, tuple(jobs), tuple(faults), duration)


def _job(rng: random.Random, at: float) -> Job:
    user = rng.randrange(USERS)
    if rng.random() < 0.25:
        return Job(round(at, 2), user, "chat", {"content": f"chaos {rng.randrange(10**6)}"})
    body = {
        "steps": rng.randint(2, 6),
        "sleep_ms": rng.choice((200, 500, 1000, 1500)),
        "cost_per_step": rng.choice(("0.001", "0.005", "0.02")),
        "queue": rng.choice(("interactive", "agents", "images")),
    }
    return Job(round(at, 2), user, "diagnostic", body)
