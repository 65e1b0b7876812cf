"""A finished job with a long history replays whole and in order, a page at a time, on both paths."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
from flask.testing import FlaskClient

from api.streams.events import DRAIN_PAGE
from orchestration.jobs import progress
from tests.integration.api.conftest import bearer, make_token, tuned_server
from tests.support.sse import Frame, frames

EVENTS = 3 * DRAIN_PAGE + 7


def _publish_history(redis_url: str, job_id: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for step in range(EVENTS):
            progress.publish_job_event(client, job_id, "progress", held=1, spent=0, stage="work", step=step)
    finally:
        client.close()


def _check(received: list[Frame]) -> None:
    steps = [frame.data["step"] for frame in received if frame.event == "progress"]
    assert steps == list(range(EVENTS))
    ids = [frame.id for frame in received if frame.id]
    assert len(ids) == len(set(ids))
    assert received[-1].event == "canceled"


@pytest.fixture(scope="module")
def front(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API server on the async front (its jobs stay queued)."""
    with tuned_server(server_env, tmp_path_factory) as base:
        yield base


@pytest.mark.slow
def test_the_front_replays_a_long_finished_history(front: str, server_env: dict[str, str]) -> None:
    headers = bearer(make_token(f"user-{uuid.uuid4().hex[:10]}"))
    url = f"{front}/api/v1/diagnostics/jobs"
    created = requests.post(url, json={"steps": 1}, headers=headers, timeout=30)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    _publish_history(server_env["REDIS_URL"], job_id)
    canceled = requests.post(f"{front}/api/v1/jobs/{job_id}/cancel", headers=headers, timeout=30)
    assert canceled.status_code == 202, canceled.text
    answer = requests.get(
        f"{front}/api/v1/jobs/{job_id}/events", headers=headers | {"Accept": "text/event-stream"},
        stream=True, timeout=30,
    )
    assert answer.status_code == 200
    _check(list(frames(answer)))


def test_the_wsgi_path_replays_a_long_finished_history(client: FlaskClient, redis_url: str) -> None:
    headers = bearer(make_token())
    created = client.post("/api/v1/diagnostics/jobs", json={"steps": 1}, headers=headers)
    assert created.status_code == 202, created.json
    job_id = created.json["job_id"]
    _publish_history(redis_url, job_id)
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers).status_code == 202
    answer = client.get(f"/api/v1/jobs/{job_id}/events", headers=headers | {"Accept": "text/event-stream"})
    assert answer.status_code == 200
    events = [
        json.loads(line.removeprefix("data:"))
        for line in answer.get_data(as_text=True).splitlines()
        if line.startswith("data:")
    ]
    assert [event["step"] for event in events if event["type"] == "progress"] == list(range(EVENTS))
    assert events[-1]["type"] == "canceled"
