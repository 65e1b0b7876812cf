"""A worker process's services are built once, however many pool threads ask for them first."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestration import bootstrap
from orchestration.services import Services

THREADS = 16


def test_threads_asking_at_once_share_one_set_of_services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CREDITFLOW_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/services.db")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing connects: pools are lazy
    monkeypatch.setattr(bootstrap, "_by_pid", {})
    start = threading.Barrier(THREADS)
    got: list[Services] = []
    lock = threading.Lock()

    def first_task() -> None:
        start.wait(timeout=30)
        services = bootstrap.process_services()
        with lock:
            got.append(services)

    threads = [threading.Thread(target=first_task) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    built = {id(services): services for services in got}
    for services in built.values():
        services.close()
    assert len(got) == THREADS
    # One engine pool, one Redis pool, one heartbeat thread per process: a second set would be
    # dropped from the registry while its pools stay open, and its jobs' heartbeats on their own.
    assert len(built) == 1
