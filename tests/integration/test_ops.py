"""Operations endpoints and error answers on the real database, Redis and broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from orchestration.bootstrap import bootstrap
from runtime.settings import load_settings


def _client(**settings: str) -> Iterator[FlaskClient]:
    services = bootstrap(load_settings(**settings))
    try:
        yield create_app(services.settings, services).test_client()
    finally:
        services.close()


@pytest.fixture
def client(database_url: str, redis_url: str) -> Iterator[FlaskClient]:
    """The API on the suite's database and Redis."""
    yield from _client(DATABASE_URL=database_url, REDIS_URL=redis_url)


def test_healthz_and_readyz(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(database_url: str) -> None:
    # Port 1 refuses connections: Redis (and the broker, which defaults to it) are down.
    for client in _client(DATABASE_URL=database_url, REDIS_URL="redis://127.0.0.1:1/0"):
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json["failed"] == ["broker", "redis"]
        assert answer.json["checks"]["database"] == "ok"


def test_readyz_names_a_broken_database(redis_url: str) -> None:
    for client in _client(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", REDIS_URL=redis_url):
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json["failed"] == ["database"]


def test_errors_are_problem_json(client: FlaskClient) -> None:
    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"
    assert set(missing.json) >= {"type", "title", "status", "detail"}
    assert missing.json["status"] == 404
    wrong_method = client.post("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.content_type == "application/problem+json"
    assert "GET" in wrong_method.headers["Allow"]


def test_metrics_count_requests(client: FlaskClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'creditflow_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    assert 'creditflow_queue_length{queue="critical"}' in text
    assert "creditflow_dead_letters_pending" in text


def test_openapi_document_is_served(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "Problem" in spec["components"]["schemas"]
    assert client.get("/api/docs").status_code == 200
