"""Flower shows prompts and can stop workers: logins from settings, and never open beyond localhost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.processes import ROOT, child_env, creditflow, free_port, stop, wait_http

pytestmark = pytest.mark.slow
LOGIN = ("operator", "a-long-flower-password")


def test_flower_beyond_localhost_needs_logins(tmp_path: Path, redis_url: str) -> None:
    env = child_env(REDIS_URL=redis_url, VAR_DIR=str(tmp_path / "var"), FLOWER_BASIC_AUTH="")
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "flower", "--address", "0.0.0.0", "--port", str(free_port())],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0
    assert "FLOWER_BASIC_AUTH" in done.stderr


def test_flower_asks_for_the_logins_from_dotenv(tmp_path: Path, redis_url: str) -> None:
    # Set only in .env (as docker compose's env_file or a developer would): it must still reach Flower.
    (tmp_path / ".env").write_text(f"FLOWER_BASIC_AUTH={':'.join(LOGIN)}\n")
    env = child_env(REDIS_URL=redis_url, VAR_DIR=str(tmp_path / "var"))
    env.pop("FLOWER_BASIC_AUTH", None)
    port = free_port()
    log = tmp_path / "flower.log"
    argv = ("flower", "--address", "127.0.0.1", "--port", str(port))
    process = creditflow(*argv, env=env, cwd=tmp_path, log=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/", status=401, process=process, log=log)
        assert requests.get(f"http://127.0.0.1:{port}/workers", timeout=10).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/", auth=LOGIN, timeout=10).status_code == 200
        # Flower exempts /metrics from its logins by default; ours does not.
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 401
        wrong_login = ("operator", "not-the-password")
        wrong = requests.get(f"http://127.0.0.1:{port}/metrics", auth=wrong_login, timeout=10)
        assert wrong.status_code == 401
        scraped = requests.get(f"http://127.0.0.1:{port}/metrics", auth=LOGIN, timeout=10)
        assert scraped.status_code == 200
        assert "flower_events_total" in scraped.text or "# HELP" in scraped.text
    finally:
        stop(process)
