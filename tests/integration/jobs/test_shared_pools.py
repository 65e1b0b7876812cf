"""A running job on the shared pools (the `workers` fixture): its own time limit, its progress on its row.

Apart from tests/integration/jobs/test_runtime.py, whose tests start pools of their own on the same queues:
a module-scoped pool lives until its module ends, and would take their messages."""

from __future__ import annotations

import pytest

from orchestration.jobs import create as job_cases
from orchestration.services import Services
from tests.integration.jobs.conftest import diagnostic_job, job_row, wait_final, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("workers")]


def test_a_job_stops_at_its_own_time_limit_and_pays_what_it_delivered(services: Services, user: str) -> None:
    job_id = diagnostic_job(services, user, queue="interactive", steps=200, sleep_ms=50, time_limit_s=1)
    row = wait_final(services, job_id, timeout=30)
    assert row.status == "succeeded"
    done = row.result["steps_done"]
    assert 0 < done < 200
    assert row.cost_charged == done * 1000


def test_a_running_jobs_progress_shows_on_its_row(services: Services, user: str) -> None:
    job_id = diagnostic_job(services, user, queue="interactive", steps=60, sleep_ms=100)
    progress = wait_for(
        lambda: job_row(services, job_id).status == "running" and job_row(services, job_id).progress,
        timeout=20,
        what="progress on the row while running",
    )
    assert progress["stage"] == "work"
    assert 0 < progress["step"] < 60
    job_cases.cancel_job(services, user_id=user, job_id=job_id)
    assert wait_final(services, job_id).status == "canceled"
