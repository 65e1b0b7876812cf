"""/me, preferences, balance, transactions and proofs through HTTP on the real database."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

import ledger
from orchestration.services import Services
from tests.integration.api.conftest import admin_headers, assert_problem, new_user


def test_first_request_creates_the_user_with_the_welcome_grant(client: FlaskClient) -> None:
    _, me = new_user(client, email="ada@example.com")
    assert me["email"] == "ada@example.com"
    assert me["id"].startswith("usr_")
    assert me["external_id"].startswith("user-")
    assert me["balance"] == {"available": "1000", "held": "0", "posted": "1000"}
    assert me["preferences"] == {
        "default_chat_model": None,
        "cost_mode": "balanced",
        "low_balance_threshold": None,
        "spending_limit": None,
        "spending_limit_period": "day",
    }
    assert me["created_at"].endswith("+00:00")


def test_preferences_are_patched_and_validated(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    changed = client.patch(
        "/api/v1/me/preferences",
        headers=headers,
        json={"cost_mode": "cheapest", "low_balance_threshold": "12.5"},
    )
    assert changed.status_code == 200
    assert changed.json == {
        "default_chat_model": None,
        "cost_mode": "cheapest",
        "low_balance_threshold": "12.5",
        "spending_limit": None,
        "spending_limit_period": "day",
    }
    again = client.patch("/api/v1/me/preferences", headers=headers, json={"default_chat_model": "echo"})
    assert again.json["cost_mode"] == "cheapest"
    assert again.json["default_chat_model"] == "echo"
    assert client.get("/api/v1/me", headers=headers).json["preferences"]["default_chat_model"] == "echo"
    for body in (
        {"cost_mode": "free"},
        {"bogus": 1},
        {"low_balance_threshold": "-1"},
        {"low_balance_threshold": 3.5},
        {"low_balance_threshold": "1.0000001"},
        {"low_balance_threshold": ["0", "0", "5"]},
    ):
        problem = assert_problem(client.patch("/api/v1/me/preferences", headers=headers, json=body), 422)
        assert problem["errors"], body


def test_balance_and_transactions_paginate(client: FlaskClient) -> None:
    headers, me = new_user(client)
    for credits in ("1.5", "2", "3"):
        granted = client.post(
            "/api/v1/admin/grants",
            headers=admin_headers(),
            json={"user_id": me["id"], "credits": credits, "reason": "promo"},
        )
        assert granted.status_code == 201, granted.json
    assert client.get("/api/v1/credits/balance", headers=headers).json == {
        "available": "1006.5",
        "held": "0",
        "posted": "1006.5",
    }
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/credits/transactions", headers=headers, query_string=query).json
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["amount"] for item in seen] == ["3", "2", "1.5", "1000"]
    assert [item["balance_after"] for item in seen] == ["1006.5", "1003.5", "1001.5", "1000"]
    assert all(
        item["kind"] == "grant" and len(item["hash"]) == 64 and item["job_id"] is None for item in seen
    )
    assert len({item["id"] for item in seen}) == 4


def test_list_arguments_are_checked(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    for query in ({"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor"}, {"cursor": "WyJ4Il0"}):
        assert_problem(client.get("/api/v1/credits/transactions", headers=headers, query_string=query), 422)
    assert (
        client.get("/api/v1/credits/transactions", headers=headers, query_string={"limit": 200}).status_code
        == 200
    )


def test_proof_of_a_sealed_entry_verifies_and_others_are_hidden(app: Flask, services: Services) -> None:
    client = app.test_client()
    headers, _ = new_user(client)
    other_headers, _ = new_user(client)
    entry_id = client.get("/api/v1/credits/transactions", headers=headers).json["items"][0]["id"]
    assert_problem(client.get(f"/api/v1/credits/transactions/{entry_id}/proof", headers=headers), 409)
    signing_key = services.settings.LEDGER_SIGNING_KEY
    with services.uow() as session:
        ledger.seal(session, signer=ledger.signer_from_key(signing_key))
    answer = client.get(f"/api/v1/credits/transactions/{entry_id}/proof", headers=headers)
    assert answer.status_code == 200, answer.json
    assert ledger.verify_proof(answer.json, signing_key)
    assert client.get("/api/v1/credits/transactions", headers=headers).json["items"][0]["sealed"] is True
    # Another user's entry, a missing entry and a non-numeric id are all the same 404.
    for path_id in (entry_id, "999999999", "abc"):
        assert_problem(
            client.get(f"/api/v1/credits/transactions/{path_id}/proof", headers=other_headers), 404
        )


def test_admin_ledger_verify(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    assert_problem(client.get("/api/v1/admin/ledger/verify", headers=headers), 403)
    report = client.get("/api/v1/admin/ledger/verify", headers=admin_headers())
    assert report.status_code == 200
    assert report.json["ok"] is True
    assert report.json["entries_checked"] >= 1
    assert report.json["first_bad_entry"] is None


def test_admin_grant_validation(client: FlaskClient) -> None:
    _, me = new_user(client)
    admin = admin_headers()
    for body in (
        {"user_id": me["id"], "credits": "0", "reason": "x"},
        {"user_id": me["id"], "credits": "5", "reason": ""},
        {"user_id": me["id"], "credits": "5", "reason": "x", "expires_at": "2001-01-01T00:00:00Z"},
        {"user_id": me["id"], "credits": "5", "reason": "x", "extra": True},
    ):
        assert_problem(client.post("/api/v1/admin/grants", headers=admin, json=body), 422)
    assert_problem(
        client.post(
            "/api/v1/admin/grants",
            headers=admin,
            json={"user_id": "usr_nobody", "credits": "5", "reason": "x"},
        ),
        404,
    )
    expiring = client.post(
        "/api/v1/admin/grants",
        headers=admin,
        json={"user_id": me["id"], "credits": "5", "reason": "trial", "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert expiring.status_code == 201
    assert expiring.json["credits"] == "5"
    assert expiring.json["expires_at"].startswith("2099-01-01")
