"""Idempotency-Key on a money-moving POST: replay, conflict, in-flight, per-user scope, release on error."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from api.idempotency import fingerprint
from orchestration.accounts import idempotency
from orchestration.services import Services
from tests.integration.api.conftest import admin_headers, assert_problem, new_user


def _grant(
    client: FlaskClient, headers: dict[str, str], key: str | None, user_id: str, credits: str = "5"
) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/admin/grants",
        headers=headers | extra,
        json={"user_id": user_id, "credits": credits, "reason": "idem"},
    )


def test_same_key_and_body_replays_the_first_answer(client: FlaskClient) -> None:
    user_headers, me = new_user(client)
    admin = admin_headers()
    key = uuid.uuid4().hex
    first = _grant(client, admin, key, me["id"])
    assert first.status_code == 201
    again = _grant(client, admin, key, me["id"])
    assert again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get("/api/v1/credits/balance", headers=user_headers).json["posted"] == "1005"
    assert_problem(_grant(client, admin, key, me["id"], credits="6"), 409)
    # Keys are scoped per caller: another admin's identical key is a new request.
    assert _grant(client, admin_headers(), key, me["id"]).status_code == 201
    assert client.get("/api/v1/credits/balance", headers=user_headers).json["posted"] == "1010"
    # Without a key every request counts.
    assert _grant(client, admin, None, me["id"]).status_code == 201
    assert client.get("/api/v1/credits/balance", headers=user_headers).json["posted"] == "1015"


def test_a_request_still_in_flight_is_a_409(client: FlaskClient, services: Services) -> None:
    _, me = new_user(client)
    admin = admin_headers()
    admin_id = client.get("/api/v1/me", headers=admin).json["id"]
    key = uuid.uuid4().hex
    body = {"user_id": me["id"], "credits": "5", "reason": "idem"}
    with client.application.test_request_context("/api/v1/admin/grants", method="POST", json=body):
        print_ = fingerprint()
    with services.uow() as session:  # the first request has claimed the key, not finished
        claim = idempotency.claim(
            session, user_id=admin_id, key=key, fingerprint=print_, ttl=timedelta(days=1)
        )
    assert claim.outcome == "new"
    answer = client.post("/api/v1/admin/grants", headers=admin | {"Idempotency-Key": key}, json=body)
    problem = assert_problem(answer, 409)
    assert problem["type"].endswith("idempotency-request-in-flight")
    assert answer.headers["Retry-After"] == "1"


def test_errors_release_the_key(client: FlaskClient) -> None:
    user_headers, me = new_user(client)
    admin = admin_headers()
    key = uuid.uuid4().hex
    bad = client.post(
        "/api/v1/admin/grants",
        headers=admin | {"Idempotency-Key": key},
        json={"user_id": "usr_nobody", "credits": "5", "reason": "idem"},
    )
    assert_problem(bad, 404)
    assert _grant(client, admin, key, me["id"]).status_code == 201  # the key was not burnt by the 404
    assert client.get("/api/v1/credits/balance", headers=user_headers).json["posted"] == "1005"
    assert_problem(_grant(client, admin, "x" * 201, me["id"]), 400)
