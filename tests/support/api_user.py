"""A signed-in user of a running API for integration tests: bearer token, calls, events, job polling."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import requests

from tests.support.sse import Frame, frames, open_stream


def signed_token(secret: str, sub: str | None = None, *, ttl_s: int = 900) -> str:
    """A creditflow JWT (HS256) for a (new) user."""
    now = int(time.time())
    claims = {"iss": "creditflow", "sub": sub or f"u-{uuid.uuid4().hex}", "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


class ApiUser:
    """A new user signed in with a token of `secret`."""

    def __init__(self, base: str, secret: str) -> None:
        self.base = base
        self.bearer = signed_token(secret)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Any request with the bearer token."""
        headers = {"Authorization": f"Bearer {self.bearer}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kwargs)

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
