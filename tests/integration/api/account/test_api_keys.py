"""API keys through HTTP: shown once, hashed, listed by prefix, usable, revocable, isolated."""

from __future__ import annotations

from datetime import date

from flask.testing import FlaskClient
from sqlalchemy import select

from orchestration.accounts.api_keys import (
    api_keys,
    hash_key,
    reserve_daily_allowance,
    return_daily_allowance,
)
from orchestration.services import Services
from tests.integration.api.conftest import assert_problem, bearer, new_user


def test_key_is_shown_once_stored_hashed_and_works(client: FlaskClient, services: Services) -> None:
    headers, me = new_user(client)
    made = client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "laptop", "daily_credit_limit": "25.5"}
    )
    assert made.status_code == 201
    key = made.json["key"]
    assert key.startswith("cf_")
    assert len(key) > 40
    assert made.json["prefix"] == key[:11]
    assert made.json["daily_credit_limit"] == "25.5"
    with services.uow() as session:
        row = session.execute(select(api_keys).where(api_keys.c.id == made.json["id"])).one()
    assert row.key_hash == hash_key(key)
    assert key not in str(tuple(row))
    listed = client.get("/api/v1/api-keys", headers=headers).json
    assert [item["prefix"] for item in listed["items"]] == [key[:11]]
    assert "key" not in listed["items"][0]
    assert key not in str(listed)
    # The key authenticates as its user, and carries its limit on the auth context.
    assert client.get("/api/v1/me", headers=bearer(key)).json["id"] == me["id"]
    assert client.get("/api/v1/credits/balance", headers=bearer(key)).status_code == 200
    # A key cannot manage keys; only the user's own token can.
    assert_problem(client.post("/api/v1/api-keys", headers=bearer(key), json={"name": "more"}), 403)
    assert client.delete(f"/api/v1/api-keys/{made.json['id']}", headers=headers).status_code == 204
    assert_problem(client.get("/api/v1/me", headers=bearer(key)), 401)
    assert client.get("/api/v1/api-keys", headers=headers).json["items"] == []
    assert_problem(client.get("/api/v1/me", headers=bearer(key[:-2] + "xx")), 401)


def test_auth_context_exposes_key_and_limit(client: FlaskClient) -> None:
    headers, me = new_user(client)
    key = client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "bot", "daily_credit_limit": "3"}
    ).json
    app = client.application
    with app.test_request_context("/api/v1/me", headers=bearer(key["key"])):
        from api.auth import current_auth

        auth = current_auth()
    assert (auth.user_id, auth.method, auth.api_key_id, auth.daily_credit_limit) == (
        me["id"],
        "api_key",
        key["id"],
        3_000_000,
    )
    assert auth.is_admin is False


def test_someone_elses_key_is_a_404(client: FlaskClient) -> None:
    alice, _ = new_user(client)
    bob, _ = new_user(client)
    key = client.post("/api/v1/api-keys", headers=alice, json={"name": "a"}).json
    assert_problem(client.delete(f"/api/v1/api-keys/{key['id']}", headers=bob), 404)
    assert_problem(client.delete("/api/v1/api-keys/key_missing", headers=bob), 404)
    assert client.get("/api/v1/api-keys", headers=bob).json["items"] == []
    assert client.get("/api/v1/me", headers=bearer(key["key"])).status_code == 200


def test_keys_paginate_newest_first_and_bodies_are_validated(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    made = [
        client.post("/api/v1/api-keys", headers=headers, json={"name": f"k{i}"}).json["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            "/api/v1/api-keys",
            headers=headers,
            query_string={"limit": 2} | ({"cursor": cursor} if cursor else {}),
        ).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == made[::-1]
    for body in ({}, {"name": ""}, {"name": "x", "daily_credit_limit": "0"}, {"name": "x", "admin": True}):
        assert_problem(client.post("/api/v1/api-keys", headers=headers, json=body), 422)
    assert_problem(client.get("/api/v1/api-keys", headers=headers, query_string={"cursor": "WzEsMl0"}), 422)


def test_daily_allowance_is_counted_per_utc_day(client: FlaskClient, services: Services) -> None:
    headers, _ = new_user(client)
    key_id = client.post(
        "/api/v1/api-keys", headers=headers, json={"name": "b", "daily_credit_limit": "10"}
    ).json["id"]
    day = date(2030, 1, 1)
    with services.uow() as session:
        assert reserve_daily_allowance(session, key_id=key_id, amount=6_000_000, today=day)
        assert not reserve_daily_allowance(session, key_id=key_id, amount=5_000_000, today=day)
        return_daily_allowance(session, key_id=key_id, amount=2_000_000, today=day)
        assert reserve_daily_allowance(session, key_id=key_id, amount=5_000_000, today=day)
        assert not reserve_daily_allowance(session, key_id=key_id, amount=1_000_001, today=day)
        assert reserve_daily_allowance(session, key_id=key_id, amount=1_000_000, today=day)
        assert reserve_daily_allowance(session, key_id=key_id, amount=10_000_000, today=date(2030, 1, 2))
