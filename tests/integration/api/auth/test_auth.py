"""JWT attacks, OIDC against a local JWKS server, and the admin rule — all 401/403 problem+json."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient

from tests.integration.api.conftest import (
    AUDIENCE,
    ISSUER,
    AppFactory,
    Jwks,
    assert_problem,
    bearer,
    make_token,
)
from tests.support.processes import free_port


@pytest.fixture
def oidc_client(make_app: AppFactory, jwks: Jwks) -> FlaskClient:
    """An app that accepts ID tokens of the local issuer (refresh cooldown off, to test rotation)."""
    app, _ = make_app(
        OIDC_ISSUERS=[
            {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": jwks.url, "jwks_refresh_cooldown_s": 0}
        ]
    )
    return app.test_client()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _refused(client: FlaskClient, token: str) -> dict[str, Any]:
    answer = client.get("/api/v1/me", headers=bearer(token))
    problem = assert_problem(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    return problem


def test_builtin_tokens_are_checked(client: FlaskClient) -> None:
    now = int(time.time())
    good = make_token()
    assert client.get("/api/v1/me", headers=bearer(good)).status_code == 200
    head, body, signature = good.split(".")
    unsigned = _b64({"alg": "none", "typ": "JWT"}) + "." + body + "."
    tampered_body = _b64({**json.loads(base64.urlsafe_b64decode(body + "==")), "sub": "someone-else"})
    attacks = {
        "none alg": unsigned,
        "tampered payload": f"{head}.{tampered_body}.{signature}",
        "tampered signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "wrong secret": make_token(secret="another-secret-another-secret-12345"),
        "expired": make_token(exp=now - 3600),
        "no exp": make_token(exp=None),
        "not yet valid": make_token(nbf=now + 3600),
        "issued in the future": make_token(iat=now + 3600),
        "wrong issuer": make_token(iss="someone-else"),
        "audience on a built-in token": make_token(aud="other-service"),
        "blank subject": make_token(sub=" "),
        "numeric subject": make_token(sub=12345),
        "garbage": "not.a.token",
    }
    for name, token in attacks.items():
        answer = client.get("/api/v1/me", headers=bearer(token))
        assert answer.status_code == 401, name
        assert token not in answer.get_data(as_text=True), name
    assert (
        client.get("/api/v1/me", headers=bearer(make_token(exp=now - 10))).status_code == 200
    )  # within leeway
    for header in ({"Authorization": f"Basic {good}"}, {"Authorization": "Bearer "}, {}):
        assert_problem(client.get("/api/v1/me", headers=header), 401)


def test_oidc_tokens_verify_against_the_jwks(oidc_client: FlaskClient, jwks: Jwks) -> None:
    # Kids of this run only: the JWKS server lives for the module and its client for the process, so a kid
    # another test (or this one on the other backend) made is already known, with another key.
    first, second = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("k1", "k2"))
    jwks.add(first)
    sub = f"oidc-{uuid.uuid4().hex[:8]}"
    me = oidc_client.get("/api/v1/me", headers=bearer(jwks.token(first, sub=sub)))
    assert me.status_code == 200, me.json
    assert me.json["external_id"] == f"{ISSUER}#{sub}"
    assert me.json["email"] == "o@example.com"
    # The same subject from the built-in issuer is another user: issuers cannot impersonate each other.
    assert oidc_client.get("/api/v1/me", headers=bearer(make_token(sub=sub))).json["id"] != me.json["id"]
    # A rotated-in key is fetched when an unknown kid shows up.
    jwks.add(second)
    fetches = jwks.fetches
    assert (
        oidc_client.get("/api/v1/me", headers=bearer(jwks.token(second, sub=sub))).json["id"] == me.json["id"]
    )
    assert jwks.fetches == fetches + 1
    assert oidc_client.get("/api/v1/me", headers=bearer(jwks.token(second, sub=sub))).status_code == 200
    assert jwks.fetches == fetches + 1  # cached


def test_oidc_attacks_are_refused(oidc_client: FlaskClient, jwks: Jwks) -> None:
    jwks.add("k1")
    now = int(time.time())
    public_pem = (
        jwks.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    payload = _b64(claims)
    import hashlib
    import hmac

    confused_sig = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{payload}." + base64.urlsafe_b64encode(confused_sig).decode().rstrip("=")
    attacks = {
        "wrong audience": jwks.token("k1", aud="someone-else"),
        "expired": jwks.token("k1", exp=now - 3600),
        "no exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"},
            jwks.keys["k1"],
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
        "signed by a stranger with a known kid": jwt.encode(
            claims, stranger, algorithm="RS256", headers={"kid": "k1"}
        ),
        "unknown kid": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "nope"}),
        "HS256 signed with the issuer's public key": confused,
        "alg none": _b64({"alg": "none"}) + "." + payload + ".",
        "unconfigured issuer": jwks.token("k1", iss="https://evil.example"),
        "the built-in secret on an OIDC issuer": make_token(iss=ISSUER, aud=AUDIENCE),
    }
    for token in attacks.values():
        _refused(oidc_client, token)


def test_unreachable_jwks_is_a_503(make_app: AppFactory, jwks: Jwks) -> None:
    jwks.add("k1")
    app, _ = make_app(
        OIDC_ISSUERS=[
            {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": f"http://127.0.0.1:{free_port()}/jwks.json"}
        ]
    )
    assert_problem(app.test_client().get("/api/v1/me", headers=bearer(jwks.token("k1"))), 503)


def test_admin_role_and_admin_subjects(make_app: AppFactory, client: FlaskClient) -> None:
    sub = f"boss-{uuid.uuid4().hex[:8]}"
    assert_problem(client.get("/api/v1/admin/ledger/verify", headers=bearer(make_token(sub=sub))), 403)
    assert_problem(client.get("/api/v1/admin/ledger/verify", headers=bearer(make_token(roles="admin"))), 403)
    assert (
        client.get("/api/v1/admin/ledger/verify", headers=bearer(make_token(roles=["admin"]))).status_code
        == 200
    )
    app, _ = make_app(ADMIN_SUBJECTS=f"someone,{sub}")
    assert (
        app.test_client().get("/api/v1/admin/ledger/verify", headers=bearer(make_token(sub=sub))).status_code
        == 200
    )
    assert_problem(client.get("/api/v1/admin/ledger/verify"), 401)
