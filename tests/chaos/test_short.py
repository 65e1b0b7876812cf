"""The short chaos variant of the default run (about 90 s): one round of tests/chaos/schedule.py's SHORT
faults (a process killed on each pool, PostgreSQL restarted, the links reset, a `run` delivered twice and
one handed out again as past the visibility timeout), 3 s apart, on the stack of tests/chaos/session.py.
CHAOS_SEED=<seed> replays it; `make chaos` runs every fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.schedule import SHORT, make_plan
from tests.chaos.session import keeps_every_promise, seed_from_env
from tests.support.postgres_server import postgres_bindir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.alone,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        postgres_bindir() is None, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)"
    ),
]


def test_a_short_round_of_faults_under_load_keeps_every_promise(tmp_path: Path) -> None:
    plan = make_plan(seed_from_env(), gap_s=3.0, faults_of=SHORT)
    # Its jobs are short and its pools back within seconds: a job whose message a killed pool or a reset
    # link swallowed (the Redis broker's limit) fails `not_started` after 30 s, well inside the bound.
    keeps_every_promise(plan, tmp_path, label="short chaos", JOB_QUEUE_TIMEOUT_S="30")
