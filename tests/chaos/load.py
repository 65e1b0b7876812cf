"""The steady load: the plan's jobs sent over HTTP at their offsets, as clients would, retrying a
refused send with the same Idempotency-Key (the same job, never a second one)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import requests

from tests.chaos.schedule import USERS, Job, Plan
from tests.integration.api.conftest import bearer, make_token

RETRY_FOR_S = 20.0


class Load(threading.Thread):
    """Sends every job of the plan; records what was accepted (chat jobs with their text)."""

    def __init__(self, base: str, plan: Plan, started: float) -> None:
        super().__init__(name="chaos-load", daemon=True)
        self.base, self.plan, self.started = base, plan, started
        self.headers = [
            bearer(make_token(f"chaos-user-{n}", exp=int(time.time()) + 7200)) for n in range(USERS)
        ]
        self.accepted: list[str] = []
        self.chats: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.unexpected: list[str] = []  # answers no client should see (a 500, a 4xx)

    def run(self) -> None:
        """Each job at its offset from the start."""
        for job in self.plan.jobs:
            delay = self.started + job.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            job_id = self._send(job)
            if job_id is None:
                self.counts[f"{job.kind} refused"] += 1
                continue
            self.counts[f"{job.kind} accepted"] += 1
            self.accepted.append(job_id)
            if job.kind == "chat":
                self.chats[job_id] = job.body["content"]

    def _send(self, job: Job) -> str | None:
        headers = self.headers[job.user]
        if job.kind == "diagnostic":
            return self._post("/api/v1/diagnostics/jobs", job.body, headers)
        conversation = self._post("/api/v1/chat/conversations", {"model": "echo"}, headers, field="id")
        if conversation is None:
            return None
        return self._post(f"/api/v1/chat/conversations/{conversation}/messages", job.body, headers)

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], field: str = "job_id"
    ) -> str | None:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:
            try:
                answer = requests.post(
                    f"{self.base}{path}", json=body, headers={**headers, **key}, timeout=10
                )
            except requests.RequestException:
                self.counts["send retried"] += 1
                time.sleep(0.5)
                continue
            if answer.status_code in (200, 201, 202):
                return str(answer.json()[field])
            self.counts[f"send answered {answer.status_code}"] += 1
            # Only "not now" may be retried (down, busy, the first send with this key still running); a
            # 500 says the server broke, a 4xx that the suite sent something wrong: both are findings.
            if answer.status_code not in (409, 429, 503):
                self.unexpected.append(f"{path} answered {answer.status_code}: {answer.text[:300]}")
                return None
            time.sleep(0.5)
        return None
