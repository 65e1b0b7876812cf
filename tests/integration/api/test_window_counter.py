"""Batched window counting on real Redis: small limits exact, large ones within their overshoot bound."""

from __future__ import annotations

import uuid

import redis
from limits import parse

from api.window_counter import MAX_BATCH, WindowCounter


def _counter(redis_url: str) -> WindowCounter:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return WindowCounter(client, f"test-rl-{uuid.uuid4().hex}")


def test_a_small_limit_is_counted_hit_by_hit_across_processes(redis_url: str) -> None:
    first, second = _counter(redis_url), _counter(redis_url)
    second._prefix = first._prefix  # two API processes sharing one Redis counter
    item, now = parse("3/minute"), 999_980.0  # 20 s into a clock-aligned minute
    answers = [counter.hit(item, "user", "sub:a", now) for counter in (first, second, first, second)]
    assert answers[:3] == [None, None, None]
    assert answers[3] == 40.0  # refused until the window ends
    assert first.hit(item, "user", "sub:b", now) is None  # another caller's bucket
    assert first.hit(item, "user", "sub:a", now + 40.0) is None  # the next window starts afresh


def test_a_large_limit_overshoots_by_less_than_a_batch_per_process(redis_url: str) -> None:
    item, now = parse("400/minute"), 2_000_040.0
    processes = [_counter(redis_url) for _ in range(3)]
    for counter in processes[1:]:
        counter._prefix = processes[0]._prefix
    admitted = 0
    for turn in range(1000):
        admitted += processes[turn % 3].hit(item, "user", "sub:busy", now) is None
    batch = min(MAX_BATCH, 400 // 100)
    assert 400 <= admitted < 400 + 3 * batch
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    shared = sum(int(client.get(key) or 0) for key in client.scan_iter(f"{processes[0]._prefix}:*"))
    # Redis holds what was sent: at most a batch minus one per process still unsent, and at most one
    # refused hit per process (the one whose flush found the window full).
    assert admitted - 3 * (batch - 1) <= shared <= admitted + 3
