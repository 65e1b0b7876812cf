"""A per-user cap on open event streams, counted in Redis so it holds across API processes and hosts.

Each user has a sorted set of the streams they hold open: the member is the stream's slot id, the
score the time (Redis' own clock, in ms) its lease runs out. A stream refreshes its lease at every
heartbeat and gives the slot back when it ends; a stream whose process died or whose client vanished
without a close stops refreshing, and its expired lease no longer counts. Each operation is one Lua
script, so a redis.asyncio twin of `StreamSlots` only has to `await` the same scripts with the same
keys and arguments (`SCRIPTS`, `slot_key`, `lease_ms`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "creditflow:stream-slots:"

# Redis' clock, not each host's: leases written by different API hosts compare fairly.
NOW_MS = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""
# KEYS[1]: the user's set. ARGV: cap, lease in ms, new slot id. 1 when the slot is taken, 0 when the
# user holds `cap` live slots already. Expired leases are dropped first; the key itself expires with
# the longest lease, so a user who stops streaming leaves nothing behind.
ACQUIRE = NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1]: the user's set. ARGV: cap, lease in ms, slot id. 1 when the lease was extended, 0 when it had
# run out and its place is taken (the stream should end; its client reconnects and waits its turn). A
# lease that ran out while the server was slow comes back if the user is still under the cap.
REFRESH = NOW_MS + """
local until_ms = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not until_ms or tonumber(until_ms) <= now_ms then
  redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1]: the user's slot set, ARGV[1]: the slot id.
RELEASE = "return redis.call('ZREM', KEYS[1], ARGV[1])"
# KEYS[1]: the user's set. Milliseconds until its soonest lease runs out (0 if none is left).
SOONEST_EXPIRY = NOW_MS + """
local soonest = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if #soonest == 0 then
  return 0
end
return math.ceil(tonumber(soonest[2]) - now_ms)
"""
SCRIPTS = {"acquire": ACQUIRE, "refresh": REFRESH, "release": RELEASE, "soonest_expiry": SOONEST_EXPIRY}


def slot_key(user_id: str) -> str:
    """The Redis key of a user's open-stream slots."""
    return KEY_PREFIX + user_id


def lease_ms(heartbeat_s: float) -> int:
    """How long a slot lives without a refresh: two heartbeats and a margin, so one late beat is fine."""
    return int((2 * heartbeat_s + 2) * 1000)


@dataclass(frozen=True)
class Slot:
    """One open stream's place in its user's cap."""

    user_id: str
    id: str


class StreamSlots:
    """The cap on one Redis: `acquire(user_id)` a slot, `refresh(slot)` at each heartbeat, `release(slot)`."""

    def __init__(self, client: redis.Redis, *, limit: int, heartbeat_s: float) -> None:
        self.limit = limit
        self.lease_ms = lease_ms(heartbeat_s)
        self._scripts: dict[str, Any] = {name: client.register_script(body) for name, body in SCRIPTS.items()}

    def acquire(self, user_id: str) -> Slot | None:
        """A new slot for `user_id`, or None when they hold `limit` live ones already."""
        slot = Slot(user_id, uuid.uuid4().hex)
        taken = self._scripts["acquire"](keys=[slot_key(user_id)], args=[self.limit, self.lease_ms, slot.id])
        return slot if int(taken) else None

    def refresh(self, slot: Slot) -> bool:
        """Extend the slot's lease; False when it had run out and the user's cap is full (end the stream)."""
        extended = self._scripts["refresh"](
            keys=[slot_key(slot.user_id)], args=[self.limit, self.lease_ms, slot.id]
        )
        return bool(int(extended))

    def release(self, slot: Slot) -> None:
        """Give the slot back (releasing it twice does nothing)."""
        self._scripts["release"](keys=[slot_key(slot.user_id)], args=[slot.id])

    def retry_after_s(self, user_id: str) -> int:
        """Whole seconds (at least 1) until the user's soonest lease runs out if nobody refreshes it."""
        wait_ms = int(self._scripts["soonest_expiry"](keys=[slot_key(user_id)]))
        return max(1, math.ceil(wait_ms / 1000))


class AsyncStreamSlots:
    """The same cap for coroutines (the API's async front): the same scripts on a redis.asyncio client."""

    def __init__(self, client: redis.asyncio.Redis, *, limit: int, heartbeat_s: float) -> None:
        self.limit = limit
        self.lease_ms = lease_ms(heartbeat_s)
        self._scripts: dict[str, Any] = {name: client.register_script(body) for name, body in SCRIPTS.items()}

    async def refresh(self, slot: Slot) -> bool:
        """Extend the slot's lease; False when it had run out and the user's cap is full (end the stream)."""
        extended = await self._scripts["refresh"](
            keys=[slot_key(slot.user_id)], args=[self.limit, self.lease_ms, slot.id]
        )
        return bool(int(extended))

    async def release(self, slot: Slot) -> None:
        """Give the slot back (releasing it twice does nothing)."""
        await self._scripts["release"](keys=[slot_key(slot.user_id)], args=[slot.id])


class HeldStream(Iterator[T], Generic[T]):
    """`chunks` passed through while `slot` is held: its lease refreshed every `every_s` as chunks go out,
    the stream ended when the lease was lost, the slot released when the stream ends or is closed.

    A class, not a generator: a server closes a response it never started iterating (the client left
    first), and only a `close` of our own gives the slot back then."""

    def __init__(self, slots: StreamSlots, slot: Slot, chunks: Iterator[T], *, every_s: float) -> None:
        self._slots, self._slot, self._chunks, self._every_s = slots, slot, chunks, every_s
        self._refreshed = time.monotonic()
        self._open = True

    def __next__(self) -> T:
        if not self._open:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except BaseException:
            self.close()
            raise
        if time.monotonic() - self._refreshed >= self._every_s:
            self._refreshed = time.monotonic()
            if not self._refresh():
                self.close()  # this chunk still goes out; the next read ends the stream
        return chunk

    def _refresh(self) -> bool:
        try:
            return self._slots.refresh(self._slot)
        except redis.RedisError as exc:
            log.warning("stream slot not refreshed, ending the stream: %s", exc)
            return False

    def close(self) -> None:
        """End the stream and give its slot back (once)."""
        if not self._open:
            return
        self._open = False
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            try:
                self._slots.release(self._slot)
            except redis.RedisError as exc:  # the lease runs out by itself
                log.warning("stream slot not released (its lease will expire): %s", exc)
