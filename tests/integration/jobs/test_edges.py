"""Edge cases the review found: cancel while a retry waits, long queue waits, lost settle messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

import ledger
from orchestration.jobs import claims, reaper, steps
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import diagnostic_job, job_row, wait_final, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("workers")
def test_cancel_while_a_retry_waits_ends_the_job_canceled(services: Services, user: str) -> None:
    job_id = diagnostic_job(services, user, steps=3, sleep_ms=1000, retryable_failures=2, time_limit_s=300)
    wait_for(lambda: job_row(services, job_id).attempts >= 1, what="first attempt")
    assert job_cases.cancel_job(services, user_id=user, job_id=job_id) == "canceling"
    row = wait_final(services, job_id, timeout=30)  # long before the 300 s time limit
    assert row.status == "canceled"
    # The retry's countdown is jittered: the cancel finds it waiting (nothing more runs, 0 charged),
    # or, rarely, in its first second-long step (charged for that step only).
    assert row.cost_charged in (0, 1000)
    assert row.error is None
    with services.uow(autocommit=True) as session:
        assert ledger.balance(session, user_id=user).held == 0


def test_a_hold_outlives_the_queue_wait_and_the_time_limit(services: Services, user: str) -> None:
    # No worker serves `images` in this module: the job waits in its queue.
    job_id = diagnostic_job(services, user, queue="images", steps=1, time_limit_s=120)
    row = job_row(services, job_id)
    with services.uow(autocommit=True) as session:
        hold = ledger.get_hold(session, hold_id=row.hold_id)
    expires = hold.expires_at if hold.expires_at.tzinfo else hold.expires_at.replace(tzinfo=UTC)
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    assert expires - created >= timedelta(seconds=services.settings.JOB_QUEUE_TIMEOUT_S + 120)
    # A sweep while the job waits in a backlog leaves it queued, its hold pending.
    reaper.sweep(services, now=datetime.now(UTC) + timedelta(minutes=20))
    assert job_row(services, job_id).status == "queued"
    job_cases.cancel_job(services, user_id=user, job_id=job_id)


def test_reaper_bills_a_finished_run_whose_settle_was_lost(services: Services, user: str) -> None:
    job_id = diagnostic_job(services, user, queue="images", steps=2, cost_per_step=1000)
    claimed = claims.claim(services, job_id=job_id, task_id="lost", retries=0)
    assert claimed is not None
    assert steps.run(services, claimed)  # ran; its settle message never arrives
    with services.uow() as session:  # and it started long ago
        session.execute(
            update(jobs).where(jobs.c.id == job_id).values(started_at=datetime.now(UTC) - timedelta(hours=1))
        )
    swept = reaper.sweep(services)
    assert swept.timed_out >= 1
    row = job_row(services, job_id)
    assert row.status == "succeeded"
    assert row.cost_charged == 2000
    with services.uow(autocommit=True) as session:
        assert ledger.get_hold(session, hold_id=row.hold_id).status == "captured"


def test_a_job_key_reused_for_another_request_is_a_conflict(services: Services, user: str) -> None:
    from orchestration.errors import JobKeyConflict

    def create(**params: object) -> tuple[str, bool]:
        command = job_cases.CreateJob(user_id=user, kind="diagnostic", params=params, idempotency_key="k-1")
        row, created = job_cases.create_job(services, command)
        return str(row.id), created

    # (The API's own Idempotency-Key records expire after a day; the job's key stays checked.)
    first, created = create(queue="images", steps=1)
    assert created
    assert create(queue="images", steps=1) == (first, False)
    with pytest.raises(JobKeyConflict):
        create(queue="images", steps=2)
    job_cases.cancel_job(services, user_id=user, job_id=first)


def test_queued_events_say_where_a_job_waits(services: Services, user: str) -> None:
    import json

    # No worker serves `images` in this module: each job queues behind the previous ones.
    first, second = (diagnostic_job(services, user, queue="images", steps=1) for _ in range(2))
    urgent = job_cases.create_job(
        services,
        job_cases.CreateJob(
            user_id=user, kind="diagnostic", params={"queue": "images", "steps": 1}, priority=0
        ),
    )[0].id
    follower = job_cases.create_job(
        services,
        job_cases.CreateJob(
            user_id=user, kind="diagnostic", params={"queue": "images", "steps": 1}, after_job_id=first
        ),
    )[0].id

    def queued(job_id: str) -> dict[str, object]:
        entries = services.redis.xrange(f"jobs:{job_id}")
        return next(e for e in (json.loads(f["data"]) for _i, f in entries) if e["type"] == "queued")

    earlier = queued(first)["queue_position"]
    assert queued(second)["queue_position"] == earlier + 1
    assert queued(urgent)["queue_position"] < earlier + 1  # priority 0 goes before the others
    assert queued(follower)["waiting_for"] == first
    for job_id in (first, second, urgent, follower):
        job_cases.cancel_job(services, user_id=user, job_id=job_id)


def test_a_recorded_run_leaves_no_error_so_a_later_failure_keeps_its_reason(
    services: Services, user: str
) -> None:
    job_id = diagnostic_job(services, user, queue="images", steps=1, cost_per_step=1000)
    claimed = claims.claim(services, job_id=job_id, task_id="expiring", retries=0)
    assert claimed is not None
    assert steps.run(services, claimed)
    with services.uow(autocommit=True) as session:  # SQL NULL, not the JSON `null` a coalesce keeps
        assert (
            session.execute(
                select(func.count()).select_from(jobs).where(jobs.c.id == job_id, jobs.c.error.is_(None))
            ).scalar_one()
            == 1
        )
    row = job_row(services, job_id)
    with services.uow(account_of=user) as session:  # its hold expires before the settle comes
        assert ledger.expire_hold(session, hold_id=row.hold_id, now=datetime.now(UTC) + timedelta(days=1))
    assert steps.settle(services, job_id=job_id) == "failed"
    ended = job_row(services, job_id)
    assert (ended.status, ended.cost_charged) == ("failed", 0)
    assert ended.error == {"code": "hold_expired", "message": "the credit hold expired before settlement"}
