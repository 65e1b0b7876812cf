"""The API holds only the ledger's verification key: proofs and admin verify work, nothing can sign."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

import ledger
from api.app import create_app
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.settings import load_settings
from tests.integration.api.conftest import BASE_SETTINGS, admin_headers, new_user
from tests.support.keys import ed25519_pems

PRIVATE, PUBLIC = ed25519_pems()


@pytest.fixture
def built(engine: Engine, redis_url: str) -> Iterator[Any]:
    """Build an app on this test's own database (its checkpoints are signed with this test's keys)."""
    made: list[Services] = []

    def build(**keys: str) -> tuple[FlaskClient, Services]:
        settings = load_settings(
            DATABASE_URL=engine.url.render_as_string(hide_password=False), REDIS_URL=redis_url,
            **{**BASE_SETTINGS, **keys},
        )
        services = bootstrap(settings)
        made.append(services)
        return create_app(settings, services).test_client(), services

    yield build
    for services in made:
        services.close()


def _seal(engine: Engine) -> None:
    # What the sealing worker does, with the private key the API never sees.
    with engine.begin() as connection:
        assert ledger.seal(connection, signer=ledger.signer_from_key(PRIVATE)) is not None


def _proof_key(client: FlaskClient, headers: dict[str, str]) -> Any:
    entry_id = client.get("/api/v1/credits/transactions", headers=headers).json["items"][0]["id"]
    answer = client.get(f"/api/v1/credits/transactions/{entry_id}/proof", headers=headers)
    assert answer.status_code == 200, answer.json
    assert ledger.verify_proof(answer.json, PUBLIC)
    return answer.json["public_key"]


def test_the_api_drops_the_signing_key_and_keeps_its_public_half(built: Any, engine: Engine) -> None:
    client, _ = built(LEDGER_SIGNING_KEY=PRIVATE)
    kept = client.application.extensions["creditflow"].settings
    assert kept.LEDGER_SIGNING_KEY == ""
    headers, _ = new_user(client)
    _seal(engine)
    assert _proof_key(client, headers) == PUBLIC
    report = client.get("/api/v1/admin/ledger/verify", headers=admin_headers()).json
    assert report["ok"] is True, report


def test_the_api_runs_on_the_public_key_alone(built: Any, engine: Engine) -> None:
    client, _ = built(LEDGER_SIGNING_KEY="", LEDGER_VERIFY_KEY=PUBLIC)
    headers, _ = new_user(client)
    _seal(engine)
    assert _proof_key(client, headers) == PUBLIC
    report = client.get("/api/v1/admin/ledger/verify", headers=admin_headers()).json
    assert report["ok"] is True, report
    # Another key does not verify these checkpoints.
    other, _ = built(LEDGER_SIGNING_KEY="", LEDGER_VERIFY_KEY=ed25519_pems()[1])
    assert other.get("/api/v1/admin/ledger/verify", headers=admin_headers()).json["ok"] is False


def test_no_key_at_all_is_a_clear_503(built: Any) -> None:
    client, _ = built(LEDGER_SIGNING_KEY="", LEDGER_VERIFY_KEY="")
    answer = client.get("/api/v1/admin/ledger/verify", headers=admin_headers())
    assert answer.status_code == 503
    assert "LEDGER_VERIFY_KEY" in answer.json["detail"]
