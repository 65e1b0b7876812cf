"""A run's pool process dies after the run was recorded, before the ack: the job is settled once, charged
what was recorded; nothing runs again and nothing fails it. The run settles in place, so the job is
already settled when the message comes back; when that in-place settle failed, the redelivery goes
straight to settlement (the chain's settle on critical)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestration.jobs import create as job_cases
from orchestration.services import Services
from tests.integration.jobs.conftest import hold_entries, job_row, wait_final, wait_for
from tests.support.processes import ROOT, worker
from tests.support.tasks import die_after_run_key

pytestmark = pytest.mark.slow

KINDS = {
    # A streamed reply the user saw whole: a takeover would end it failed and uncharged.
    "reply": ("test-streaming", {"queue": "agents", "pieces": 3, "sleep_ms": 10}, 3000),
    # A restartable kind: a takeover would run its step a second time.
    "restartable": ("diagnostic", {"queue": "agents", "steps": 3, "sleep_ms": 10}, 3000),
}


@pytest.mark.parametrize("case", list(KINDS))
def test_a_run_killed_after_it_settled_in_place_is_settled_once(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path, case: str
) -> None:
    kind, params, charge = KINDS[case]
    env = {**job_env, "WORKER_EXTRA_TASK_MODULES": "tests.support.tasks"}
    job_id = uuid.uuid4().hex
    services.redis.set(die_after_run_key(job_id), "1", ex=300)
    work_log = logs_dir / "agents.log"
    # No critical worker at all: the run settled the job itself before its process died.
    with worker("agents", env=env, cwd=ROOT, log=work_log, pool="prefork", concurrency=1, name="ag"):
        job_cases.create_job(
            services, job_cases.CreateJob(user_id=user, kind=kind, params=params, job_id=job_id)
        )
        wait_for(lambda: not services.redis.exists(die_after_run_key(job_id)), what="the first run killed")
        row = wait_final(services, job_id, timeout=60)
        # the redelivered message finds the job ended: its claim refuses it and nothing changes
        wait_for(lambda: "] ignored" in work_log.read_text(), timeout=60, what="the redelivery refused")
    _settled_once(services, row, kind, charge)


@pytest.mark.parametrize("case", list(KINDS))
def test_a_redelivered_run_whose_run_was_recorded_goes_straight_to_settlement(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path, case: str
) -> None:
    kind, params, charge = KINDS[case]
    env = {**job_env, "WORKER_EXTRA_TASK_MODULES": "tests.support.tasks"}
    job_id = uuid.uuid4().hex
    services.redis.set(die_after_run_key(job_id), "1", ex=300)
    services.redis.set(f"creditflow:faults:settle-in-place:{job_id}", 2, ex=300)  # both attempts fail it
    work_log = logs_dir / "agents.log"
    # No critical worker yet: the settle the first attempt sent waits, so the redelivery acts first.
    with worker("agents", env=env, cwd=ROOT, log=work_log, pool="prefork", concurrency=1, name="ag"):
        job_cases.create_job(
            services, job_cases.CreateJob(user_id=user, kind=kind, params=params, job_id=job_id)
        )

        def redelivery_done() -> Any:
            # The killed attempt never logs its success; the redelivery's run does, unless it failed the job.
            row = job_row(services, job_id)
            return row.status != "running" or " succeeded in " in work_log.read_text()

        wait_for(lambda: not services.redis.exists(die_after_run_key(job_id)), what="the first run killed")
        wait_for(redelivery_done, timeout=60, what="the redelivered run handled")
        assert job_row(services, job_id).status == "running"  # not failed as `worker_lost`
        with worker("critical", env=env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"):
            row = wait_final(services, job_id, timeout=60)  # the two settle messages: one settles
    _settled_once(services, row, kind, charge)


def _settled_once(services: Services, row: Any, kind: str, charge: int) -> None:
    assert (row.status, row.cost_charged, row.error) == ("succeeded", charge, None)
    assert hold_entries(services, row.hold_id) == ["hold", "capture"]
    if kind == "diagnostic":
        assert row.result == {"steps_done": 3, "attempt": 1}  # its step ran once
    else:
        assert row.result["pieces"] == 3
