"""The API on real services: one migrated database per backend for the module run, real Redis."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import RSAAlgorithm

from api.app import create_app
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.local import embedded_redis_url, stop_embedded_redis
from runtime.settings import Settings, load_settings
from tests.support.databases import backends, fresh_database
from tests.support.processes import api_server, child_env, free_port

JWT_SECRET = "test-secret-for-the-api-suite-0123456789"
WEBHOOK_KEY = "bm90aWZ5LXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY="  # a Fernet key (32 bytes, urlsafe base64)
SIWE_DOMAIN = "creditflow.test"
BASE_SETTINGS: dict[str, Any] = {
    "AUTH_JWT_SECRET": JWT_SECRET,
    "LEDGER_SIGNING_KEY": "hmac:api-suite-ledger-key-0123456789",
    "PUBLIC_URL": f"https://{SIWE_DOMAIN}",
    "SIWE_CHAIN_IDS": "1,8453",
    "RATE_LIMIT_USER": "100000/minute",
    "RATE_LIMIT_IP": "100000/minute",
    "RATE_LIMIT_AUTH": "100000/minute",
    "RATE_LIMIT_JOBS": "100000/minute",
    "METRICS_ENABLED": False,
}


@pytest.fixture(scope="session", params=backends())
def api_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh migrated database per backend, shared by the API tests (users are unique per test)."""
    with fresh_database(str(request.param), Path(tmp_path_factory.mktemp("apidb"))) as engine:
        yield engine.url.render_as_string(hide_password=False)


AppFactory = Callable[..., tuple[Flask, Services]]


@pytest.fixture(scope="module")
def server_env(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of real `creditflow api` servers: a fresh database (PostgreSQL when configured), the
    suite's Redis, and a broker of their own (an embedded Redis) that no worker consumes, so the jobs
    they create stay queued and no other test sees them."""
    tmp = tmp_path_factory.mktemp("servers")
    with fresh_database(backends()[-1], tmp) as engine:
        try:
            yield child_env(
                DATABASE_URL=engine.url.render_as_string(hide_password=False),
                REDIS_URL=redis_url,
                BROKER_URL=embedded_redis_url(tmp / "broker"),
                AUTH_JWT_SECRET=JWT_SECRET,
                LEDGER_SIGNING_KEY=BASE_SETTINGS["LEDGER_SIGNING_KEY"],
                CREDITFLOW_ENV="test",
                VAR_DIR=str(tmp / "var"),
                API_WORKERS="1",
                RATE_LIMITS_ENABLED="false",
                WEBHOOK_SECRET_KEY=WEBHOOK_KEY,  # webhooks on (they are 503 without it); no worker delivers
            )
        finally:
            stop_embedded_redis(tmp / "broker")


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker URL of this module's own (embedded Redis): sagas sent there reach no worker."""
    folder = tmp_path_factory.mktemp("broker")
    yield embedded_redis_url(folder)
    stop_embedded_redis(folder)


@pytest.fixture(scope="session")
def make_app(api_database_url: str, redis_url: str) -> Iterator[AppFactory]:
    """Build an app on the suite's database and Redis with setting overrides; closed at the end."""
    made: list[Services] = []

    def factory(**overrides: Any) -> tuple[Flask, Services]:
        settings = load_settings(
            DATABASE_URL=api_database_url, REDIS_URL=redis_url, **{**BASE_SETTINGS, **overrides}
        )
        services = bootstrap(settings)
        made.append(services)
        app = create_app(settings, services)
        app.testing = True
        return app, services

    yield factory
    for services in made:
        services.close()


@pytest.fixture(scope="session")
def shared_app(make_app: AppFactory) -> tuple[Flask, Services]:
    """One app with the default test settings, for tests that need nothing special."""
    return make_app()


@pytest.fixture
def app(shared_app: tuple[Flask, Services]) -> Flask:
    """The default test app."""
    return shared_app[0]


@pytest.fixture
def services(shared_app: tuple[Flask, Services]) -> Services:
    """The default test app's services."""
    return shared_app[1]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the default app."""
    return app.test_client()


def make_token(sub: str | None = None, *, secret: str = JWT_SECRET, **claims: Any) -> str:
    """A creditflow JWT for `sub` (a fresh random subject by default); claims override."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": "creditflow",
        "sub": sub or f"user-{uuid.uuid4().hex[:10]}",
        "iat": now,
        "exp": now + 600,
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def new_user(client: FlaskClient, **claims: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Sign a fresh user in: (headers, /me answer)."""
    headers = bearer(make_token(**claims))
    answer = client.get("/api/v1/me", headers=headers)
    assert answer.status_code == 200, answer.json
    return headers, answer.json


def admin_headers() -> dict[str, str]:
    """Headers of a fresh admin (roles: [admin] in a creditflow JWT)."""
    return bearer(make_token(roles=["admin"]))


def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    """The answer is a problem+json document with this status; return it."""
    assert answer.status_code == status, (answer.status_code, answer.get_data(as_text=True)[:500])
    assert answer.content_type == "application/problem+json", answer.content_type
    body = answer.json
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return dict(body)


def settings_of(app: Flask) -> Settings:
    """The settings an app was built with."""
    return app.extensions["creditflow"].settings  # type: ignore[no-any-return]


ISSUER = "https://issuer.creditflow.test"
AUDIENCE = "creditflow-web"


class Jwks:
    """A JWKS document served over HTTP on 127.0.0.1, with keys that tests rotate."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.url = ""

    def add(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def document(self) -> bytes:
        keys = []
        for kid, key in self.keys.items():
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": keys}).encode()

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "oidc-user",
            "iat": now,
            "exp": now + 300,
            "email": "o@example.com",
        } | claims
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    """A JWKS server thread, stopped after the module."""
    state = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@contextmanager
def tuned_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, **settings: object
) -> Iterator[str]:
    """A real `creditflow api` server on `server_env` with these settings changed; its base URL."""
    log = tmp_path_factory.mktemp("server") / "api.log"
    with api_server(env={**server_env, **{k: str(v) for k, v in settings.items()}}, log=log) as base:
        yield base
