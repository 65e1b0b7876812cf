"""The OpenAI-compatible API served without the async front (a test client, a plain WSGI server): the
view streams the reply with a generator that runs after the view returned, outside its app context."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from api.app import create_app
from api.openai.routes import JOB_HEADER
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from orchestration.tables import jobs
from runtime.settings import load_settings
from tests.integration.api.conftest import BASE_SETTINGS, bearer, make_token
from tests.support.processes import free_port

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


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_completion_whose_redis_is_down_is_an_error_and_a_streamed_one_is_canceled(
    api_database_url: str, stream: bool
) -> None:
    # The view waits for the job's events itself (a whole answer) or streams them; Redis is down.
    settings = load_settings(
        DATABASE_URL=api_database_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **BASE_SETTINGS
    )
    services = bootstrap(settings)
    try:
        client = create_app(settings, services).test_client()
        body = {**BODY, "stream": stream}
        answer = client.post("/openai/v1/chat/completions", json=body, headers=bearer(make_token()))
        text = answer.get_data(as_text=True)
        if stream:
            assert answer.status_code == 200
            assert '"error"' in text.split("data: [DONE]")[0].rsplit("data: ", 1)[-1]
            assert text.endswith("data: [DONE]\n\n")
        else:
            assert answer.status_code == 503, text[:300]
            assert answer.json["error"]["type"] == "api_error"
        # A streamed reply's client got an end: it is canceled. A whole answer's job runs on (a retry
        # with its key, or the SDK's own retry, gets its answer); here no worker serves it.
        expected = "canceled" if stream else "queued"
        assert _status(services, answer.headers[JOB_HEADER]) == expected
    finally:
        services.close()
