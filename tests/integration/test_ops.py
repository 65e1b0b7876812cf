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


def test_metrics_only_for_allowed_networks_or_the_token(database_url: str, redis_url: str) -> None:
    token = "a-metrics-token-of-enough-length"
    far = {"REMOTE_ADDR": "203.0.113.7"}
    for client in _client(DATABASE_URL=database_url, REDIS_URL=redis_url, METRICS_TOKEN=token):
        assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1, allowed by default
        refused = client.get("/metrics", environ_base=far)
        assert refused.status_code == 403
        assert refused.content_type == "application/problem+json"
        assert "creditflow_" not in refused.get_data(as_text=True)
        wrong = client.get("/metrics", environ_base=far, headers={"Authorization": f"Bearer {token}x"})
        assert wrong.status_code == 403
        allowed = client.get("/metrics", environ_base=far, headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
        assert "creditflow_queue_length" in allowed.get_data(as_text=True)
    for client in _client(DATABASE_URL=database_url, REDIS_URL=redis_url, METRICS_ALLOW="203.0.113.0/24"):
        assert client.get("/metrics", environ_base=far).status_code == 200
        assert client.get("/metrics").status_code == 403  # loopback is no longer listed
