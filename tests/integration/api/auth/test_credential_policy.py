"""What an API key may do: spend credits and read; nothing else with money or account settings."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.auth.policy import api_key_may
from orchestration.services import Services
from tests.integration.api.conftest import assert_problem, bearer, new_user

# Routes that move money or change the account: a leaked API key must not reach any of them.
CLOSED_TO_KEYS = [
    ("PATCH", "/api/v1/me/auto-top-up", {"enabled": True, "threshold": "900", "pack_id": "large"}),
    ("GET", "/api/v1/me/auto-top-up", None),
    ("PATCH", "/api/v1/me/preferences", {"cost_mode": "best"}),
    ("POST", "/api/v1/payments/stripe/checkout-sessions", {"pack_id": "small"}),
    ("POST", "/api/v1/payments/paypal/orders", {"pack_id": "small"}),
    ("POST", "/api/v1/payments/crypto/intents", {"pack_id": "small", "chain_id": 1}),
    ("GET", "/api/v1/payments", None),
    ("POST", "/api/v1/api-keys", {"name": "another"}),
    ("GET", "/api/v1/api-keys", None),
]
OPEN_TO_KEYS = [
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/credits/balance"),
    ("GET", "/api/v1/credits/transactions"),
    ("GET", "/api/v1/models"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/chat/conversations"),
]


def _key(client: FlaskClient, headers: dict[str, str]) -> str:
    made = client.post("/api/v1/api-keys", headers=headers, json={"name": "ide"})
    assert made.status_code == 201, made.json
    return str(made.json["key"])


@pytest.mark.parametrize(("method", "path", "body"), CLOSED_TO_KEYS)
def test_an_api_key_is_refused_where_money_or_settings_change(
    client: FlaskClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    headers, _me = new_user(client)
    key = _key(client, headers)
    before = client.get("/api/v1/me", headers=headers).json
    answer = client.open(path, method=method, headers=bearer(key), json=body)
    problem = assert_problem(answer, 403)
    assert problem["type"].endswith("api-key-not-allowed"), problem
    # Nothing changed: the account reads the same, no second key, no order.
    assert client.get("/api/v1/me", headers=headers).json == before
    assert len(client.get("/api/v1/api-keys", headers=headers).json["items"]) == 1
    assert client.get("/api/v1/payments", headers=headers).json["items"] == []


def test_a_key_cannot_switch_auto_top_up_on(client: FlaskClient, services: Services) -> None:
    headers, _me = new_user(client)
    key = _key(client, headers)
    before = client.get("/api/v1/me/auto-top-up", headers=headers)
    assert before.status_code == 200, before.json
    assert_problem(
        client.patch(
            "/api/v1/me/auto-top-up",
            headers=bearer(key),
            json={"enabled": True, "threshold": "999", "pack_id": "large", "max_per_month": 100},
        ),
        403,
    )
    assert client.get("/api/v1/me/auto-top-up", headers=headers).json == before.json


@pytest.mark.parametrize(("method", "path"), OPEN_TO_KEYS)
def test_an_api_key_spends_and_reads(client: FlaskClient, method: str, path: str) -> None:
    headers, _me = new_user(client)
    key = _key(client, headers)
    answer = client.open(path, method=method, headers=bearer(key))
    assert answer.status_code == 200, (path, answer.json)


def test_an_api_key_creates_jobs(client: FlaskClient) -> None:
    headers, _me = new_user(client)
    key = _key(client, headers)
    created = client.post("/api/v1/diagnostics/jobs", headers=bearer(key), json={"steps": 1})
    assert created.status_code == 202, created.json


def test_every_route_is_decided_and_new_ones_are_closed_to_keys(app: Flask) -> None:
    # The table is an allow-list: a route of a blueprint it does not name is closed to API keys.
    assert not api_key_may("payments", "GET")
    assert not api_key_may("auto-top-up", "PATCH")
    assert not api_key_may("api-keys", "POST")
    assert not api_key_may("some-future-blueprint", "GET")
    assert not api_key_may("me", "PATCH")
    assert api_key_may("me", "GET")
    money = re.compile(r"/(payments|api-keys|auto-top-up|webhooks|preferences)\b")
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0] or None
        for method in rule.methods or ():
            if money.search(rule.rule) and method not in {"HEAD", "OPTIONS"}:
                assert not api_key_may(blueprint, method), (method, rule.rule)
