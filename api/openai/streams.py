"""A `completion` job's events as OpenAI answers: a stream of chunks, or one completion when it ends.

`OpenAIRelay` turns job events into OpenAI's text, whoever reads the events: the async front
(api/asgi.py, a coroutine per stream) or, when the API runs without it (WSGI only, test clients), the
generator here. A client that goes away mid-stream cancels the job: it pays for what was delivered. A
whole answer (`stream: false`) is not canceled by its client leaving (a timeout is no cancel, and the
SDKs retry): the job runs to its end and a retry with its key answers it (api/openai/routes.py).
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

from api.openai import format as fmt
from api.services import services
from api.streams.answers import BROKEN, WHOLE_BROKEN
from api.streams.frames import final_event
from api.streams.protocol import async_front, stream_descriptor
from orchestration.errors import JobAlreadyFinished
from orchestration.jobs import create as job_cases
from orchestration.jobs import progress
from orchestration.jobs.stream_slots import Slot
from orchestration.services import Services

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
    failure: dict[str, Any] | None = None  # the OpenAI error of a job that failed or was canceled
    status: int = 200  # a whole answer's status (an error's, once `failure` is set)
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
            self.status = 502 if error.get("code") == "step_failed" else 500
            message = str(error.get("message") or "the completion failed")
            return self._fail(fmt.error(self.status, message, code=error.get("code")))
        charged = str(event.get("credits_spent", "0"))
        recorded = event.get("result")
        result = dict(recorded or {"reply": "".join(self._text), "finish_reason": "canceled"})
        out = self._rest(str(result.get("reply") or ""))
        if fmt.was_canceled(result.get("finish_reason")):
            # Not a finish (see openai_format.CANCELED); a reply that ended before a late cancel is whole.
            self.status = 409
            return out + self._fail(fmt.error(409, fmt.CANCELED, code="canceled", cost=charged))
        self.completion = fmt.completion(self.job_id, self.created, self.model, result, charged)
        finish = fmt.finish_reason(result.get("finish_reason"))
        out += fmt.chunk(self.job_id, self.created, self.model, delta={}, finish=finish)
        if self.include_usage:
            out += fmt.usage_chunk(self.job_id, self.created, self.model, fmt.usage(result, charged))
        return out + fmt.DONE

    def whole(self) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """A whole answer: its status, body and extra headers (a canceled one is not worth a retry)."""
        if self.failure is None:
            return 200, self.completion, {}
        return self.status, self.failure, ({"x-should-retry": "false"} if self.status == 409 else {})

    def _fail(self, body: dict[str, Any]) -> str:
        self.failure = body
        return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n" + fmt.DONE

    def _rest(self, reply: str) -> str:
        # The row holds text its events did not bring (a replay after the stream expired): send the rest.
        sent = "".join(self._text)
        if len(reply) <= len(sent) or not reply.startswith(sent):
            return ""
        self._text.append(reply[len(sent) :])
        return fmt.chunk(self.job_id, self.created, self.model, delta={"content": reply[len(sent) :]})


def completion_answer(
    row: Any, *, created: int, stream: bool, include_usage: bool, slot: Slot | None = None
) -> Response:
    """The answer to a completion request: from the row of a finished job (a replay), else a stream
    descriptor for the async front (holding `slot` in the user's stream cap), or served here."""
    relay = OpenAIRelay(row.id, created, str(row.model), include_usage)
    final = final_event(row)
    if final is not None:
        # The row holds the whole answer, however much of the job's event stream is left (it expires).
        text = relay.on_event(final)
        if stream:
            return Response(relay.start() + text, mimetype="text/event-stream", headers=STREAM_HEADERS)
        return _whole(relay)
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
    for _text in _chunks(found, row, relay, cancel_on_leave=False):
        pass  # without the async front a whole completion waits here, holding this thread
    if relay.failure is None and relay.completion is None:
        # The events broke off (Redis): the job runs on, and a retry with its key gets its answer.
        broken = fmt.error(503, WHOLE_BROKEN, code="events_unavailable")
        return Response(json.dumps(broken), status=503, mimetype="application/json")
    return _whole(relay)


def _whole(relay: OpenAIRelay) -> Response:
    status, body, headers = relay.whole()
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _chunks(found: Services, row: Any, relay: OpenAIRelay, *, cancel_on_leave: bool = True) -> Iterator[str]:
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
        # A streamed reply's client that left pays for what it saw; a whole one's job runs to its end.
        if not relay.done and cancel_on_leave:
            cancel_abandoned(found, row.user_id, row.id)


def cancel_abandoned(found: Services, user_id: str, job_id: str) -> None:
    """The client left before the end: cancel the job (it is charged for what was delivered)."""
    with contextlib.suppress(JobAlreadyFinished):
        job_cases.cancel_job(found, user_id=user_id, job_id=job_id)
