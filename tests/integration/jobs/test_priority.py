"""Priorities within a queue: an urgent job waiting behind a backlog starts first."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from orchestration.jobs import create as job_cases
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import wait_final
from tests.support.processes import ROOT, worker

pytestmark = pytest.mark.slow


def test_urgent_job_overtakes_the_backlog(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    def create(priority: int) -> str:
        row, _ = job_cases.create_job(
            services,
            job_cases.CreateJob(
                user_id=user,
                kind="diagnostic",
                params={"queue": "images", "steps": 1, "sleep_ms": 50},
                priority=priority,
            ),
        )
        return str(row.id)

    backlog = [create(9) for _ in range(4)]  # nobody consumes `images` yet
    urgent = create(0)
    with (
        worker("critical", env=job_env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
        worker("images", env=job_env, cwd=ROOT, log=logs_dir / "images.log", name="img", concurrency=1),
    ):
        for job_id in [*backlog, urgent]:
            assert wait_final(services, job_id).status == "succeeded"
    with services.uow(autocommit=True) as session:
        started = dict(
            session.execute(
                select(jobs.c.id, jobs.c.started_at).where(jobs.c.id.in_([*backlog, urgent]))
            ).all()
        )
    assert started[urgent] < min(started[job_id] for job_id in backlog)
