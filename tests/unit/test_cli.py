"""The command line: every subcommand of the issue exists; `token` signs with the secret."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt
import pytest

from cli.main import build_parser
from cli.processes import api_settings
from runtime.settings import get_settings
from tests.support.keys import ed25519_pems
from tests.support.processes import ROOT, child_env


@pytest.mark.parametrize(
    "argv",
    [
        ["dev"],
        ["api"],
        ["worker", "--queues", "critical"],
        ["beat"],
        ["flower"],
        ["migrate"],
        ["token", "--sub", "alice", "--admin"],
        ["ledger", "verify"],
    ],
)
def test_subcommands_parse(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).command == argv[0]


def test_token_is_signed_with_the_secret(tmp_path) -> None:
    env = child_env(AUTH_JWT_SECRET="s3cret-for-tests-with-enough-length", VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "--sub", "alice", "--admin"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    claims = jwt.decode(
        done.stdout.strip(), "s3cret-for-tests-with-enough-length", algorithms=["HS256"], issuer="creditflow"
    )
    assert claims["sub"] == "alice"
    assert claims["roles"] == ["admin"]
    assert claims["exp"] > claims["iat"]


def test_token_generates_a_development_secret_once(tmp_path) -> None:
    env = child_env(AUTH_JWT_SECRET="", VAR_DIR=str(tmp_path), CREDITFLOW_ENV="development")
    run = [sys.executable, "-m", "cli.main", "token", "--sub", "bob"]
    first = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    secret = (tmp_path / "jwt_secret").read_text().strip()
    assert jwt.decode(first.stdout.strip(), secret, algorithms=["HS256"], issuer="creditflow")["sub"] == "bob"
    subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    assert (tmp_path / "jwt_secret").read_text().strip() == secret


def test_unknown_queue_is_refused(tmp_path) -> None:
    env = child_env(REDIS_URL="redis://127.0.0.1:1/0", VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--queues", "critical,gpu"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "unknown queue gpu" in done.stderr


PRODUCTION = {
    "CREDITFLOW_ENV": "production",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "AUTH_JWT_SECRET": "p" * 40,
    "PUBLIC_URL": "https://credits.example.com",
}


def test_a_maintenance_worker_needs_the_signing_key(tmp_path) -> None:
    # An API host may have only LEDGER_VERIFY_KEY; the worker that seals must not start without the key.
    keys = {"LEDGER_SIGNING_KEY": "", "LEDGER_VERIFY_KEY": ed25519_pems()[1]}
    env = child_env(**PRODUCTION, **keys, VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--queues", "critical,maintenance"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "seals the ledger: it needs LEDGER_SIGNING_KEY" in done.stderr, done.stderr


def test_the_api_process_keeps_only_the_verification_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    private, public = ed25519_pems()
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name, value in {**PRODUCTION, "LEDGER_SIGNING_KEY": private, "LEDGER_VERIFY_KEY": ""}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        settings = api_settings(get_settings())
        assert settings.LEDGER_SIGNING_KEY == ""
        assert public == settings.LEDGER_VERIFY_KEY
        assert os.environ["LEDGER_SIGNING_KEY"] == ""  # a later get_settings() or a .env cannot bring it back
        assert get_settings().LEDGER_SIGNING_KEY == ""
        # A verification key that is not the signing key's is a mistake to stop at.
        monkeypatch.setenv("LEDGER_SIGNING_KEY", private)
        monkeypatch.setenv("LEDGER_VERIFY_KEY", ed25519_pems()[1])
        get_settings.cache_clear()
        with pytest.raises(SystemExit, match="LEDGER_VERIFY_KEY"):
            api_settings(get_settings())
    finally:
        get_settings.cache_clear()
