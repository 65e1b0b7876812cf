"""Bearer credential checks without a database: built-in JWTs, API key shape, issuer routing."""

from __future__ import annotations

import time

import jwt
import pytest

from api.auth.principal import AuthError
from api.auth.tokens import issue_token, verify_bearer
from runtime.settings import load_settings

SECRET = "unit-secret-unit-secret-unit-secret-42"
SETTINGS = load_settings(AUTH_JWT_SECRET=SECRET, AUTH_LEEWAY_S=5)


def _token(**claims: object) -> str:
    now = int(time.time())
    body = {"iss": "creditflow", "sub": "alice", "iat": now, "exp": now + 60} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def test_issued_tokens_verify() -> None:
    principal = verify_bearer(
        issue_token(SETTINGS, sub="bob", email="b@example.com", roles=["admin"]), SETTINGS
    )
    assert (principal.kind, principal.external_id, principal.email, principal.roles) == (
        "jwt",
        "bob",
        "b@example.com",
        frozenset({"admin"}),
    )
    assert principal.rate_key == "sub:bob"


def test_api_keys_are_recognised_and_never_shown() -> None:
    principal = verify_bearer("cf_" + "x" * 43, SETTINGS)
    assert principal.kind == "api_key"
    assert "x" * 43 not in repr(principal)
    assert principal.rate_key.startswith("key:")
    assert "x" * 10 not in principal.rate_key


@pytest.mark.parametrize(
    "token",
    [
        _token(exp=int(time.time()) - 60),
        _token(exp=None),
        _token(nbf=int(time.time()) + 60),
        _token(iss="elsewhere"),
        _token(aud="someone"),
        _token(roles="admin", sub=""),
        jwt.encode(
            {"iss": "creditflow", "sub": "a", "exp": int(time.time()) + 60},
            "other-secret-other-secret-other-secret-99",
            algorithm="HS256",
        ),
        "a.b.c",
        "",
    ],
)
def test_bad_tokens_raise(token: str) -> None:
    with pytest.raises(AuthError):
        verify_bearer(token, SETTINGS)


def test_string_roles_do_not_make_an_admin() -> None:
    assert verify_bearer(_token(roles="admin"), SETTINGS).roles == frozenset()


def test_builtin_tokens_need_a_secret() -> None:
    with pytest.raises(AuthError):
        verify_bearer(_token(), load_settings(AUTH_JWT_SECRET=""))
