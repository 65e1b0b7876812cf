"""A `completion` job's events as OpenAI answers: a stream of chunks, or one completion when it ends.

`OpenAIRelay` turns job events into OpenAI's text, whoever reads the events: the async front
(api/asgi.py, a coroutine per stream) or, when the API runs without it (WSGI only, test clients), the
generator here. A client that goes away mid-stream cancels the job: it pays for what was delivered.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Response

from api import openai_format as fmt
from api.services import services
from api.stream_answers import BROKEN
from api.stream_protocol import async_front, stream_descriptor
from orchestration import jobs as job_cases
from orchestration import progress
from orchestration.bootstrap import Services
from orchestration.errors import JobAlreadyFinished
from orchestration.stream_slots import Slot

log = logging.getLogger(__name__)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class OpenAIRelay:
    """Job events in, OpenAI text out; `done` once the final event was turned into the last chunks."""

    job_id: str
    created: int
    model: str
    include_usage: bool = False
    done: bool = False
    failure: dict[str, Any] | None = None  # the OpenAI error of a job that failed
    completion: dict[str, Any] | None = None  # the whole answer, once the job ended
    _text: list[str] = field(default_factory=list)

    def start(self) -> str:
        """The first chunk (the assistant's role), sent before any token."""
        return fmt.chunk(self.job_id, self.created, self.model, delta={"role": "assistant", "content": ""})

    def on_event(self, event: dict[str, Any]) -> str:
        """What to send for one job event ("" for events OpenAI clients have no use for)."""
        kind = event.get("type")
        if kind == "token":
            self._text.append(event["text"])
            return fmt.chunk(self.job_id, self.created, self.model, delta={"content": event["text"]})
        if kind not in progress.FINAL_TYPES:
            return ""
        self.done = True
        if kind == "failed":
            error = event.get("error") or {}
            self.failure = fmt.error(
                502 if error.get("code") == "step_failed" else 500,
                str(error.get("message") or "the completion failed"),
                code=error.get("code"),
            )
            return "data: " + json.dumps(self.failure, separators=(",", ":")) + "\n\n" + fmt.DONE
        result = dict(event.get("result") or {"reply": "".join(self._text), "finish_reason": "canceled"})
        charged = str(event.get("credits_spent", "0"))
        self.completion = fmt.completion(self.job_id, self.created, self.model, result, charged)
        finish = fmt.finish_reason(result.get("finish_reason"))
        out = fmt.chunk(self.job_id, self.created, self.model, delta={}, finish=finish)
        if self.include_usage:
            out += fmt.usage_chunk(self.job_id, self.created, self.model, fmt.usage(result, charged))
        return out + fmt.DONE


def completion_answer(
    row: Any, *, created: int, stream: bool, include_usage: bool, slot: Slot | None = None
) -> Response:
    """The answer to a completion request: a stream descriptor for the async front (holding `slot` in
    the user's stream cap), or served here."""
    relay = OpenAIRelay(row.id, created, str(row.model), include_usage)
    if async_front():
        return stream_descriptor(
            "openai",
            job_id=row.id,
            user_id=row.user_id,
            slot=slot.id if slot is not None else None,
            created=created,
            model=relay.model,
            stream=stream,
            include_usage=include_usage,
        )
    # Resolved now: a streamed body is iterated after the view returned, outside the app context.
    found = services()
    if stream:
        return Response(_chunks(found, row, relay), mimetype="text/event-stream", headers=STREAM_HEADERS)
    for _text in _chunks(found, row, relay):
        pass  # without the async front a whole completion waits here, holding this thread
    if relay.failure is not None:
        return Response(json.dumps(relay.failure), status=502, mimetype="application/json")
    if relay.completion is None:  # the events broke off (Redis): the job was canceled, nothing to show
        broken = fmt.error(503, BROKEN, code="events_unavailable")
        return Response(json.dumps(broken), status=503, mimetype="application/json")
    return Response(json.dumps(relay.completion), mimetype="application/json")


def _chunks(found: Services, row: Any, relay: OpenAIRelay) -> Iterator[str]:
    block_ms = int(found.settings.SSE_HEARTBEAT_S * 1000)
    try:
        yield relay.start()
        for batch in progress.follow(found.redis, progress.job_stream(row.id), "0-0", block_ms=block_ms):
            if batch is None:
                yield ": keep-alive\n\n"
                continue
            for _entry_id, event in batch:
                text = relay.on_event(event)
                if text:
                    yield text
            if relay.done:
                return
    except redis.RedisError as exc:
        log.warning("completion stream of job %s ended early: %s", row.id, exc)
        yield fmt.stream_error(503, BROKEN, code="events_unavailable") + fmt.DONE
    finally:
        if not relay.done:
            cancel_abandoned(found, row.user_id, row.id)


def cancel_abandoned(found: Services, user_id: str, job_id: str) -> None:
    """The client left before the end: cancel the job (it is charged for what was delivered)."""
    with contextlib.suppress(JobAlreadyFinished):
        job_cases.cancel_job(found, user_id=user_id, job_id=job_id)
