"""Server-Sent Events over Redis streams: a job's progress and a user's balance changes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import redis
from flask import Response, request
from flask_smorest import abort

from api.services import services
from orchestration import jobs as job_cases
from orchestration import progress
from orchestration.tables import FINAL_STATUSES

log = logging.getLogger(__name__)
ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def _frame(entry_id: str | None, event: dict[str, Any]) -> str:
    # An event made from the job row has no stream id: the client's Last-Event-ID stays as it was.
    data = json.dumps(event, separators=(",", ":"))
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event['type']}\ndata: {data}\n\n"


def _last_event_id(default: str, *, allowed: tuple[str, ...] = ("0-0",)) -> str:
    last = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or default
    if last not in allowed and not ENTRY_ID.match(last):
        abort(400, message="Last-Event-ID must be an id this stream sent (like 1700000000000-0).")
    return last


def _final_from_row(job: Any) -> dict[str, Any]:
    kind = {"succeeded": "result", "failed": "failed", "canceled": "canceled"}[job.status]
    return progress.job_event(
        job.id,
        kind,
        held=job.cost_held,
        spent=job.cost_charged or 0,
        status=job.status,
        result=job.result,
        error=job.error,
    )


def _drain(client: redis.Redis, key: str, last: str, job: Any) -> Iterator[str]:
    """What follows `last` in a finished job's stream, then its final event from the row if the
    stream lacks one (expired, trimmed, or its publish failed): the stream always ends."""
    final_seen = False
    for entry_id, event in progress.read_events(client, key, last, block_ms=None, count=100_000):
        final_seen = event.get("type") in progress.FINAL_TYPES
        yield _frame(entry_id, event)
    if not final_seen:
        yield _frame(None, _final_from_row(job))


def job_event_stream(job: Any) -> Response:
    """The job's events from Last-Event-ID (or the start), heartbeats, ending after the final one."""
    found = services()
    heartbeat_ms = int(found.settings.SSE_HEARTBEAT_S * 1000)
    last = _last_event_id("0-0")
    key = progress.job_stream(job.id)

    def job_frames() -> Iterator[str]:
        yield "retry: 2000\n\n"
        if job.status in FINAL_STATUSES:
            yield from _drain(found.redis, key, last, job)
            return
        position = last
        for batch in progress.follow(found.redis, key, last, block_ms=heartbeat_ms):
            if batch:
                position = batch[-1][0]
                yield "".join(_frame(*entry) for entry in batch)
                continue
            yield ": keep-alive\n\n"
            # A quiet period: if the job ended without its final event reaching Redis, end from the row.
            current = job_cases.get_job(found, user_id=job.user_id, job_id=job.id)
            if current.status in FINAL_STATUSES:
                yield from _drain(found.redis, key, position, current)
                return

    return Response(_ending_cleanly(job_frames()), mimetype="text/event-stream", headers=HEADERS)


def _ending_cleanly(frames: Iterator[str]) -> Iterator[str]:
    # If Redis goes away mid-stream, end the response properly: the client reconnects with
    # Last-Event-ID (after `retry:`) and misses nothing; a half-written chunk would look like a crash.
    try:
        yield from frames
    except redis.RedisError as exc:
        log.warning("event stream ended early: %s", exc)


def user_event_stream(user_id: str) -> Response:
    """The user's balance changes and notifications, from Last-Event-ID or from now; never ends."""
    client = services().redis
    heartbeat_ms = int(services().settings.SSE_HEARTBEAT_S * 1000)
    last = _last_event_id("$", allowed=("0-0", "$"))
    if last == "$":
        # XREAD with "$" would miss what arrives between two reads; pin the current end once.
        info = (
            client.xinfo_stream(progress.user_stream(user_id))
            if client.exists(progress.user_stream(user_id))
            else None
        )
        last = str(info["last-generated-id"]) if info else "0-0"

    def frames() -> Iterator[str]:
        yield "retry: 2000\n\n"
        for batch in progress.follow(
            client, progress.user_stream(user_id), last, block_ms=heartbeat_ms, final=frozenset()
        ):
            yield "".join(_frame(*entry) for entry in batch) if batch else ": keep-alive\n\n"

    return Response(_ending_cleanly(frames()), mimetype="text/event-stream", headers=HEADERS)
