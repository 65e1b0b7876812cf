"""What only a real server shows: chunked bodies, over-long request lines and headers, hostile nesting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.api.conftest import bearer, make_token
from tests.support.processes import api_server

pytestmark = pytest.mark.slow
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's log."""
    return tmp_path_factory.mktemp("edges") / "api.log"


@pytest.fixture(scope="module")
def api(server_env: dict[str, str], log: Path) -> Iterator[str]:
    """`creditflow api` on a fresh database."""
    with api_server(env=server_env, log=log) as base:
        yield base


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    # A generator body makes requests send Transfer-Encoding: chunked, no Content-Length.
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _problem(answer: requests.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["Content-Type"].startswith("application/problem+json"), answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def _post_key(api: str, body: Any, **headers: str) -> requests.Response:
    return requests.post(
        f"{api}/api/v1/api-keys",
        data=body,
        headers=bearer(make_token()) | {"Content-Type": "application/json"} | headers,
        timeout=30,
    )


def test_a_chunked_body_over_the_limit_is_413(api: str) -> None:
    big = json.dumps({"name": "x" * (2 * MIB)}).encode()
    problem = _problem(_post_key(api, _chunks(big)), 413)
    assert "larger than" in problem["detail"]


def test_a_chunked_body_within_the_limit_is_read_whole(api: str) -> None:
    # Just under the limit and in many chunks: all of it arrives, none of it is cut.
    head = b'{"name": "k", "daily_credit_limit": "1"'
    padded = head + b" " * (MIB - len(head) - 1) + b"}"
    made = _post_key(api, _chunks(padded, size=1000))
    assert made.status_code == 201, made.text[:300]
    assert made.json()["daily_credit_limit"] == "1"


def test_a_chunked_body_is_checked_for_storable_text(api: str) -> None:
    problem = _problem(_post_key(api, _chunks(b'{"name": "a\\ud800b"}', size=4)), 422)
    assert problem["type"].endswith("/lone-surrogate")


def test_a_request_line_too_long_is_a_problem(api: str) -> None:
    answer = requests.get(
        f"{api}/api/v1/jobs", params={"kind": "x" * 5000}, headers=bearer(make_token()), timeout=30
    )
    assert "too large" in _problem(answer, 414)["detail"].lower()


def test_headers_too_large_are_a_problem(api: str) -> None:
    answer = requests.get(f"{api}/api/v1/me", headers={"X-Padding": "p" * 9000}, timeout=30)
    assert answer.status_code in (400, 431), answer.text[:300]
    _problem(answer, answer.status_code)


def test_hostile_nesting_is_refused_and_the_worker_lives(api: str, log: Path) -> None:
    # py_ecc raises the recursion limit to 100000: parsing this overflowed the C stack and killed the
    # worker process (every request and stream it held went with it).
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"name": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001):
        problem = _problem(_post_key(api, body), 422)
        assert problem["type"].endswith("/json-too-deep")
    assert requests.get(f"{api}/healthz", timeout=10).status_code == 200
    assert "SIGSEGV" not in log.read_text(errors="replace")


def test_hostile_nesting_inside_analysis_data_is_refused_and_the_worker_lives(api: str, log: Path) -> None:
    # `data` is a string the API parses as JSON when the task is created: the door can't see its nesting.
    body = {"kind": "analysis", "prompt": "x", "max_credits": "1", "data": "[" * 100_000}
    answer = requests.post(f"{api}/api/v1/agent-tasks", json=body, headers=bearer(make_token()), timeout=30)
    problem = _problem(answer, 422)
    assert problem["type"].endswith("/bad-data")
    assert "nested too deeply" in problem["detail"]
    assert requests.get(f"{api}/healthz", timeout=10).status_code == 200
    assert "SIGSEGV" not in log.read_text(errors="replace")
