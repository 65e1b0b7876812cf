"""Progress streams on the real Redis: blocking reads outlast the client's timeouts; schema checks."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestration.bootstrap import bootstrap
from orchestration.jobs import progress
from runtime.settings import load_settings


def test_a_quiet_stream_blocks_past_the_connect_timeout(redis_url: str, database_url: str) -> None:
    # With SSE_HEARTBEAT_S=7 a reader blocks 7 s; the connection must not time out at 5 s.
    services = bootstrap(load_settings(REDIS_URL=redis_url, DATABASE_URL=database_url, SSE_HEARTBEAT_S=7))
    try:
        started = time.monotonic()
        events = progress.read_events(services.redis, f"jobs:{uuid.uuid4().hex}", "0-0", block_ms=7000)
        assert events == []
        assert time.monotonic() - started >= 6.5
    finally:
        services.close()


def test_final_event_starts_expiry_and_every_reader_sees_all(redis_url: str, database_url: str) -> None:
    services = bootstrap(load_settings(REDIS_URL=redis_url, DATABASE_URL=database_url))
    try:
        job_id = uuid.uuid4().hex
        for step in range(3):
            progress.publish_job_event(services.redis, job_id, "progress", held=10, spent=step, step=step)
        assert services.redis.ttl(progress.job_stream(job_id)) == -1
        progress.publish_job_event(services.redis, job_id, "result", held=10, spent=3)
        assert 0 < services.redis.ttl(progress.job_stream(job_id)) <= progress.FINAL_TTL_S
        key = progress.job_stream(job_id)
        first, second = (
            [
                entry
                for batch in progress.follow(services.redis, key, "0-0", block_ms=100)
                for entry in batch or ()
            ]
            for _reader in range(2)
        )
        assert first == second
        assert [event["type"] for _id, event in first] == ["progress"] * 3 + ["result"]
        assert first[-1][1]["credits_spent"] == "0.000003"
        with pytest.raises(ValueError, match="unknown event type"):
            progress.publish_job_event(services.redis, job_id, "done", held=1, spent=1)
    finally:
        services.close()
