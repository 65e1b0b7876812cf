"""Streams whose client stops reading are closed (their slot held until then); a revoked key's streams end."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests

from orchestration.jobs import progress
from tests.integration.api.conftest import bearer, make_token, tuned_server

pytestmark = pytest.mark.slow
HEARTBEAT_S = 1.0  # a slot's lease lapses 2 heartbeats + 2 s after its last refresh: 4 s
SEND_TIMEOUT_S = 8.0


@pytest.fixture(scope="module")
def strict(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API server where a user holds one stream and a client must read within 8 s."""
    limits = {"SSE_HEARTBEAT_S": HEARTBEAT_S, "SSE_SEND_TIMEOUT_S": SEND_TIMEOUT_S}
    with tuned_server(server_env, tmp_path_factory, SSE_MAX_STREAMS_PER_USER=1, **limits) as base:
        yield base


def _user_id(base: str, token: str) -> str:
    return str(requests.get(f"{base}/api/v1/me", headers=bearer(token), timeout=30).json()["id"])


def _open(base: str, path: str, token: str) -> requests.Response:
    headers = bearer(token) | {"Accept": "text/event-stream"}
    return requests.get(f"{base}{path}", headers=headers, stream=True, timeout=30)


def _second_stream_status(base: str, token: str) -> int:
    second = _open(base, "/api/v1/me/events", token)
    second.close()
    return second.status_code


def test_a_stream_whose_client_never_reads_is_closed_and_holds_its_slot_until_then(
    strict: str, server_env: dict[str, str]
) -> None:
    token = make_token(f"user-{uuid.uuid4().hex[:10]}")
    user_id = _user_id(strict, token)
    host, port = strict.removeprefix("http://").split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((host, int(port)))
    stalled.sendall(
        f"GET /api/v1/me/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    client = redis.Redis.from_url(server_env["REDIS_URL"], decode_responses=True)
    try:
        time.sleep(1)  # the stream is open and holds the user's only slot
        started = time.monotonic()
        for _ in range(800):  # 3 MB of events nobody reads
            progress.publish_user_event(client, user_id, "balance", note="x" * 4000)
        time.sleep(max(0.0, started + 6 - time.monotonic()))
        # Past its lease (4 s) but within the send timeout: the stalled stream still holds its slot.
        assert _second_stream_status(strict, token) == 429
        time.sleep(max(0.0, started + SEND_TIMEOUT_S + SEND_TIMEOUT_S / 2 + 3 - time.monotonic()))
        # The server dropped the connection: what it had buffered, then the end.
        stalled.settimeout(10)
        ended = False
        try:
            while stalled.recv(65536):
                pass
            ended = True
        except ConnectionResetError:
            ended = True
        except TimeoutError:
            ended = False
        assert ended, "the server kept a stream whose client never read"
        deadline = time.monotonic() + 10
        while _second_stream_status(strict, token) != 200:
            assert time.monotonic() < deadline, "the stalled stream's slot was never given back"
            time.sleep(0.3)
    finally:
        stalled.close()
        client.close()


def test_revoking_a_key_ends_its_open_streams(strict: str, server_env: dict[str, str]) -> None:
    token = make_token(f"user-{uuid.uuid4().hex[:10]}")
    made = requests.post(f"{strict}/api/v1/api-keys", json={"name": "ide"}, headers=bearer(token), timeout=30)
    assert made.status_code == 201, made.text
    key = made.json()
    stream = _open(strict, "/api/v1/me/events", key["key"])
    assert stream.status_code == 200
    try:
        revoked = requests.delete(f"{strict}/api/v1/api-keys/{key['id']}", headers=bearer(token), timeout=30)
        assert revoked.status_code == 204
        started = time.monotonic()
        for _chunk in stream.iter_content(chunk_size=None):  # ends when the server ends the stream
            assert time.monotonic() - started < 10, "a revoked key's stream went on"
        assert time.monotonic() - started < 10
    finally:
        stream.close()
    assert requests.get(f"{strict}/api/v1/me", headers=bearer(key["key"]), timeout=30).status_code == 401
