"""The command line: every subcommand of the issue exists; `token` signs with the secret."""

from __future__ import annotations

import subprocess
import sys

import jwt
import pytest

from cli.main import build_parser
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
