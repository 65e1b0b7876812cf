"""Sign-In With Ethereum round trip with a generated account; nonces are single-use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from flask.testing import FlaskClient

from api.auth.siwe import build_message
from tests.integration.api.conftest import SIWE_DOMAIN, AppFactory, assert_problem, bearer


def _signed(client: FlaskClient, account: LocalAccount, **overrides: Any) -> dict[str, str]:
    nonce = overrides.pop("nonce", None) or client.post("/api/v1/auth/siwe/nonce").json["nonce"]
    fields: dict[str, Any] = {
        "domain": SIWE_DOMAIN,
        "address": account.address,
        "uri": f"https://{SIWE_DOMAIN}/login",
        "chain_id": 1,
        "nonce": nonce,
        "issued_at": datetime.now(UTC),
        "statement": "Sign in to creditflow.",
    } | overrides
    message = build_message(**fields)
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
    return {"message": message, "signature": "0x" + signature.removeprefix("0x")}


def test_round_trip_gives_a_token_for_the_checksummed_address(client: FlaskClient) -> None:
    account = Account.create()
    body = _signed(client, account)
    answer = client.post("/api/v1/auth/siwe/verify", json=body)
    assert answer.status_code == 200, answer.json
    assert answer.json["address"] == account.address
    me = client.get("/api/v1/me", headers=bearer(answer.json["token"])).json
    assert me["external_id"] == account.address
    assert me["balance"]["available"] == "1000"
    # The nonce is spent: the very same signed message cannot sign in again.
    assert_problem(client.post("/api/v1/auth/siwe/verify", json=body), 401)
    # Signing in again with a new nonce is the same user.
    again = client.post("/api/v1/auth/siwe/verify", json=_signed(client, account)).json["token"]
    assert client.get("/api/v1/me", headers=bearer(again)).json["id"] == me["id"]


def test_bad_messages_are_refused_without_spending_the_nonce(client: FlaskClient) -> None:
    account, other = Account.create(), Account.create()
    nonce = client.post("/api/v1/auth/siwe/nonce").json["nonce"]
    now = datetime.now(UTC)
    refused = [
        _signed(client, account, nonce=nonce, domain="evil.example"),
        _signed(client, account, nonce=nonce, chain_id=5),
        _signed(client, account, nonce=nonce, expiration_time=now - timedelta(minutes=5)),
        _signed(client, account, nonce=nonce, issued_at=now + timedelta(hours=1)),
        _signed(client, account, nonce="unknownnonce123"),
        {**_signed(client, account, nonce=nonce), "signature": "0x" + "00" * 65},
        {**_signed(client, account, nonce=nonce), "signature": "0x1234"},
        {"message": "hello", "signature": "0x" + "11" * 65},
    ]
    forged = _signed(client, other, nonce=nonce, address=account.address)  # signed by someone else
    for body in [*refused, forged]:
        assert_problem(client.post("/api/v1/auth/siwe/verify", json=body), 401)
    good = client.post("/api/v1/auth/siwe/verify", json=_signed(client, account, nonce=nonce, chain_id=8453))
    assert good.status_code == 200, good.json
    assert_problem(client.post("/api/v1/auth/siwe/verify", json={"message": "x"}), 422)
    assert_problem(
        client.post("/api/v1/auth/siwe/verify", json={"message": "x", "signature": "y", "z": 1}), 422
    )


def _verify(client: FlaskClient, body: dict[str, str], **request: Any) -> Any:
    return client.post("/api/v1/auth/siwe/verify", json=body, **request)


def test_the_request_host_never_names_the_domain(make_app: AppFactory) -> None:
    # No SIWE_DOMAIN: the domain is PUBLIC_URL's. A phishing page on evil.example asks for a signature
    # for evil.example and replays it with its own Host (or X-Forwarded-Host through a trusted proxy).
    for overrides in ({}, {"TRUSTED_PROXIES": 1}):
        client = make_app(SIWE_DOMAIN="", **overrides)[0].test_client()
        account = Account.create()
        phished = {"domain": "evil.example", "uri": "https://evil.example/login"}
        for request in (
            {"base_url": "https://evil.example"},
            {"headers": {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}},
        ):
            assert_problem(_verify(client, _signed(client, account, **phished), **request), 401)
        good = _verify(client, _signed(client, account), base_url="https://evil.example")
        assert good.status_code == 200, good.json


def test_the_message_uri_must_be_on_the_site(client: FlaskClient) -> None:
    account = Account.create()
    for uri in ("https://evil.example/login", f"http://{SIWE_DOMAIN}/login", f"https://{SIWE_DOMAIN}.evil.example/"):
        answer = _verify(client, _signed(client, account, uri=uri))
        assert "URI" in assert_problem(answer, 401)["detail"]
    assert _verify(client, _signed(client, account, uri=f"https://{SIWE_DOMAIN}")).status_code == 200


def test_siwe_domain_names_another_front_end(make_app: AppFactory) -> None:
    client = make_app(SIWE_DOMAIN="app.creditflow.test")[0].test_client()
    account = Account.create()
    front = {"domain": "app.creditflow.test", "uri": "https://app.creditflow.test/"}
    assert _verify(client, _signed(client, account, **front)).status_code == 200
    assert_problem(_verify(client, _signed(client, account)), 401)  # PUBLIC_URL's host is not it now


def test_development_expects_the_apis_own_address(make_app: AppFactory) -> None:
    client = make_app(PUBLIC_URL="", API_HOST="127.0.0.1", API_PORT=8123)[0].test_client()
    account = Account.create()
    own = {"domain": "127.0.0.1:8123", "uri": "http://127.0.0.1:8123/"}
    assert _verify(client, _signed(client, account, **own), base_url="http://evil.example").status_code == 200
    host = {"domain": "evil.example", "uri": "http://evil.example/"}
    assert_problem(_verify(client, _signed(client, account, **host), base_url="http://evil.example"), 401)
