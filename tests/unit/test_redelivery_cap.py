"""The redelivery cap counts in Redis; when Redis does not answer, a redelivered task still runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration import bootstrap
from runtime.settings import get_settings
from tests.support.processes import free_port
from workers.jobs import RUNS, settle


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """This process's services on a Redis nobody listens on (nothing else is reached)."""
    monkeypatch.setenv("CREDITFLOW_ENV", "test")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cap.db")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(bootstrap, "_by_pid", {})
    get_settings.cache_clear()
    yield
    for services in bootstrap._by_pid.values():
        services.close()
    get_settings.cache_clear()


@pytest.mark.usefixtures("redis_down")
@pytest.mark.parametrize("task", [RUNS["interactive"], settle], ids=["run", "settle"])
def test_a_redelivered_task_is_not_refused_because_redis_is_down(task: object) -> None:
    # A job whose process died (RabbitMQ as the broker, Redis down meanwhile) comes back redelivered:
    # the count is unknown, and refusing the task (an exception before its body) failed the job.
    task.push_request(id="t-redelivered", retries=0, delivery_info={"redelivered": True})  # type: ignore[attr-defined]
    try:
        assert task._redelivery_cap_exceeded() is False  # type: ignore[attr-defined]
    finally:
        task.pop_request()  # type: ignore[attr-defined]
