"""The seeded chaos suite (marker `chaos`, `make chaos`): every fault of tests/chaos/schedule.py in turn
under load, ROUNDS times (CHAOS_ROUNDS; one round takes 3-5 minutes), on the stack of
tests/chaos/session.py. CHAOS_SEED=<seed> replays a schedule. The default run has the short variant
(tests/chaos/test_short.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.schedule import make_plan
from tests.chaos.session import keeps_every_promise, seed_from_env
from tests.support.postgres_server import postgres_bindir

SEED = seed_from_env()
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.timeout(420 + 300 * (ROUNDS - 1)),
    pytest.mark.skipif(
        postgres_bindir() is None, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)"
    ),
]


def test_faults_in_turn_under_load_keep_every_promise(tmp_path: Path) -> None:
    keeps_every_promise(make_plan(SEED, rounds=ROUNDS), tmp_path, label=f"chaos ({ROUNDS} round(s))")
