"""Server-Sent Events over Redis streams: a job's progress and a user's balance changes.

The views decide (ownership, Last-Event-ID, the per-user cap on open streams); the streaming itself is
a coroutine of the async front when the API runs on it (api/streams/server.py), else the generators here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import redis
from flask import Response, current_app, request
from flask_smorest import abort

from api.services import services
from api.streams.frames import HEADERS, RETRY, final_event, with_queued
from api.streams.frames import frame as _frame
from api.streams.protocol import async_front, stream_descriptor
from api.streams.schemas import ENTRY_ID
from orchestration.jobs import create as job_cases
from orchestration.jobs import progress
from orchestration.jobs.stream_slots import HeldStream, Slot, StreamSlots
from orchestration.tables import FINAL_STATUSES

log = logging.getLogger(__name__)


def _last_event_id(default: str, *, allowed: tuple[str, ...] = ("0-0",)) -> str:
    # The header wins over the query parameter, but each that is sent must be an id (an empty one is
    # none, as HTTP stacks drop empty headers). Redis ends a stream at an id beyond its range, with no
    # final event, so such an id is refused here, before streaming.
    given = [
        value for value in (request.headers.get("Last-Event-ID"), request.args.get("last_event_id")) if value
    ]
    for value in given:
        if value not in allowed and not ENTRY_ID.fullmatch(value):
            abort(
                400,
                message="Last-Event-ID must be an id this stream sent (like 1700000000000-0).",
                kind="bad-last-event-id",
            )
    return given[0] if given else default


# A finished job's history is sent a page at a time: a long one (a 100,000-token agent task) is not
# read whole into memory, nor in one go on the front's event loop.
DRAIN_PAGE = 500


def _final_from_row(job: Any) -> dict[str, Any]:
    final = final_event(job)
    assert final is not None, "only a finished job has a final event"
    return final


def _drain(
    client: redis.Redis, key: str, last: str, job: Any, queued: dict[str, Any] | None = None
) -> Iterator[str]:
    """What follows `last` in a finished job's stream, then its final event from the row if the
    stream lacks one (expired, trimmed, or its publish failed): the stream always ends."""
    final_seen = False
    while page := progress.read_events(client, key, last, block_ms=None, count=DRAIN_PAGE):
        for entry_id, event in with_queued(page, queued):
            final_seen = event.get("type") in progress.FINAL_TYPES
            yield _frame(entry_id, event)
        last = page[-1][0]
    if not final_seen:
        yield _frame(None, _final_from_row(job))


def job_event_stream(
    job: Any, *, queued: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The job's events from Last-Event-ID (or the start), heartbeats, ending after the final one.

    `queued`: fields merged into the `queued` event (the answer of the POST that created the job);
    `headers`: extra answer headers."""
    found = services()
    heartbeat_ms = int(found.settings.SSE_HEARTBEAT_S * 1000)
    last = _last_event_id("0-0")
    key = progress.job_stream(job.id)
    if async_front():
        slot = acquire_stream_slot(job.user_id)
        return stream_descriptor(
            "job", user_id=job.user_id, slot=slot.id, job_id=job.id, last=last, final=final_event(job),
            queued=queued, headers=headers,
        )

    def job_frames() -> Iterator[str]:
        yield RETRY
        if job.status in FINAL_STATUSES:
            yield from _drain(found.redis, key, last, job, queued)
            return
        position = last
        for batch in progress.follow(found.redis, key, last, block_ms=heartbeat_ms):
            if batch:
                position = batch[-1][0]
                yield "".join(_frame(*entry) for entry in with_queued(batch, queued))
                continue
            yield ": keep-alive\n\n"
            # A quiet period: if the job ended without its final event reaching Redis, end from the row.
            current = job_cases.get_job(found, user_id=job.user_id, job_id=job.id)
            if current.status in FINAL_STATUSES:
                yield from _drain(found.redis, key, position, current)
                return

    response = _streamed(job.user_id, job_frames())
    response.headers.update(headers or {})
    return response


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
        try:
            info = (
                client.xinfo_stream(progress.user_stream(user_id))
                if client.exists(progress.user_stream(user_id))
                else None
            )
        except redis.RedisError as exc:
            _streams_unavailable(exc)
        last = str(info["last-generated-id"]) if info else "0-0"
    if async_front():
        slot = acquire_stream_slot(user_id)
        return stream_descriptor("user", user_id=user_id, slot=slot.id, last=last)

    def frames() -> Iterator[str]:
        yield RETRY
        for batch in progress.follow(
            client, progress.user_stream(user_id), last, block_ms=heartbeat_ms, final=frozenset()
        ):
            yield "".join(_frame(*entry) for entry in batch) if batch else ": keep-alive\n\n"

    return _streamed(user_id, frames())


def _stream_slots() -> StreamSlots:
    # One per app: it only holds registered scripts; the counting is all in Redis.
    found = current_app.extensions.get("creditflow_stream_slots")
    if found is None:
        settings = services().settings
        found = StreamSlots(
            services().redis, limit=settings.SSE_MAX_STREAMS_PER_USER, heartbeat_s=settings.SSE_HEARTBEAT_S
        )
        current_app.extensions["creditflow_stream_slots"] = found
    return found  # type: ignore[no-any-return]


def acquire_stream_slot(user_id: str) -> Slot:
    """One of the user's open-stream slots; 429 (with Retry-After) when none is free."""
    slots = _stream_slots()
    try:
        slot = slots.acquire(user_id)
        retry_after = None if slot else slots.retry_after_s(user_id)
    except redis.RedisError as exc:
        _streams_unavailable(exc)
    if slot is None:
        abort(
            429,
            message=f"At most {slots.limit} event streams may be open at once; close one or retry.",
            kind="too-many-streams",
            headers={"Retry-After": str(retry_after)},
        )
        raise AssertionError("abort returned")
    return slot


def release_stream_slot(slot: Slot) -> None:
    """Give back a slot whose stream never started (the request failed after taking it)."""
    try:
        _stream_slots().release(slot)
    except redis.RedisError as exc:  # its lease runs out by itself
        log.warning("stream slot not released (its lease will expire): %s", exc)


def _streams_unavailable(exc: redis.RedisError) -> NoReturn:
    """503 with Retry-After: Redis, which every stream reads, did not answer."""
    log.warning("event streams unavailable: %s", exc)
    abort(
        503, message="Event streams are unavailable right now; retry shortly.", headers={"Retry-After": "5"}
    )
    raise AssertionError("abort returned") from exc


def _streamed(user_id: str, frames: Iterator[str]) -> Response:
    """The SSE response, holding one of the user's stream slots until it ends (429 when none is free)."""
    slot = acquire_stream_slot(user_id)
    # Refresh at every heartbeat (half of it: a beat's read may return a hair early).
    every_s = services().settings.SSE_HEARTBEAT_S / 2
    held = HeldStream(_stream_slots(), slot, _ending_cleanly(frames), every_s=every_s)
    return Response(held, mimetype="text/event-stream", headers=HEADERS)
