"""A store that does not answer (PostgreSQL down or restarting, its pool dry): 503 problem+json with
Retry-After, never a 500, and nothing changed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from flask.testing import FlaskClient

from api.app import create_app
from orchestration.bootstrap import bootstrap
from runtime.settings import load_settings
from tests.integration.api.conftest import BASE_SETTINGS, assert_problem, bearer, make_token
from tests.support.processes import free_port


@pytest.fixture
def client(redis_url: str) -> Iterator[FlaskClient]:
    """The API on a PostgreSQL nobody listens on (Redis is up)."""
    database = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = load_settings(DATABASE_URL=database, REDIS_URL=redis_url, **BASE_SETTINGS)
    services = bootstrap(settings)
    try:
        yield create_app(settings, services).test_client()
    finally:
        services.close()


def test_a_read_while_postgresql_is_down_is_503_with_retry_after(client: FlaskClient) -> None:
    answer = client.get("/api/v1/credits/balance", headers=bearer(make_token()))
    body = assert_problem(answer, 503)
    assert answer.headers["Retry-After"] == "5"
    assert "postgres" not in body["detail"].lower()  # no internals


def test_a_job_sent_while_postgresql_is_down_is_503_with_retry_after(client: FlaskClient) -> None:
    headers = bearer(make_token()) | {"Idempotency-Key": uuid.uuid4().hex}
    answer = client.post("/api/v1/chat/conversations", json={"model": "echo"}, headers=headers)
    assert_problem(answer, 503)
    assert answer.headers["Retry-After"] == "5"


def test_a_dry_database_pool_is_503_with_retry_after(api_database_url: str, redis_url: str) -> None:
    if api_database_url.startswith("sqlite"):
        pytest.skip("SQLite has no pool to run dry (each connection waits on the file lock)")
    # Every connection (one, and one of overflow) held by other users of the pool past the pool's wait:
    # the request is refused as "not now", not as a server bug.
    settings = load_settings(
        DATABASE_URL=api_database_url, REDIS_URL=redis_url, DATABASE_POOL_SIZE="1", **BASE_SETTINGS
    )
    services = bootstrap(settings)
    try:
        services.engine.pool._timeout = 0.5  # the pool's wait, short for the test
        client = create_app(settings, services).test_client()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with services.engine.connect(), services.engine.connect():
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert held.wait(10)
        try:
            answer = client.get("/api/v1/credits/balance", headers=bearer(make_token()))
        finally:
            release.set()
            holder.join(10)
        assert_problem(answer, 503)
        assert answer.headers["Retry-After"] == "5"
        assert client.get("/api/v1/credits/balance", headers=bearer(make_token())).status_code == 200
    finally:
        services.close()


def test_a_connection_the_server_dropped_mid_unit_raises_the_reason(
    api_database_url: str, redis_url: str
) -> None:
    # PostgreSQL restarting terminates every backend: the unit of work must raise what happened (a 503
    # above), not a PendingRollbackError from tidying up the invalidated connection (a 500).
    if api_database_url.startswith("sqlite"):
        pytest.skip("SQLite has no server to drop a connection")
    services = bootstrap(load_settings(DATABASE_URL=api_database_url, REDIS_URL=redis_url, **BASE_SETTINGS))
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            _dropped_mid_unit(services)
    finally:
        services.close()


def _dropped_mid_unit(services: Any) -> None:
    with services.uow() as db:
        backend = db.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar_one()
        with services.engine.connect() as other:
            other.execute(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        db.execute(sqlalchemy.text("SELECT 1"))
