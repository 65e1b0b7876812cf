"""The stream server's Redis pool gives back what a burst of streams took, on a real Redis: after 100
blocked reads at once (or 50 threads), a plain redis-py pool keeps them all and ours `max_idle`; a real API
that held 60 streams keeps at most its idle allowance once they ended."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import requests

from api.streams.server import IDLE_STREAM_CONNECTIONS
from orchestration.bootstrap import IDLE_REDIS_CONNECTIONS
from runtime.redis_pools import AsyncIdleCappedPool, IdleCappedPool
from tests.integration.api.conftest import bearer, make_token
from tests.support.processes import api_server, redis_server

READERS = 100


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own: its client count is this test's connections only."""
    with redis_server(tmp_path) as (url, _server):
        yield url


def _clients(url: str) -> int:
    with redis.Redis.from_url(url) as admin:
        return len(admin.client_list()) - 1  # not this one


async def _burst(pool: aioredis.BlockingConnectionPool, url: str) -> tuple[int, int]:
    """Connections open while READERS reads block at once, and once they all returned."""
    client = aioredis.Redis(connection_pool=pool)
    reads = [asyncio.ensure_future(client.xread({"quiet": "$"}, block=1500)) for _ in range(READERS)]
    await asyncio.sleep(0.7)
    during = await asyncio.to_thread(_clients, url)
    await asyncio.gather(*reads)
    after = await asyncio.to_thread(_clients, url)
    await pool.aclose()
    return during, after


def test_idle_connections_drop_back_after_a_burst_of_streams(own_redis: str) -> None:
    plain = aioredis.BlockingConnectionPool.from_url(own_redis, max_connections=500)
    during, kept = asyncio.run(_burst(plain, own_redis))
    assert during >= READERS
    assert kept >= READERS, "redis-py's own pool keeps every connection it opened"

    shrinking = AsyncIdleCappedPool.from_url(own_redis, max_connections=500, max_idle=4)
    during, kept = asyncio.run(_burst(shrinking, own_redis))
    assert during >= READERS
    assert kept <= 4
    assert shrinking.idle_connections() == 0  # closed by aclose; the count reads open ones only


def test_connections_released_within_max_idle_are_reused(own_redis: str) -> None:
    async def run() -> tuple[int, int]:
        pool = AsyncIdleCappedPool.from_url(own_redis, max_connections=50, max_idle=8)
        client = aioredis.Redis(connection_pool=pool)
        for _ in range(20):  # one at a time: the same connection every time
            await client.ping()
        one = pool.idle_connections()
        await asyncio.gather(*(client.xread({"quiet": "$"}, block=300) for _ in range(8)))
        eight = pool.idle_connections()
        await pool.aclose()
        return one, eight

    assert asyncio.run(run()) == (1, 8)


def test_the_threads_pool_drops_back_after_a_burst_of_threads(own_redis: str) -> None:
    def burst(pool: redis.BlockingConnectionPool) -> tuple[int, int]:
        client = redis.Redis(connection_pool=pool)
        with ThreadPoolExecutor(50) as threads:
            reads = [threads.submit(client.blpop, ["quiet"], 1) for _ in range(50)]
            time.sleep(0.5)
            during = _clients(own_redis)
            for read in reads:
                read.result()
        after = _clients(own_redis)
        pool.disconnect()
        return during, after

    during, kept = burst(redis.BlockingConnectionPool.from_url(own_redis, max_connections=100))
    assert during >= 50
    assert kept >= 50, "redis-py's own pool keeps every connection it opened"
    capped = IdleCappedPool.from_url(own_redis, max_connections=100, max_idle=4)
    during, kept = burst(capped)
    assert during >= 50
    assert kept <= 4
    client = redis.Redis(connection_pool=capped)
    assert [client.ping() for _ in range(5)] == [True] * 5  # placeholders make new connections
    assert capped.idle_connections() <= 4


STREAMS = 60


def test_a_real_api_gives_back_its_stream_connections_when_streams_end(
    own_redis: str, server_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**server_env, "REDIS_URL": own_redis, "SSE_MAX_STREAMS_PER_USER": str(STREAMS)}
    with api_server(env=env, log=tmp_path / "api.log") as base:
        headers = bearer(make_token())
        jobs = []
        for _ in range(STREAMS):  # queued jobs (no worker consumes this broker): their streams stay open
            created = requests.post(
                f"{base}/api/v1/diagnostics/jobs", json={"steps": 1}, headers=headers, timeout=30
            )
            assert created.status_code == 202, created.text[:300]
            jobs.append(created.json())
        baseline = _clients(own_redis)
        with ThreadPoolExecutor(STREAMS) as pool:
            opened = [threading.Event() for _ in jobs]
            ends = [
                pool.submit(_follow, f"{base}{job['events_url']}", headers, seen)
                for job, seen in zip(jobs, opened, strict=True)
            ]
            for seen in opened:
                assert seen.wait(30), "a stream never started"
            held = _clients(own_redis)
            assert held >= baseline + STREAMS, (baseline, held)
            for job in jobs:
                url = f"{base}/api/v1/jobs/{job['job_id']}/cancel"
                cancel = requests.post(url, headers=headers, timeout=30)
                assert cancel.status_code == 202, cancel.text[:300]
            assert all(end.result(timeout=60) for end in ends), "every stream ends with its canceled event"
        # The stream pool's idle allowance and the request threads' (their pool served the 60 GETs).
        bound = baseline + IDLE_STREAM_CONNECTIONS + IDLE_REDIS_CONNECTIONS
        deadline = time.monotonic() + 10
        while (after := _clients(own_redis)) > bound and time.monotonic() < deadline:
            time.sleep(0.2)
    assert after <= bound, (baseline, held, after)


def _follow(url: str, headers: dict[str, str], opened: threading.Event) -> bool:
    """Read one job stream to its end; True if it ended with `canceled`."""
    seen = b""
    with requests.get(url, headers=headers, stream=True, timeout=60) as answer:
        for chunk in answer.iter_content(chunk_size=None):
            seen += chunk
            if b"event: queued" in seen:
                opened.set()
    return b"event: canceled" in seen
