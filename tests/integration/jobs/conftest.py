"""Fixtures for the job machinery: real worker processes, services, users with credits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from orchestration.accounts.users import get_or_create_user
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from orchestration.tables import FINAL_STATUSES, jobs
from runtime.settings import load_settings
from tests.support.processes import ROOT, child_env, worker
from tests.support.waiting import wait_for  # noqa: F401 - imported from here by the jobs and stream tests

JWT_SECRET = "jobs-test-secret-jobs-test-secret-0123456789"


# Short heartbeats, so a job whose worker was killed is seen orphaned within seconds.
HEARTBEAT_S, HEARTBEAT_TIMEOUT_S = "0.5", "3"


@pytest.fixture(scope="module")
def job_env(
    redis_url: str, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment shared by workers and API servers of these tests (a database of the module's own)."""
    return child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        AUTH_JWT_SECRET=JWT_SECRET,
        VAR_DIR=str(tmp_path_factory.mktemp("var")),
        FAULT_INJECTION_ENABLED="true",
        TASK_MAX_REDELIVERIES="2",
        CREDITFLOW_ENV="test",
        SSE_HEARTBEAT_S="1",
        JOB_HEARTBEAT_S=HEARTBEAT_S,
        JOB_HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def services(job_env: dict[str, str]) -> Iterator[Services]:
    """The test process's own services on the same database and Redis as the workers."""
    built = bootstrap(
        load_settings(
            **{k: job_env[k] for k in ("REDIS_URL", "DATABASE_URL", "AUTH_JWT_SECRET")},
            JOB_HEARTBEAT_S=float(HEARTBEAT_S),
            JOB_HEARTBEAT_TIMEOUT_S=float(HEARTBEAT_TIMEOUT_S),
            FAULT_INJECTION_ENABLED=True,
        )
    )
    yield built
    built.close()


@pytest.fixture(scope="module")
def workers(job_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Two real prefork pools, as `creditflow dev` runs them: critical+maintenance, and the work queues."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=job_env, cwd=ROOT, log=logs / "critical.log", name="crit"),
        worker("interactive,agents", env=job_env, cwd=ROOT, log=logs / "work.log", name="work"),
    ):
        yield


@pytest.fixture
def user(services: Services) -> str:
    """A new user with the 1000-credit welcome grant; returns the user id."""
    with services.uow() as session:
        return get_or_create_user(session, external_id=f"test-{uuid.uuid4().hex}").id


def wait_final(services: Services, job_id: str, timeout: float = 60) -> Any:
    """Poll the job row until it is final; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with services.uow(autocommit=True) as session:
            row = session.execute(select(jobs).where(jobs.c.id == job_id)).one()
        if row.status in FINAL_STATUSES:
            return row
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {row.status} after {timeout}s")


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    """Where a test's own processes write their logs."""
    return tmp_path


def zero_sum(services: Services) -> int:
    """Sum of every account's posted balance (users cached, system derived): 0 when the books balance."""
    from sqlalchemy import func

    import ledger
    from ledger.tables import accounts

    with services.uow(autocommit=True) as session:
        users_total = session.execute(
            select(func.coalesce(func.sum(accounts.c.posted), 0)).where(accounts.c.kind == "user")
        ).scalar_one()
        return int(users_total) + sum(ledger.system_balances(session).values())


def hold_entries(services: Services, hold_id: str) -> list[str]:
    """The kinds of the ledger entries that touched a hold, in order."""
    from ledger.tables import entries

    with services.uow(autocommit=True) as session:
        return list(
            session.execute(
                select(entries.c.kind).where(entries.c.hold_id == hold_id).order_by(entries.c.id)
            ).scalars()
        )


def diagnostic_job(services: Services, user: str, **params: object) -> str:
    """Create a `diagnostic` job (hold + saga) for `user`; returns its id."""
    from orchestration.jobs import create as job_cases

    row, _created = job_cases.create_job(
        services, job_cases.CreateJob(user_id=user, kind="diagnostic", params=params)
    )
    return str(row.id)


def job_row(services: Services, job_id: str) -> Any:
    """The job's row as it is now."""
    with services.uow(autocommit=True) as session:
        return session.execute(select(jobs).where(jobs.c.id == job_id)).one()
