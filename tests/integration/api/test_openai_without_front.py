"""The OpenAI-compatible API served without the async front (a test client, a plain WSGI server): the
view streams the reply with a generator that runs after the view returned, outside its app context."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from api.openai_api import JOB_HEADER
from orchestration.bootstrap import Services
from orchestration.tables import jobs
from tests.integration.api.conftest import bearer, make_token

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def _status(services: Services, job_id: str) -> str:
    with services.uow(autocommit=True) as db:
        return str(db.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one())


def test_a_streamed_completion_starts_and_a_client_that_leaves_cancels_it(
    app: Flask, services: Services
) -> None:
    # No worker serves the job: it stays queued, and the stream waits for its events.
    answer = app.test_client().post(
        "/openai/v1/chat/completions",
        json={**BODY, "stream": True},
        headers=bearer(make_token()),
        buffered=False,
    )
    assert answer.status_code == 200
    first = next(iter(answer.response))
    assert b'"role":"assistant"' in first
    answer.close()  # the client goes away before the reply
    assert _status(services, answer.headers[JOB_HEADER]) == "canceled"
