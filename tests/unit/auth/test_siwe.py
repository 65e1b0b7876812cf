"""EIP-4361 message parsing and checks (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from api.auth.siwe import SiweError, build_message, check_message, parse_message, recover_signer

ADDRESS = "0xAb5801a7D398351b8bE11C439e05C5B3259aeC9B"
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
CHAINS = frozenset({1})
LEEWAY = timedelta(seconds=30)


def _message(**overrides: object) -> str:
    fields: dict[str, object] = {
        "domain": "app.example",
        "address": ADDRESS,
        "uri": "https://app.example",
        "chain_id": 1,
        "nonce": "abcdef123456",
        "issued_at": NOW,
    } | overrides
    return build_message(**fields)  # type: ignore[arg-type]


def test_round_trip_with_and_without_statement() -> None:
    for statement in (None, "Sign in please.\nSecond line."):
        parsed = parse_message(_message(statement=statement, expiration_time=NOW + timedelta(minutes=5)))
        assert (parsed.domain, parsed.address, parsed.chain_id, parsed.nonce) == (
            "app.example",
            ADDRESS,
            1,
            "abcdef123456",
        )
        assert parsed.statement == statement
        assert parsed.issued_at == NOW
        assert parsed.expiration_time == NOW + timedelta(minutes=5)
        check_message(parsed, origin="https://APP.example", chain_ids=CHAINS, leeway=LEEWAY, now=NOW)


def test_spec_example_parses() -> None:
    text = (
        "service.invalid wants you to sign in with your Ethereum account:\n"
        f"{ADDRESS}\n\n"
        "I accept the ServiceOrg Terms of Service: https://service.invalid/tos\n\n"
        "URI: https://service.invalid/login\nVersion: 1\nChain ID: 1\nNonce: 32891756\n"
        "Issued At: 2021-09-30T16:25:24Z\nResources:\n- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/\n"
        "- https://example.com/my-web2-claim.json"
    )
    parsed = parse_message(text)
    assert parsed.nonce == "32891756"
    assert parsed.uri == "https://service.invalid/login"
    assert parsed.issued_at == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"domain": "evil.example"}, "another domain"),
        ({"domain": "evil.example@app.example"}, "another domain"),
        ({"domain": "app.example:8443"}, "another domain"),
        ({"domain": "app.example.evil.example"}, "another domain"),
        ({"uri": "https://evil.example/login"}, "URI"),
        ({"uri": "http://app.example/login"}, "URI"),
        ({"uri": "https://app.example@evil.example/"}, "URI"),
        ({"uri": "https://app.example:8443/"}, "URI"),
        ({"uri": "did:example:app.example"}, "URI"),
        ({"chain_id": 5}, "chain"),
        ({"nonce": "short"}, "nonce"),
        ({"issued_at": NOW + timedelta(minutes=5)}, "future"),
        ({"expiration_time": NOW - timedelta(minutes=1)}, "expired"),
    ],
)
def test_checks_refuse(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(SiweError, match=reason):
        check_message(
            parse_message(_message(**overrides)),
            origin="https://app.example",
            chain_ids=CHAINS,
            leeway=LEEWAY,
            now=NOW,
        )


def _check(text: str, origin: str) -> None:
    check_message(parse_message(text), origin=origin, chain_ids=CHAINS, leeway=LEEWAY, now=NOW)


def test_the_origin_is_compared_as_an_origin() -> None:
    # The scheme's default port may be written or not; case does not matter in scheme and host.
    for overrides in (
        {"uri": "https://app.example:443/login"},
        {"domain": "app.example:443"},
        {"uri": "HTTPS://App.Example"},
    ):
        _check(_message(**overrides), "https://app.example")
    local = _message(domain="127.0.0.1:8000", uri="http://127.0.0.1:8000/")
    _check(local, "http://127.0.0.1:8000")
    with pytest.raises(SiweError, match="another domain"):
        _check(local, "http://127.0.0.1:8001")
    # A scheme written in front of the domain must be the site's.
    schemed = _message().replace("app.example wants", "http://app.example wants", 1)
    assert parse_message(schemed).scheme == "http"
    with pytest.raises(SiweError, match="scheme"):
        _check(schemed, "https://app.example")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "app.example wants you to sign in with your Ethereum account:\nnot-an-address\n\n\nURI: x",
        _message().replace("Chain ID: 1", "Chain ID: one"),
        _message().replace("Issued At: ", "Issued At: yesterday"),
        _message().replace("Nonce: abcdef123456\n", ""),
        _message() + "\nInjected: line",
    ],
)
def test_malformed_messages(text: str) -> None:
    with pytest.raises(SiweError):
        parse_message(text)


def test_signer_recovery() -> None:
    account = Account.create()
    text = _message(address=account.address)
    signature = Account.sign_message(encode_defunct(text=text), account.key).signature.hex()
    assert recover_signer(text, signature) == account.address
    assert recover_signer(text + " ", signature) != account.address
    for bad in ("", "0x12", "zz" * 65):
        with pytest.raises(SiweError):
            recover_signer(text, bad)
