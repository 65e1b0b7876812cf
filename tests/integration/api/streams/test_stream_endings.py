"""Quiet job streams ask at each heartbeat whether their job ended: one query answers a window's asks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from api.streams.endings import JobEndings
from orchestration.accounts.users import get_or_create_user
from orchestration.bootstrap import bootstrap
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from runtime.settings import load_settings


@pytest.fixture
def services(module_database_url: str, redis_url: str) -> Iterator[Services]:
    built = bootstrap(load_settings(DATABASE_URL=module_database_url, REDIS_URL=redis_url))
    yield built
    built.close()


def _user(services: Services) -> str:
    with services.uow() as db:
        return get_or_create_user(db, external_id=f"endings-{uuid.uuid4().hex}").id


def _job(services: Services, user: str) -> str:
    command = job_cases.CreateJob(user_id=user, kind="diagnostic", params={"queue": "images", "steps": 1})
    return str(job_cases.create_job(services, command)[0].id)


def test_a_windows_asks_are_answered_by_one_query(services: Services) -> None:
    me, someone_else = _user(services), _user(services)
    ended, running, theirs = _job(services, me), _job(services, me), _job(services, someone_else)
    job_cases.cancel_job(services, user_id=me, job_id=ended)
    queries: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            queries.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    try:

        async def ask_all() -> list[Any]:
            endings = JobEndings(services)
            asks = [endings.final_of(me, job_id) for job_id in (ended, running, theirs) for _ in range(200)]
            return await asyncio.gather(*asks)

        answers = asyncio.run(ask_all())
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
    assert len(queries) == 1  # 600 asks, one query
    by_job = [answers[i * 200 : (i + 1) * 200] for i in range(3)]
    assert all(answer["type"] == "canceled" for answer in by_job[0])
    assert all(answer is None for answer in by_job[1])  # still queued
    assert all(answer is None for answer in by_job[2])  # someone else's job: nothing to tell
    for user, job_id in ((me, running), (someone_else, theirs)):
        job_cases.cancel_job(services, user_id=user, job_id=job_id)
