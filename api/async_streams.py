"""The streams the async front serves (api/asgi.py): a job's events, a user's events, an OpenAI reply.

Each stream is a coroutine on redis.asyncio (`XREAD BLOCK` on its own connection, so every reader sees
every entry) with the same semantics as the generators in api/events.py: the stream entry id as the SSE
`id:`, `Last-Event-ID` resumes, a `: keep-alive` comment every SSE_HEARTBEAT_S, a job stream ending
after its final event (read from the job row if the event never reached Redis). A client that leaves is
noticed at once (ASGI's `http.disconnect`), and the stream's slot in its user's cap is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from api.event_frames import HEADERS, final_event, frame
from api.openai_streams import OpenAIRelay
from orchestration import jobs as job_cases
from orchestration import progress
from orchestration.bootstrap import Services
from orchestration.errors import JobAlreadyFinished
from orchestration.stream_slots import AsyncStreamSlots, Slot

log = logging.getLogger(__name__)
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Connections of one process for open streams (each blocked read holds one); Redis' own default
# maxclients is 10000 for every process together.
MAX_STREAM_CONNECTIONS = 5000


class AsyncStreams:
    """This process's stream server: one redis.asyncio pool (made in the event loop), the slot cap."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.heartbeat_s = services.settings.SSE_HEARTBEAT_S
        self._redis: aioredis.Redis | None = None
        self._slots: AsyncStreamSlots | None = None

    @property
    def redis(self) -> aioredis.Redis:
        """The async Redis client (built on first use, in the serving loop)."""
        if self._redis is None:
            pool = aioredis.BlockingConnectionPool.from_url(
                self.services.settings.REDIS_URL,
                max_connections=MAX_STREAM_CONNECTIONS,
                timeout=10,
                decode_responses=True,
                socket_connect_timeout=5,
                socket_timeout=self.heartbeat_s + 15,  # outlasts a heartbeat's blocked read
            )
            self._redis = aioredis.Redis(connection_pool=pool)
        return self._redis

    @property
    def slots(self) -> AsyncStreamSlots:
        """The per-user cap on open streams, on this loop's client."""
        if self._slots is None:
            settings = self.services.settings
            self._slots = AsyncStreamSlots(
                self.redis, limit=settings.SSE_MAX_STREAMS_PER_USER, heartbeat_s=self.heartbeat_s
            )
        return self._slots

    async def close(self) -> None:
        """Close the pool (process shutdown)."""
        if self._redis is not None:
            await self._redis.aclose()

    async def serve(self, descriptor: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve the stream a view handed over, until it ends or the client leaves."""
        kind = descriptor["kind"]
        body = {"job": self._job, "user": self._user, "openai": self._openai}[kind]
        slot = Slot(descriptor["user_id"], descriptor["slot"]) if descriptor.get("slot") else None
        answer = _Answer(send)
        streaming = asyncio.ensure_future(body(descriptor, answer, slot))
        gone = asyncio.ensure_future(_disconnected(receive))
        abandoned = True
        try:
            await asyncio.wait({streaming, gone}, return_when=asyncio.FIRST_COMPLETED)
            abandoned = not streaming.done()
        finally:
            for task in (streaming, gone):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming  # a client that left mid-write, a Redis that left: the stream just ends
            if not abandoned:
                await _end_after_failure(streaming, answer)
            if slot is not None:
                await self._release(slot)
            if kind == "openai" and abandoned:
                await self._cancel_abandoned(descriptor)

    async def _job(self, descriptor: dict[str, Any], send: Send, slot: Slot | None) -> None:
        await _start(send)
        await _write(send, "retry: 2000\n\n")
        key, last = progress.job_stream(descriptor["job_id"]), descriptor["last"]
        if descriptor.get("final") is not None:
            await self._drain(send, key, last, descriptor["final"])
            await _end(send)
            return
        while True:
            batch = await self._read(key, last, block=True)
            if batch:
                last = batch[-1][0]
                ended = [
                    i for i, (_entry, event) in enumerate(batch) if event.get("type") in progress.FINAL_TYPES
                ]
                shown = batch[: ended[0] + 1] if ended else batch
                await _write(send, "".join(frame(*entry) for entry in shown))
                if ended:
                    break
                continue
            await _write(send, ": keep-alive\n\n")
            if not await self._refresh(slot):
                break
            # A quiet period: if the job ended without its final event reaching Redis, end from the row.
            final = await asyncio.to_thread(self._final_of, descriptor["user_id"], descriptor["job_id"])
            if final is not None:
                await self._drain(send, key, last, final)
                break
        await _end(send)

    async def _user(self, descriptor: dict[str, Any], send: Send, slot: Slot | None) -> None:
        await _start(send)
        await _write(send, "retry: 2000\n\n")
        key, last = progress.user_stream(descriptor["user_id"]), descriptor["last"]
        while True:
            batch = await self._read(key, last, block=True)
            if batch:
                last = batch[-1][0]
                await _write(send, "".join(frame(*entry) for entry in batch))
                continue
            await _write(send, ": keep-alive\n\n")
            if not await self._refresh(slot):
                break
        await _end(send)

    async def _openai(self, descriptor: dict[str, Any], send: Send, _slot: Slot | None) -> None:
        relay = OpenAIRelay(
            descriptor["job_id"], descriptor["created"], descriptor["model"], descriptor["include_usage"]
        )
        job_header = (b"x-creditflow-job-id", descriptor["job_id"].encode())
        key, last = progress.job_stream(descriptor["job_id"]), "0-0"
        if descriptor["stream"]:
            await _start(send, extra=[job_header])
            await _write(send, relay.start())
        while not relay.done:
            batch = await self._read(key, last, block=True)
            if not batch:
                final = await asyncio.to_thread(self._final_of, descriptor["user_id"], descriptor["job_id"])
                batch = [("", final)] if final is not None else []
                if descriptor["stream"] and not batch:
                    await _write(send, ": keep-alive\n\n")
            for entry_id, event in batch:
                last = entry_id or last
                text = relay.on_event(event)
                if text and descriptor["stream"]:
                    await _write(send, text)
        if descriptor["stream"]:
            await _end(send)
            return
        status, answer = (502, relay.failure) if relay.failure is not None else (200, relay.completion)
        raw = json.dumps(answer).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            job_header,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def _read(self, key: str, last: str, *, block: bool) -> list[tuple[str, dict[str, Any]]]:
        answer: Any = await self.redis.xread(
            {key: last}, block=int(self.heartbeat_s * 1000) if block else None, count=500
        )
        return [
            (entry, json.loads(fields["data"])) for _key, entries in answer or [] for entry, fields in entries
        ]

    async def _drain(self, send: Send, key: str, last: str, final: dict[str, Any]) -> None:
        """What follows `last` in a finished job's stream, then its final event if the stream lacks one."""
        events: Any = await self.redis.xread({key: last}, count=100_000)
        entries = [
            (entry, json.loads(fields["data"])) for _key, rows in events or [] for entry, fields in rows
        ]
        text = "".join(frame(*entry) for entry in entries)
        if not any(event.get("type") in progress.FINAL_TYPES for _entry, event in entries):
            text += frame(None, final)
        await _write(send, text)

    def _final_of(self, user_id: str, job_id: str) -> dict[str, Any] | None:
        job = job_cases.get_job(self.services, user_id=user_id, job_id=job_id)
        return final_event(job)

    async def _refresh(self, slot: Slot | None) -> bool:
        if slot is None:
            return True
        try:
            return await self.slots.refresh(slot)
        except redis.RedisError as exc:
            log.warning("stream slot not refreshed, ending the stream: %s", exc)
            return False

    async def _release(self, slot: Slot) -> None:
        try:
            await self.slots.release(slot)
        except redis.RedisError as exc:  # the lease runs out by itself
            log.warning("stream slot not released (its lease will expire): %s", exc)

    async def _cancel_abandoned(self, descriptor: dict[str, Any]) -> None:
        # The client left before the end: it pays for what was delivered.
        def cancel() -> None:
            with contextlib.suppress(JobAlreadyFinished):
                job_cases.cancel_job(
                    self.services, user_id=descriptor["user_id"], job_id=descriptor["job_id"]
                )

        await asyncio.to_thread(cancel)


class _Answer:
    """A stream's ASGI `send`, remembering whether its answer has started and ended."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = self.ended = False

    async def __call__(self, message: dict[str, Any]) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended = True


async def _end_after_failure(streaming: asyncio.Future[None], answer: _Answer) -> None:
    # A stream whose Redis left (or whose pool ran dry) ends its answer properly, as the WSGI path does
    # (api/events.py): the client reconnects after `retry:` with Last-Event-ID and misses nothing. Left
    # as it was, the server would drop the connection mid-body, which a client takes for a crash.
    failure = None if streaming.cancelled() else streaming.exception()
    if failure is None:
        return
    log.warning("event stream ended early: %s", failure)
    if answer.started and not answer.ended:
        with contextlib.suppress(Exception):  # the client may be gone as well
            await _end(answer)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _start(send: Send, *, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in HEADERS.items() if name != "Connection"
    ]
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *(extra or [])]})


async def _write(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _end(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})
