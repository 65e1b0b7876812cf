"""An open event stream whose Redis goes away, on a real `creditflow api` (the async front)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.api.conftest import bearer, make_token
from tests.support.processes import api_server, redis_server

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, so it can be stopped under an open stream."""
    with redis_server(tmp_path) as found:
        yield found


def test_a_stream_whose_redis_left_ends_its_answer_properly(
    own_redis: tuple[str, subprocess.Popen[bytes]], server_env: dict[str, str], tmp_path: Path
) -> None:
    url, server = own_redis
    log = tmp_path / "api.log"
    with api_server(env={**server_env, "REDIS_URL": url}, log=log) as base:
        headers = bearer(make_token())
        body = {"steps": 1, "queue": "images", "cost_per_step": "0.001"}
        created = requests.post(f"{base}/api/v1/diagnostics/jobs", json=body, headers=headers, timeout=30)
        assert created.status_code == 202, created.text[:300]
        events_url = f"{base}{created.json()['events_url']}"
        answer = requests.get(events_url, headers=headers, stream=True, timeout=60)
        assert answer.status_code == 200
        seen = b""
        chunks = answer.iter_content(chunk_size=None)
        while b"event: queued" not in seen:  # the history came: the stream now blocks on Redis
            seen += next(chunks)
        server.kill()
        server.wait()
        # The answer ends as a stream does (its last chunk, then the end of the body), so the client
        # reconnects after `retry:`; a dropped connection mid-body raises ChunkedEncodingError here.
        rest = b"".join(chunks)
    assert b"event:" not in rest
    text = log.read_text(errors="replace")
    assert "event stream ended early" in text
    assert "without completing response" not in text
