"""Writers that arrive late: a retry after a cancel, a heartbeat that read the step before it ended,
a step that raises after the reaper ended its job, an attempt that was taken over. None may change
what the job's end (or its new owner) decided."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import ledger
from orchestration.context import RunContext
from orchestration.errors import FinalError
from orchestration.jobs import claims, compensation, progress, steps
from orchestration.jobs import create as job_cases
from orchestration.jobs.heartbeats import Beating, heartbeats_of
from orchestration.services import Services
from tests.integration.jobs.conftest import diagnostic_job, job_row, wait_for

# No worker serves `images` in these tests: every step below runs here, in the order the test sets.
QUEUE = "images"


def test_a_retry_after_a_cancel_runs_nothing_even_when_the_redis_flag_was_lost(
    services: Services, user: str
) -> None:
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=2, cost_per_step=1000)
    first = claims.claim(services, job_id=job_id, task_id="t-retry", retries=0)
    assert first is not None  # attempt 1 failed retryably: the job stays running, its retry waits
    assert job_cases.cancel_job(services, user_id=user, job_id=job_id) == "canceling"
    services.redis.delete(f"creditflow:cancel:{job_id}")  # Redis lost the flag; the row keeps it
    assert not progress.cancel_requested(services.redis, job_id)

    retry = claims.claim(services, job_id=job_id, task_id="t-retry", retries=1)
    assert retry is not None
    assert retry.cancel_requested  # what the database knows at the claim reaches the step
    assert steps.run(services, retry)
    assert steps.settle(services, job_id=job_id) == "canceled"
    row = job_row(services, job_id)
    assert row.result == {"canceled_before_start": True}
    assert row.cost_charged == 0
    with services.uow(autocommit=True) as db:
        assert ledger.balance(db, user_id=user).held == 0


def test_a_heartbeat_read_before_the_step_ended_does_not_lower_its_charge(
    services: Services, user: str
) -> None:
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=3, cost_per_step=1000)
    claimed = claims.claim(services, job_id=job_id, task_id="t-beat", retries=0)
    assert claimed is not None
    # The heartbeat thread read the step's cost after its first step, then waited (for a pooled
    # connection, for the GIL) while the step finished its other two and recorded them.
    seen_early = RunContext(
        services, job_id, user, claimed.params, claimed.model, claimed.held, claimed.attempt
    )
    seen_early.charge(1000)
    assert steps.run(services, claimed)
    assert job_row(services, job_id).cost_running == 3000
    beats = heartbeats_of(services)
    beats.register(Beating(claimed.token, seen_early))
    try:
        beats.beat_now()  # the late beat lands after the record
    finally:
        beats.unregister(claimed.token)
    assert steps.settle(services, job_id=job_id) == "succeeded"
    row = job_row(services, job_id)
    assert row.cost_charged == 3000
    assert row.progress is not None
    assert row.progress["step"] == 3


def test_a_step_that_raises_after_the_reaper_ended_its_job_leaves_the_job_as_ended(
    services: Services, user: str
) -> None:
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=2, fail_at_step=1)
    claimed = claims.claim(services, job_id=job_id, task_id="t-late", retries=0)
    assert claimed is not None
    # The reaper ended the job (its time ran out) while its step still ran on a threads pool.
    assert compensation.fail(
        services,
        job_id=job_id,
        code="timed_out",
        message="the job ran past its time limit",
        statuses=("running",),
    )
    ended = job_row(services, job_id)
    with pytest.raises(FinalError):
        steps.run(services, claimed)  # the step fails later, on its own
    row = job_row(services, job_id)
    assert row.status == "failed"
    assert row.error == ended.error == {"code": "timed_out", "message": "the job ran past its time limit"}
    assert row.cost_running == ended.cost_running


def test_a_redelivery_while_its_first_delivery_still_runs_leaves_the_job_to_it(
    services: Services, user: str
) -> None:
    # A message past the broker's visibility timeout, or redelivered after a connection loss, reaches a
    # worker while its first delivery still runs and beats: taking over would run the step twice.
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=40, sleep_ms=100, cost_per_step=10)
    old = claims.claim(services, job_id=job_id, task_id="t-same", retries=0)
    assert old is not None
    outcomes: dict[str, bool] = {}

    def run() -> None:
        outcomes["old"] = steps.run(services, old)

    first = threading.Thread(target=run, daemon=True)
    first.start()
    wait_for(lambda: job_row(services, job_id).progress is not None, what="the old attempt beating")
    assert claims.claim(services, job_id=job_id, task_id="t-same", retries=0, redelivered=True) is None
    assert job_row(services, job_id).claim == old.token
    first.join(timeout=60)
    assert outcomes["old"] is True
    assert steps.settle(services, job_id=job_id) == "succeeded"
    row = job_row(services, job_id)
    assert (row.attempts, row.cost_charged) == (1, 40 * 10)


def test_a_takeover_in_the_same_process_keeps_the_new_attempts_heartbeat(
    services: Services, user: str
) -> None:
    # A redelivery can reach the very process whose attempt stopped beating (stuck past the takeover
    # wait): the new attempt takes it over, the old one learns so at its next beat and stops.
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=40, sleep_ms=100, cost_per_step=10)
    old = claims.claim(services, job_id=job_id, task_id="t-same", retries=0)
    assert old is not None
    outcomes: dict[str, bool] = {}

    def run(name: str, claimed: claims.Claimed) -> None:
        outcomes[name] = steps.run(services, claimed)

    def progress_events() -> int:
        entries = services.redis.xrange(f"jobs:{job_id}")
        return sum(1 for _id, fields in entries if '"progress"' in fields["data"])

    beats = heartbeats_of(services)
    first = threading.Thread(target=run, args=("old", old), daemon=True)
    first.start()
    wait_for(lambda: progress_events() >= 1, what="the old attempt running")
    with beats._lock:
        stuck = beats._jobs.pop(old.token)  # its beats stop: it stands still for the redelivery
    new = claims.claim(services, job_id=job_id, task_id="t-same", retries=0, redelivered=True)
    beats.register(stuck)
    assert new is not None
    assert new.taken_over
    second = threading.Thread(target=run, args=("new", new), daemon=True)
    seen = progress_events()
    second.start()
    wait_for(lambda: progress_events() >= seen + 2, what="the new attempt running")
    beats.beat_now()  # tells the old attempt it lost the job
    first.join(timeout=30)
    assert outcomes["old"] is False
    assert second.is_alive()
    before = job_row(services, job_id).heartbeat_at
    beats.beat_now()
    assert second.is_alive()  # still running: its beat must land
    assert job_row(services, job_id).heartbeat_at > before
    second.join(timeout=60)
    assert outcomes["new"] is True
    assert steps.settle(services, job_id=job_id) == "succeeded"


def test_a_cancel_after_the_jobs_hold_expired_ends_it_canceled(services: Services, user: str) -> None:
    # The reaper expired the hold of a job that waited (its pass fails such a job next, or failed to):
    # the user's cancel still ends the job, and the credits are back once, by the expiry.
    job_id = diagnostic_job(services, user, queue=QUEUE, steps=1)
    row = job_row(services, job_id)
    with services.uow(account_of=user) as db:
        hold = ledger.get_hold(db, hold_id=row.hold_id)
        assert ledger.expire_hold(db, hold_id=row.hold_id, now=hold.expires_at + timedelta(seconds=1))
    assert job_cases.cancel_job(services, user_id=user, job_id=job_id) == "canceled"
    ended = job_row(services, job_id)
    assert (ended.status, ended.cost_charged) == ("canceled", 0)
    with services.uow(autocommit=True) as db:
        assert ledger.get_hold(db, hold_id=row.hold_id).status == "expired"
        assert ledger.balance(db, user_id=user).held == 0
