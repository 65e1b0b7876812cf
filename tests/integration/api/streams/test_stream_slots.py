"""The per-user cap on open event streams, counted on the real Redis (the HTTP side: test_stream_cap.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from orchestration.jobs.stream_slots import HeldStream, StreamSlots, lease_ms, slot_key

CAP = 3


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client of the suite's Redis."""
    made = redis.Redis.from_url(redis_url, decode_responses=True)
    yield made
    made.close()


def _user() -> str:
    return f"usr_{uuid.uuid4().hex[:12]}"


def test_a_user_gets_the_cap_and_no_more_and_others_are_apart(client: redis.Redis) -> None:
    slots = StreamSlots(client, limit=CAP, heartbeat_s=15)
    alice, bob = _user(), _user()
    held = [slots.acquire(alice) for _ in range(CAP)]
    assert all(held)
    assert slots.acquire(alice) is None
    assert 1 <= slots.retry_after_s(alice) <= lease_ms(15) / 1000
    assert slots.acquire(bob) is not None
    # The key lives no longer than the longest lease: nothing stays behind a user who stopped.
    assert 0 < client.pttl(slot_key(alice)) <= lease_ms(15)


def test_a_released_slot_is_free_again_once(client: redis.Redis) -> None:
    slots = StreamSlots(client, limit=1, heartbeat_s=15)
    alice = _user()
    first = slots.acquire(alice)
    assert first is not None
    assert slots.acquire(alice) is None
    slots.release(first)
    slots.release(first)  # twice frees nothing more
    second = slots.acquire(alice)
    assert second is not None
    assert slots.acquire(alice) is None


def test_an_expired_lease_does_not_count(client: redis.Redis) -> None:
    slots = StreamSlots(client, limit=1, heartbeat_s=15)
    alice = _user()
    stale = slots.acquire(alice)
    assert stale is not None
    # The holder died a lease ago: its lease ran out (scored in the past, as Redis' clock would have it).
    client.zadd(slot_key(alice), {stale.id: 1})
    fresh = slots.acquire(alice)
    assert fresh is not None
    assert slots.refresh(fresh) is True
    assert client.zcard(slot_key(alice)) == 1
    # A stream whose lease ran out (a slow server) while its place was taken must end...
    assert slots.refresh(stale) is False
    assert client.zcard(slot_key(alice)) == 1
    # ...but takes its place back when the user is still under the cap.
    slots.release(fresh)
    client.zadd(slot_key(alice), {stale.id: 1})
    assert slots.refresh(stale) is True
    assert slots.acquire(alice) is None


def test_held_stream_refreshes_releases_on_close_and_ends_when_its_lease_is_lost(client: redis.Redis) -> None:
    slots = StreamSlots(client, limit=2, heartbeat_s=15)
    alice = _user()
    # Closed before it started (the client left first): the slot is back all the same.
    never_read = HeldStream(slots, slots.acquire(alice), iter(["a"]), every_s=0)  # type: ignore[arg-type]
    never_read.close()
    assert client.zcard(slot_key(alice)) == 0
    # Refreshed as chunks go out; when the lease turns out to be gone, the chunk in hand is the last.
    slot = slots.acquire(alice)
    assert slot is not None
    stream = HeldStream(slots, slot, iter(["1", "2", "3", "4"]), every_s=0)
    assert next(stream) == "1"
    before = client.zscore(slot_key(alice), slot.id)
    assert next(stream) == "2"
    assert client.zscore(slot_key(alice), slot.id) >= before  # type: ignore[operator]
    # Its lease runs out and the user's other stream and a new one fill the cap: this one must end.
    client.zadd(slot_key(alice), {slot.id: 1})
    other = slots.acquire(alice)
    assert other is not None
    assert slots.acquire(alice) is not None
    assert list(stream) == ["3"]
    assert client.zcard(slot_key(alice)) == 2
    client.delete(slot_key(alice))
    # Ending normally releases too.
    done = slots.acquire(alice)
    assert done is not None
    assert list(HeldStream(slots, done, iter(["x"]), every_s=60)) == ["x"]
    assert client.zcard(slot_key(alice)) == 0
