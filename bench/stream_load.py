"""The load processes of bench/streams.py: one holds the open event streams, one sends ordinary requests.

Each runs in its own process (multiprocessing, spawn) so that neither the publisher nor the other load
shares its interpreter lock: a receipt time or a request latency then measures the server, not the
bench. Both take commands over a pipe and answer with plain dicts; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import resource
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tests.support import stream_client

FINAL_EVENTS = frozenset({"result", "failed", "canceled"})


def raise_open_files() -> tuple[int, int]:
    """Lift this process's soft RLIMIT_NOFILE to its hard limit; (soft, hard) after."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@dataclass
class _Stream:
    ready: bool = False
    ended: bool = False
    error: str | None = None


@dataclass
class Holder:
    """Open SSE streams on one API port, each on its own job; latencies of the events they receive."""

    port: int
    streams: list[_Stream] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    settled: int = 0  # streams that got their history or failed
    _all_settled: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, jobs: list[tuple[str, str]], concurrency: int, timeout_s: float) -> dict[str, Any]:
        """Open one stream per (job id, bearer), `concurrency` handshakes at a time; wait for every
        one's history (its `queued` event) or failure, at most `timeout_s`."""
        self.streams = [_Stream() for _ in jobs]
        self.latencies, self.settled, self._all_settled = [], 0, asyncio.Event()
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        self.tasks = [
            asyncio.create_task(self._follow(job_id, bearer, state, gate))
            for (job_id, bearer), state in zip(jobs, self.streams, strict=True)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_settled.wait(), timeout=timeout_s)
        errors = [s.error for s in self.streams if s.error]
        return {
            "ready": sum(s.ready for s in self.streams),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "seconds": time.perf_counter() - started,
        }

    async def collect(self, timeout_s: float) -> dict[str, Any]:
        """Wait (at most `timeout_s`) until every stream ended after its final event; the figures."""
        if self.tasks:
            _done, pending = await asyncio.wait(self.tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        errors = [s.error for s in self.streams if s.error]
        return {
            "latencies": self.latencies,
            "ended": sum(s.ended for s in self.streams),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
        }

    def _settle(self) -> None:
        self.settled += 1
        if self.settled == len(self.streams):
            self._all_settled.set()

    async def _follow(self, job_id: str, bearer: str, state: _Stream, gate: asyncio.Semaphore) -> None:
        response = None
        try:
            async with gate:
                response = await asyncio.wait_for(
                    stream_client.request(
                        self.port,
                        "GET",
                        f"/api/v1/jobs/{job_id}/events",
                        headers={"Authorization": f"Bearer {bearer}"},
                    ),
                    timeout=60,
                )
            if response.status != 200:
                state.error = f"HTTP {response.status}: {(await response.body())[:200]!r}"
                return
            async for frame in response.frames():
                if not state.ready:
                    state.ready = True
                    self._settle()
                if frame.event == "progress":
                    sent_ns = json.loads(frame.data).get("sent_ns")
                    if sent_ns:
                        self.latencies.append((time.time_ns() - sent_ns) / 1e9)
                elif frame.event in FINAL_EVENTS:
                    state.ended = True
                    return
            state.error = "the stream ended before its final event"
        except asyncio.CancelledError:
            state.error = state.error or "still open at the end"
            raise
        except Exception as exc:  # a refused or reset connection: counted, never fatal
            state.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            if response is not None:
                response.close()
            if not state.ready:
                self._settle()


def serve_holder(conn: Connection, port: int) -> None:
    """Process body: hold streams on `port` as told (`open`, `collect`, `stop`) over `conn`."""
    raise_open_files()
    asyncio.run(_holder_loop(conn, port))


async def _holder_loop(conn: Connection, port: int) -> None:
    loop = asyncio.get_running_loop()
    holder = Holder(port)
    while True:
        command, args = await loop.run_in_executor(None, conn.recv)
        if command == "open":
            conn.send(await holder.open(*args))
        elif command == "collect":
            conn.send(await holder.collect(*args))
        else:
            return


def probe(port: int, bearers: list[str], seconds: float, rate: float) -> dict[str, Any]:
    """GET /api/v1/credits/balance from each bearer's own keep-alive connection, `rate` requests/s in
    all, for `seconds`: latencies and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    interval = len(bearers) / rate
    deadline = time.perf_counter() + seconds

    def user(bearer: str, offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {bearer}"}
        due = time.perf_counter() + offset
        while due < deadline:
            time.sleep(max(0.0, due - time.perf_counter()))
            due = max(due + interval, time.perf_counter())  # a late request doesn't make up for itself
            started = time.perf_counter()
            try:
                conn.request("GET", "/api/v1/credits/balance", headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(f"HTTP {answer.status}")
                    continue
                latencies.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    threads = [
        threading.Thread(target=user, args=(bearer, n * interval / len(bearers)))
        for n, bearer in enumerate(bearers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return {"latencies": latencies, "errors": len(errors), "first_error": errors[0] if errors else None}


def serve_probe(conn: Connection, port: int, bearers: list[str]) -> None:
    """Process body: run `probe` as told (`probe`, `stop`) over `conn`."""
    while True:
        command, args = conn.recv()
        if command != "probe":
            return
        conn.send(probe(port, bearers, *args))
