"""Rate limits on real Redis (429 + Retry-After), body size, unknown fields, errors never HTML."""

from __future__ import annotations

import random

from flask.testing import FlaskClient

from tests.integration.api.conftest import AppFactory, assert_problem, bearer, make_token


def _ip() -> dict[str, str]:
    # Only a WSGI environ value: keeps this run's counters apart from earlier runs on the same Redis.
    return {"REMOTE_ADDR": f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"}


def test_per_user_limit_answers_429_with_retry_after(make_app: AppFactory) -> None:
    app, _ = make_app(RATE_LIMIT_USER="3/minute")
    client = app.test_client()
    alice, bob = bearer(make_token()), bearer(make_token())
    environ = _ip()
    for _ in range(3):
        assert client.get("/api/v1/credits/balance", headers=alice, environ_base=environ).status_code == 200
    limited = client.get("/api/v1/credits/balance", headers=alice, environ_base=environ)
    problem = assert_problem(limited, 429)
    assert problem["type"].endswith("rate-limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    # Another user from the same address has a bucket of their own; ops endpoints are never limited.
    assert client.get("/api/v1/credits/balance", headers=bob, environ_base=environ).status_code == 200
    assert client.get("/healthz", headers=alice, environ_base=environ).status_code == 200


def test_per_ip_and_auth_limits(make_app: AppFactory) -> None:
    app, _ = make_app(RATE_LIMIT_IP="4/minute", RATE_LIMIT_AUTH="2/minute")
    client = app.test_client()
    environ = _ip()
    for _ in range(2):
        assert client.post("/api/v1/auth/siwe/nonce", environ_base=environ).status_code == 200
    limited = client.post("/api/v1/auth/siwe/nonce", environ_base=environ)
    assert_problem(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert client.post("/api/v1/auth/siwe/nonce", environ_base=_ip()).status_code == 200
    # Callers without a valid credential share their address's bucket (4/minute: three used so far),
    # so guessing tokens or keys from one address is throttled; signed-in callers have their own bucket.
    guess = bearer("cf_" + "g" * 43)
    assert_problem(client.get("/api/v1/credits/balance", headers=guess, environ_base=environ), 401)
    assert_problem(client.get("/api/v1/credits/balance", headers=guess, environ_base=environ), 429)
    signed_in = client.get("/api/v1/credits/balance", headers=bearer(make_token()), environ_base=environ)
    assert signed_in.status_code == 200


def test_limits_can_be_switched_off(make_app: AppFactory) -> None:
    app, _ = make_app(RATE_LIMITS_ENABLED=False, RATE_LIMIT_AUTH="1/minute")
    client = app.test_client()
    environ = _ip()
    assert all(
        client.post("/api/v1/auth/siwe/nonce", environ_base=environ).status_code == 200 for _ in range(3)
    )


def test_oversized_bodies_are_413(client: FlaskClient) -> None:
    headers = bearer(make_token())
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = client.post("/api/v1/api-keys", headers=headers | {"Content-Type": "application/json"}, data=big)
    assert_problem(answer, 413)


def test_bad_requests_are_problem_json(client: FlaskClient) -> None:
    headers = bearer(make_token())
    assert_problem(
        client.post(
            "/api/v1/api-keys", headers=headers | {"Content-Type": "application/json"}, data=b"{not json"
        ),
        400,
    )
    assert_problem(client.post("/api/v1/api-keys", headers=headers, json={"name": "k", "surprise": 1}), 422)
    assert_problem(client.get("/api/v1/nothing-here", headers=headers), 404)
    assert_problem(client.put("/api/v1/credits/balance", headers=headers), 405)
    assert_problem(client.post("/api/v1/api-keys", headers=headers, json=["a", "list"]), 422)


def test_nul_characters_are_refused_before_the_database(client: FlaskClient) -> None:
    headers = bearer(make_token())
    assert_problem(client.post("/api/v1/api-keys", headers=headers, json={"name": "a\x00b"}), 422)
    assert_problem(client.delete("/api/v1/api-keys/key%00x", headers=headers), 422)
    assert_problem(client.get("/api/v1/credits/transactions?cursor=%00", headers=headers), 422)
