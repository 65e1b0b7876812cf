"""The soak's short variant (bench/soak.py --seconds 20): mixed jobs from many users at saturation on the
real stack, then every promise the chaos suite checks. Its memory figures are printed, not asserted
(memory goals live in the benchmark)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, child_env

pytestmark = [pytest.mark.slow, pytest.mark.alone, pytest.mark.timeout(240)]


def test_a_short_soak_keeps_every_promise() -> None:
    database, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database.startswith("postgres") or not redis_url:
        pytest.skip("the soak runs on PostgreSQL and Redis (DATABASE_URL, REDIS_URL)")
    run = subprocess.run(
        [sys.executable, "bench/soak.py", "--seconds", "20", "--users", "6", "--seed", "7"],
        env=child_env(DATABASE_URL=database, REDIS_URL=redis_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert "promises after the soak: all kept" in run.stdout
    ended = next(line for line in run.stdout.splitlines() if " jobs ended in " in line)
    assert int(ended.split()[0]) >= 30, ended  # a real load went through, not a handful of jobs
