"""`creditflow api` as a real gunicorn process: its files stay under VAR_DIR, and it logs in one format."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest
import requests
from gunicorn.ctl.client import ControlClient

from tests.support.processes import api_server, child_env

pytestmark = pytest.mark.slow

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \[\d+\] [\w.]+: ")


def api(env: dict[str, str], log: Path) -> AbstractContextManager[str]:
    """`creditflow api` with one worker; ready once /healthz answers (its broker may be down on purpose)."""
    return api_server(env=env, log=log, args=("--workers", "1"), ready="/healthz")


def _env(tmp_path: Path, name: str, redis_url: str, **extra: str) -> dict[str, str]:
    return child_env(
        VAR_DIR=str(tmp_path / name / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / name / 'db.sqlite'}",
        REDIS_URL=redis_url,
        HOME=str(tmp_path / "home"),  # shared: gunicorn's default socket would be home/.gunicorn/gunicorn.ctl
        XDG_RUNTIME_DIR=str(tmp_path / "no-such-dir"),
        CREDITFLOW_ENV="test",
        **extra,
    )


def test_two_stacks_on_one_machine_each_keep_their_control_socket(tmp_path: Path, redis_url: str) -> None:
    with ExitStack() as stack:
        stacks = []
        for name in ("one", "two"):
            env = _env(tmp_path, name, redis_url)
            base = stack.enter_context(api(env, tmp_path / f"{name}.log"))
            stacks.append((base, tmp_path / name / "var" / "gunicorn.ctl"))
        for base, socket_path in stacks:
            assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
            assert socket_path.is_socket(), sorted(p.name for p in socket_path.parent.iterdir())
            with ControlClient(str(socket_path), timeout=10) as control:
                listeners = control.send_command("show listeners")["listeners"]
            # Each socket controls its own server, not whichever started last.
            assert [item["address"] for item in listeners] == [base]
        assert not (tmp_path / "home" / ".gunicorn").exists()


def test_the_control_socket_can_be_off(tmp_path: Path, redis_url: str) -> None:
    env = _env(tmp_path, "off", redis_url, API_CONTROL_SOCKET="false")
    with api(env, tmp_path / "off.log") as base:
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert not (tmp_path / "off" / "var" / "gunicorn.ctl").exists()
    assert not (tmp_path / "home" / ".gunicorn").exists()


def test_the_api_logs_at_log_level_in_one_format_and_readyz_tells_only_names(
    tmp_path: Path, redis_url: str
) -> None:
    log = tmp_path / "api.log"
    env = _env(tmp_path, "logs", redis_url, LOG_LEVEL="INFO", BROKER_URL="redis://127.0.0.1:1/0")
    with api(env, log) as base:
        answer = requests.get(f"{base}/readyz", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["failed"] == ["broker"]
        assert "127.0.0.1:1" not in answer.text
        assert "Error" not in answer.text
    lines = log.read_text(errors="replace").splitlines()
    # The app's warning with its reason, and gunicorn's own records, all in the one format.
    reason = [line for line in lines if "readiness: broker failed:" in line]
    assert reason, "\n".join(lines[-40:])
    assert LOG_LINE.match(reason[0]), reason[0]
    assert " WARNING [" in reason[0]
    assert " api.ops: " in reason[0]
    assert any("Booting worker" in line for line in lines), "\n".join(lines[-40:])
    assert [line for line in lines if line.strip() and not LOG_LINE.match(line)] == []
    assert not any('"GET /readyz' in line for line in lines)  # no access log unless --access-log
