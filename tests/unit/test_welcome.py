"""The welcome policy's pure parts: which providers earn the grant, how a client address is counted."""

from __future__ import annotations

import pytest

from orchestration.accounts.welcome import WelcomePolicy, client_key
from runtime.settings import load_settings

ISSUER = "https://issuer.example"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client on a dual-stack socket
        (None, "unknown"),
        ("", "unknown"),
        ("not-an-address" * 10, ("not-an-address" * 10)[:64]),
    ],
)
def test_client_keys(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_providers_earn_by_kind_or_by_issuer() -> None:
    issuers = [{"issuer": ISSUER, "audience": "a", "jwks_url": "https://issuer.example/jwks"}]
    every = WelcomePolicy.from_settings(load_settings(OIDC_ISSUERS=issuers))
    assert all(every.earns(provider) for provider in ("creditflow", "siwe", ISSUER))
    assert not every.earns("https://unconfigured.example")
    named = WelcomePolicy.from_settings(load_settings(OIDC_ISSUERS=issuers, WELCOME_GRANT_PROVIDERS=ISSUER))
    assert named.earns(ISSUER)
    assert not named.earns("creditflow")
    assert not named.earns("siwe")
    no_oidc = WelcomePolicy.from_settings(load_settings(OIDC_ISSUERS=issuers, WELCOME_GRANT_PROVIDERS="siwe"))
    assert not no_oidc.earns(ISSUER)
