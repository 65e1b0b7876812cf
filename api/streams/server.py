"""The streams the async front serves (api/asgi.py): a job's events, a user's events, an OpenAI reply.

Each stream is a coroutine on redis.asyncio (`XREAD BLOCK` on its own connection, so every reader sees
every entry) with the same semantics as the generators in api/streams/events.py: the stream entry id as
the SSE `id:`, `Last-Event-ID` resumes, a `: keep-alive` comment every SSE_HEARTBEAT_S, a job stream ending
after its final event (read from the job row if the event never reached Redis). A client that leaves is
noticed at once (ASGI's `http.disconnect`), and the stream's slot in its user's cap is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from api.http_protocol import stream_abort
from api.openai.streams import OpenAIRelay
from api.streams import sse_io
from api.streams.answers import REVOKED, Answer, StallWatch, end_broken
from api.streams.endings import JobEndings, LiveKeys
from api.streams.frames import RETRY, frame, with_queued
from api.streams.leases import KeyRevoked, Lease
from orchestration.errors import JobAlreadyFinished
from orchestration.jobs import create as job_cases
from orchestration.jobs import progress
from orchestration.jobs.stream_slots import AsyncStreamSlots, Slot
from orchestration.services import Services
from runtime.redis_pools import AsyncIdleCappedPool

log = logging.getLogger(__name__)
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Connections of one process for open streams (each blocked read holds one); Redis' own default
# maxclients is 10000 for every process together.
MAX_STREAM_CONNECTIONS = 5000
# Idle connections kept once streams end (runtime/redis_pools.py): enough for the reads of a quiet moment.
IDLE_STREAM_CONNECTIONS = 32
# A connection is probed after 30 s of silence, every 10 s, and given up after 3 unanswered probes.
KEEPALIVE = {socket.TCP_KEEPIDLE: 30, socket.TCP_KEEPINTVL: 10, socket.TCP_KEEPCNT: 3}


class AsyncStreams:
    """This process's stream server: one redis.asyncio pool (made in the event loop), the slot cap."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.heartbeat_s = services.settings.SSE_HEARTBEAT_S
        self._redis: aioredis.Redis | None = None
        self._slots: AsyncStreamSlots | None = None
        self.endings = JobEndings(services)
        self.keys = LiveKeys(services)
        self.stalls = StallWatch(services.settings.SSE_SEND_TIMEOUT_S)

    @property
    def redis(self) -> aioredis.Redis:
        """The async Redis client (built on first use, in the serving loop)."""
        if self._redis is None:
            pool = AsyncIdleCappedPool.from_url(
                self.services.settings.REDIS_URL,
                max_connections=MAX_STREAM_CONNECTIONS,
                max_idle=IDLE_STREAM_CONNECTIONS,
                timeout=10,
                decode_responses=True,
                socket_connect_timeout=5,
                # No read timeout, said out loud: redis-py 8 gives every connection a 5 s one by default
                # (redis/_defaults.py), and an XREAD that blocks a heartbeat (15 s) then raised
                # TimeoutError, ending every quiet stream at 5 s. Every read here is an XREAD that blocks
                # at most a heartbeat, and a read timeout costs redis.asyncio a task per command (a
                # tenth of the loop at 2,000 streams). TCP keepalive finds a peer that vanished.
                socket_timeout=None,
                socket_keepalive=True,
                socket_keepalive_options=KEEPALIVE,
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

    async def serve(
        self, descriptor: dict[str, Any], receive: Receive, send: Send, scope: dict[str, Any] | None = None
    ) -> None:
        """Serve the stream a view handed over, until it ends, the client leaves or stops reading."""
        kind = descriptor["kind"]
        body = {"job": self._job, "user": self._user, "openai": self._openai}[kind]
        slot = Slot(descriptor["user_id"], descriptor["slot"]) if descriptor.get("slot") else None
        lease = self._lease(slot, descriptor.get("api_key"))
        answer = Answer(send)
        streaming = asyncio.ensure_future(body(descriptor, answer.send, lease))
        gone = asyncio.ensure_future(sse_io.disconnected(receive))
        # A client that stops reading blocks our sends: past SSE_SEND_TIMEOUT_S its connection is
        # dropped (its slot kept meanwhile), or it would hold server buffers and escape its user's cap.
        watched = self.stalls.watch(answer, lease, stream_abort(scope or {}), streaming)
        abandoned, broke, left = True, None, True
        try:
            await asyncio.wait({streaming, gone}, return_when=asyncio.FIRST_COMPLETED)
            left = gone.done() or watched.stalled
            broke = streaming.exception() if streaming.done() and not streaming.cancelled() else None
            # A stream that broke (Redis went away) left its client without the end: like one who left.
            abandoned = not streaming.done() or streaming.cancelled() or broke is not None
        finally:
            self.stalls.forget(watched)
            for task in (streaming, gone):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming  # a client that left mid-write, a Redis that left: the stream just ends
            if slot is not None:
                await self._release(slot)
            revoked = isinstance(broke, KeyRevoked)
            if kind == "openai" and abandoned and (descriptor["stream"] or revoked):
                # A whole answer's client that left (a timeout) is no cancel: its job runs to the end.
                # A revoked key is: it spends nothing more.
                await self._cancel_abandoned(descriptor)
            if watched.stalled:
                log.warning("event stream closed: its client stopped reading (%s)", kind)
            elif broke is not None and not left:
                if not revoked:
                    log.warning("event stream ended early (%s): %r", kind, broke)
                detail = REVOKED if revoked else None
                await end_broken(answer, openai=kind == "openai", detail=detail)  # after the cancel

    async def answer_head(self, descriptor: dict[str, Any], send: Send) -> None:
        """A HEAD of a stream: the headers its GET would answer with, and the slot given back."""
        if descriptor.get("slot"):
            await self._release(Slot(descriptor["user_id"], descriptor["slot"]))
        await sse_io.start(send)
        await send({"type": "http.response.body", "body": b""})

    async def _job(self, descriptor: dict[str, Any], send: Send, lease: Lease) -> None:
        given = descriptor.get("headers") or {}
        extra = [(name.lower().encode(), value.encode()) for name, value in given.items()]
        await sse_io.start(send, extra=extra)
        # The retry hint rides with the first events (a job's `queued` event is there already): one
        # write fewer per stream; the headers went out with the start.
        head = RETRY
        key, last = progress.job_stream(descriptor["job_id"]), descriptor["last"]
        if descriptor.get("final") is not None:
            await self._drain(send, key, last, descriptor["final"], descriptor.get("queued"), head=head)
            await sse_io.end(send)
            return
        while True:
            batch = await self._read(key, last, block=True)
            if batch:
                last = batch[-1][0]
                ended = [
                    i for i, (_entry, event) in enumerate(batch) if event.get("type") in progress.FINAL_TYPES
                ]
                shown = batch[: ended[0] + 1] if ended else batch
                shown = with_queued(shown, descriptor.get("queued"))
                await sse_io.write(send, head + "".join(frame(*entry) for entry in shown))
                if ended:
                    break
            else:
                await sse_io.write(send, head + ": keep-alive\n\n")
            head = ""
            if not await lease.kept():
                break
            if not batch:
                # A quiet period: if the job ended without its final event reaching Redis, end from the row.
                final = await self.endings.final_of(descriptor["user_id"], descriptor["job_id"])
                if final is not None:
                    await self._drain(send, key, last, final)
                    break
        await sse_io.end(send)

    async def _user(self, descriptor: dict[str, Any], send: Send, lease: Lease) -> None:
        await sse_io.start(send)
        await sse_io.write(send, RETRY)
        key, last = progress.user_stream(descriptor["user_id"]), descriptor["last"]
        while True:
            batch = await self._read(key, last, block=True)
            if batch:
                last = batch[-1][0]
                await sse_io.write(send, "".join(frame(*entry) for entry in batch))
            else:
                await sse_io.write(send, ": keep-alive\n\n")
            if not await lease.kept():
                break
        await sse_io.end(send)

    async def _openai(self, descriptor: dict[str, Any], send: Send, lease: Lease) -> None:
        relay = OpenAIRelay(
            descriptor["job_id"], descriptor["created"], descriptor["model"], descriptor["include_usage"]
        )
        job_header = (b"x-creditflow-job-id", descriptor["job_id"].encode())
        key, last = progress.job_stream(descriptor["job_id"]), "0-0"
        if descriptor["stream"]:
            await sse_io.start(send, extra=[job_header])
            await sse_io.write(send, relay.start())
        while not relay.done:
            # A lost lease does not end a reply the user is paying for (that would cancel it): the
            # reply runs to its end and the cap undercounts meanwhile. A revoked key does end it.
            if not await lease.kept() and lease.revoked:
                raise KeyRevoked(descriptor.get("api_key"))
            batch = await self._read(key, last, block=True)
            if not batch:
                final = await self.endings.final_of(descriptor["user_id"], descriptor["job_id"])
                batch = [("", final)] if final is not None else []
                if descriptor["stream"] and not batch:
                    await sse_io.write(send, ": keep-alive\n\n")
            for entry_id, event in batch:
                last = entry_id or last
                text = relay.on_event(event)
                if text and descriptor["stream"]:
                    await sse_io.write(send, text)
        if descriptor["stream"]:
            await sse_io.end(send)
            return
        status, answer, extra = relay.whole()
        raw = json.dumps(answer).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
            job_header,
            *((name.encode(), value.encode()) for name, value in extra.items()),
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

    async def _drain(
        self, send: Send, key: str, last: str, final: dict[str, Any], queued: dict[str, Any] | None = None,
        *, head: str = "",
    ) -> None:
        """What follows `last` in a finished job's stream, then its final event if the stream lacks one;
        `head` goes out with the first write."""
        final_seen = False
        while entries := await self._read(key, last, block=False):
            entries = with_queued(entries, queued)
            await sse_io.write(send, head + "".join(frame(*entry) for entry in entries))  # a page at a time
            head = ""
            ends = [event for _entry, event in entries if event.get("type") in progress.FINAL_TYPES]
            final_seen = final_seen or bool(ends)
            last = entries[-1][0]
        if not final_seen:
            await sse_io.write(send, head + frame(None, final))

    def _lease(self, slot: Slot | None, key_id: str | None) -> Lease:
        # Every half heartbeat, as HeldStream does: a quiet read lasts a heartbeat, but a busy stream's
        # reads never come back empty, and its lease must not run out while it streams.
        return Lease(self, slot, key_id, every_s=self.heartbeat_s / 2)

    async def key_live(self, key_id: str) -> bool:
        """Whether the stream's API key still authenticates (a failed look-up keeps the stream)."""
        try:
            return await self.keys.live(key_id)
        except Exception as exc:
            log.warning("API key of a stream not checked: %r", exc)
            return True

    async def refresh_slot(self, slot: Slot) -> bool:
        """Extend a stream's lease; False (end the stream) when it was lost or Redis failed."""
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
