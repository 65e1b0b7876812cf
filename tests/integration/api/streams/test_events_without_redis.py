"""Event streams while Redis is down: a clear 503 with Retry-After, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from orchestration.bootstrap import bootstrap
from runtime.settings import load_settings
from tests.integration.api.conftest import BASE_SETTINGS, assert_problem, bearer, make_token
from tests.support.processes import free_port


@pytest.fixture
def client(api_database_url: str) -> Iterator[FlaskClient]:
    """The API on a Redis nobody listens on (the database is up)."""
    settings = load_settings(
        DATABASE_URL=api_database_url, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **BASE_SETTINGS
    )
    services = bootstrap(settings)
    try:
        yield create_app(settings, services).test_client()
    finally:
        services.close()


@pytest.mark.parametrize("resume", [None, "0-0"], ids=["from-now", "from-the-start"])
def test_the_users_event_stream_is_503_while_redis_is_down(client: FlaskClient, resume: str | None) -> None:
    headers = bearer(make_token()) | ({"Last-Event-ID": resume} if resume else {})
    answer = client.get("/api/v1/me/events", headers=headers)
    assert_problem(answer, 503)
    assert answer.headers["Retry-After"] == "5"
