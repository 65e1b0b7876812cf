"""hold -> run -> settle on real prefork workers, real Redis and the real database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import ledger
from orchestration.jobs import create as job_cases
from orchestration.jobs import progress
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import wait_final, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("workers")]
WELCOME = 1000 * 1_000_000


def _create(services: Services, user: str, **params: object) -> str:
    row, created = job_cases.create_job(
        services, job_cases.CreateJob(user_id=user, kind="diagnostic", params=params)
    )
    assert created
    return str(row.id)


def _balance(services: Services, user: str) -> ledger.Balance:
    with services.uow(autocommit=True) as session:
        return ledger.balance(session, user_id=user)


def _events(services: Services, job_id: str) -> list[dict[str, object]]:
    entries = services.redis.xrange(progress.job_stream(job_id))
    return [json.loads(fields["data"]) for _id, fields in entries]


def _hold(services: Services, job_id: str) -> ledger.Hold:
    with services.uow(autocommit=True) as session:
        hold_id = session.execute(select(jobs.c.hold_id).where(jobs.c.id == job_id)).scalar_one()
        return ledger.get_hold(session, hold_id=hold_id)


def test_happy_path_charges_the_delivered_cost(services: Services, user: str) -> None:
    job_id = _create(services, user, steps=4, cost_per_step=250_000, tokens=True)
    assert _balance(services, user).held == 1_000_000
    row = wait_final(services, job_id)
    assert row.status == "succeeded"
    assert (row.cost_quoted, row.cost_held, row.cost_charged, row.cost_released) == (
        1_000_000,
        1_000_000,
        1_000_000,
        0,
    )
    assert row.result == {"steps_done": 4, "attempt": 1}
    balance = _balance(services, user)
    assert balance == (WELCOME - 1_000_000, 0, WELCOME - 1_000_000)
    hold = _hold(services, job_id)
    assert (hold.status, hold.captured) == ("captured", 1_000_000)
    types = [event["type"] for event in _events(services, job_id)]
    assert types[:2] == ["queued", "started"]
    assert types.count("progress") == 4
    assert types.count("token") == 4
    assert types[-1] == "result"
    final = _events(services, job_id)[-1]
    assert (final["credits_held"], final["credits_spent"]) == ("1", "1")


@pytest.mark.parametrize("fail_at", [1, 3])
def test_failure_at_any_step_voids_the_hold_once(services: Services, user: str, fail_at: int) -> None:
    job_id = _create(services, user, steps=3, cost_per_step=100_000, fail_at_step=fail_at)
    row = wait_final(services, job_id)
    assert row.status == "failed"
    assert row.error["code"] == "final"
    assert f"step {fail_at}" in row.error["message"]
    assert (row.cost_charged, row.cost_released) == (0, 300_000)
    assert _hold(services, job_id).status == "voided"
    assert _balance(services, user) == (WELCOME, 0, WELCOME)
    assert [e["type"] for e in _events(services, job_id)][-1] == "failed"


def test_retryable_errors_are_retried_then_succeed(services: Services, user: str) -> None:
    job_id = _create(services, user, steps=2, retryable_failures=2)
    row = wait_final(services, job_id, timeout=90)
    assert row.status == "succeeded"
    assert row.attempts == 3
    assert row.result["attempt"] == 3
    assert _hold(services, job_id).status == "captured"


def test_same_message_delivered_twice_runs_once(services: Services, user: str) -> None:
    job_id = _create(services, user, steps=2, sleep_ms=300)
    # Two more deliveries of one and the same message (same task id) besides the saga's own.
    for _ in range(2):
        services.producer.send_task("creditflow.interactive.run", args=[job_id], task_id=f"dup-{job_id}")
    row = wait_final(services, job_id)
    assert row.status == "succeeded"
    assert row.attempts == 1
    assert [e["type"] for e in _events(services, job_id)].count("started") == 1
    assert _hold(services, job_id).captured == 2000


def test_compensate_failing_twice_then_succeeding_voids_the_hold(services: Services, user: str) -> None:
    row, _ = job_cases.create_job(
        services,
        job_cases.CreateJob(
            user_id=user, kind="diagnostic", params={"steps": 5, "sleep_ms": 400, "fail_at_step": 2}
        ),
    )
    services.redis.set(f"creditflow:faults:compensate:{row.id}", 2)
    final = wait_final(services, row.id, timeout=60)
    assert final.status == "failed"
    assert int(services.redis.get(f"creditflow:faults:compensate:{row.id}")) == -1  # three attempts
    assert _hold(services, row.id).status == "voided"
    assert _balance(services, user) == (WELCOME, 0, WELCOME)


def test_cancel_during_run_charges_what_was_delivered(services: Services, user: str) -> None:
    job_id = _create(services, user, steps=100, sleep_ms=50, cost_per_step=10_000)
    wait_for(lambda: any(e["type"] == "progress" for e in _events(services, job_id)), what="first progress")
    assert job_cases.cancel_job(services, user_id=user, job_id=job_id) == "canceling"
    row = wait_final(services, job_id)
    assert row.status == "canceled"
    steps_done = row.result["steps_done"]
    assert 0 < steps_done < 100
    assert row.cost_charged == steps_done * 10_000
    assert row.cost_released == 1_000_000 - row.cost_charged
    assert _balance(services, user).posted == WELCOME - row.cost_charged
    assert [e["type"] for e in _events(services, job_id)][-1] == "canceled"


def test_insufficient_credits_creates_nothing(services: Services, user: str) -> None:
    with pytest.raises(ledger.InsufficientCredits) as refused:
        job_cases.create_job(
            services,
            job_cases.CreateJob(
                user_id=user, kind="diagnostic", params={"steps": 2, "cost_per_step": 600 * 1_000_000}
            ),
        )
    assert (refused.value.available, refused.value.required) == (WELCOME, 1200 * 1_000_000)
    assert job_cases.list_jobs(services, user_id=user, limit=10) == []
    assert _balance(services, user) == (WELCOME, 0, WELCOME)


def test_beat_tasks_seal_the_ledger_on_a_worker(services: Services, user: str) -> None:
    from sqlalchemy import func

    from ledger.tables import checkpoints, unsealed

    def count(table: object) -> int:
        with services.uow(autocommit=True) as session:
            return int(session.execute(select(func.count()).select_from(table)).scalar_one())

    wait_final(services, _create(services, user, steps=1))
    assert count(unsealed) > 0
    before = count(checkpoints)
    services.producer.send_task("creditflow.maintenance.seal")
    services.producer.send_task("creditflow.maintenance.reap")
    services.producer.send_task("creditflow.maintenance.purge_idempotency")
    wait_for(lambda: count(unsealed) == 0, what="entries sealed by the worker")
    assert count(checkpoints) > before
