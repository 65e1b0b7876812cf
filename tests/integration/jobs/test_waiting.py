"""Jobs that wait (for a conversation's previous turn, for one of their user's slots) are never lost:
a delivery that finds a job not ready consumes its message, so the job must not look sent any more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from orchestration import broker
from orchestration.jobs import claims, dispatch, reaper
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import diagnostic_job, job_row

QUEUE = "images"  # no worker serves it here: every delivery below is the test's own


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_follower_refused_early_is_sent_again_when_its_wake_up_is_lost(
    services: Services, user: str
) -> None:
    broker.epoch_lost(services)  # the broker's marker is set: the sweep below re-sends only lost sagas
    first = diagnostic_job(services, user, queue=QUEUE, steps=1)
    command = job_cases.CreateJob(
        user_id=user, kind="diagnostic", params={"queue": QUEUE, "steps": 1}, after_job_id=first
    )
    follower, _created = job_cases.create_job(services, command)
    assert job_row(services, follower.id).enqueued_at is None  # it waits: nothing sent yet
    # A stray early delivery (a re-send of every queued job after a broker restart, a duplicate): its
    # claim refuses the follower, whose predecessor is still open, and its message is gone.
    assert dispatch.resend(services, job_id=follower.id, queue=QUEUE, priority=5, counted=False)
    assert claims.claim(services, job_id=follower.id, task_id="t-early", retries=0) is None
    # The first job ends, and the process that ended it dies before it woke the follower.
    with services.uow() as db:
        db.execute(
            update(jobs).where(jobs.c.id == first).values(status="failed", finished_at=datetime.now(UTC))
        )
    later = datetime.now(UTC) + timedelta(seconds=services.settings.JOB_REENQUEUE_AFTER_S + 1)
    before = datetime.now(UTC)
    reaper.sweep(services, now=later)
    row = job_row(services, follower.id)
    assert row.status == "queued"
    assert row.enqueued_at is not None
    assert _aware(row.enqueued_at) >= before  # the reaper sent it again
