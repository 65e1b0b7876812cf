"""The per-user cap on open event streams over HTTP, on two real API servers sharing one Redis."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.api.conftest import bearer, make_token
from tests.integration.jobs.conftest import wait_for
from tests.support.processes import ROOT, creditflow, free_port, stop, wait_http

pytestmark = pytest.mark.slow
CAP = 3


@contextmanager
def _server(env: dict[str, str], log: Path) -> Iterator[tuple[str, Any]]:
    """An API server (its own process group); yields its URL and process, stopped afterwards."""
    port = free_port()
    process = creditflow("api", "--port", str(port), env=env, cwd=ROOT, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", process=process, log=log)
        yield base, process
    finally:
        stop(process)


@pytest.fixture(scope="module")
def hosts(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[tuple[str, Any]]]:
    """Two API "hosts" on one Redis: the first beats every 0.5 s and has 6 threads, the second beats every
    2 s (a 6 s lease)."""
    logs = tmp_path_factory.mktemp("hosts")
    cap = {"SSE_MAX_STREAMS_PER_USER": str(CAP)}
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                _server({**server_env, **cap, "SSE_HEARTBEAT_S": "0.5", "API_THREADS": "6"}, logs / "a.log")
            ),
            stack.enter_context(_server({**server_env, **cap, "SSE_HEARTBEAT_S": "2"}, logs / "b.log")),
        ]


def _open(base: str, path: str, token: str) -> requests.Response:
    return requests.get(
        f"{base}{path}", headers=bearer(token) | {"Accept": "text/event-stream"}, stream=True, timeout=30
    )


def _streaming(answer: requests.Response) -> requests.Response:
    assert answer.status_code == 200, answer.text[:300]
    assert answer.raw.read(6) == b"retry:"  # the stream is live: the slot is held
    return answer


def _refused(answer: requests.Response) -> bool:
    if answer.status_code != 429:
        answer.close()
        return False
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/too-many-streams")
    assert int(answer.headers["Retry-After"]) >= 1
    return True


def test_the_cap_holds_across_hosts_frees_on_close_and_after_a_crash(
    hosts: list[tuple[str, Any]], server_env: dict[str, str], tmp_path: Path
) -> None:
    (first, _), (second, second_process) = hosts
    alice, bob = make_token(), make_token()
    job = requests.post(
        f"{first}/api/v1/diagnostics/jobs", json={"steps": 1}, headers=bearer(alice), timeout=30
    )
    assert job.status_code == 202, job.text
    job_events = f"/api/v1/jobs/{job.json()['job_id']}/events"  # queued, no worker: it stays open
    open_streams = [
        _streaming(_open(first, "/api/v1/me/events", alice)),
        _streaming(_open(first, job_events, alice)),
        _streaming(_open(second, "/api/v1/me/events", alice)),
    ]
    # The cap counts every stream of the user, on every host, of both kinds.
    for base, path in ((first, "/api/v1/me/events"), (second, job_events)):
        assert _refused(_open(base, path, alice)), (base, path)
    # A refused stream holds no thread: more tries than the first host has threads leave it serving others.
    for _ in range(8):
        assert _refused(_open(first, "/api/v1/me/events", alice))
    # Another user streams and reads as usual.
    with _streaming(_open(second, "/api/v1/me/events", bob)):
        balance = requests.get(f"{first}/api/v1/credits/balance", headers=bearer(bob), timeout=10)
        assert balance.status_code == 200
    # A stream the client closes gives its slot back (seen at the server's next heartbeat write).
    open_streams.pop(0).close()
    reopened = wait_for(
        lambda: _held_or_none(_open(first, "/api/v1/me/events", alice)),
        timeout=20,
        what="a slot freed by a closed stream",
    )
    assert _refused(_open(first, "/api/v1/me/events", alice))
    # The second host dies holding a stream: no release, but its lease (6 s) runs out.
    stop(second_process, sig=signal.SIGKILL, timeout=5)
    assert _refused(_open(first, "/api/v1/me/events", alice))
    replaced = wait_for(
        lambda: _held_or_none(_open(first, "/api/v1/me/events", alice)),
        timeout=30,
        what="the dead host's slot to expire",
    )
    for answer in (*open_streams, reopened, replaced):
        answer.close()


def _held_or_none(answer: requests.Response) -> requests.Response | None:
    if answer.status_code == 200:
        return _streaming(answer)
    assert _refused(answer)
    answer.close()
    return None
