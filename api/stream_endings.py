"""Whether the jobs behind quiet streams ended: asked by every stream at its heartbeat, answered together.

A job stream that heard nothing for a heartbeat checks the job's row, in case the job ended without
its final event reaching Redis. Streams opened together hit their heartbeat together: a thousand
queries at once took the API's database pool from ordinary requests (bench/streams.py). So the asks
of a short window are collected and answered by one query per window, in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from api.event_frames import final_event
from orchestration.bootstrap import Services
from orchestration.tables import jobs

WINDOW_S = 0.05
CHUNK = 500  # ids per query


class JobEndings:
    """`final_of(user_id, job_id)`: the job's final event if it ended, else None (one query per window)."""

    def __init__(self, services: Services, *, window_s: float = WINDOW_S) -> None:
        self.services = services
        self.window_s = window_s
        self._asks: dict[str, list[tuple[str, asyncio.Future[dict[str, Any] | None]]]] = {}
        self._answering: asyncio.Task[None] | None = None

    async def final_of(self, user_id: str, job_id: str) -> dict[str, Any] | None:
        """The final event of the user's job if it ended (None while it runs, or if it is not theirs)."""
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._asks.setdefault(job_id, []).append((user_id, future))
        if self._answering is None:
            self._answering = asyncio.ensure_future(self._answer())
        return await future

    async def _answer(self) -> None:
        await asyncio.sleep(self.window_s)
        asks, self._asks, self._answering = self._asks, {}, None
        try:
            rows = await asyncio.to_thread(self._rows, list(asks))
        except Exception as exc:  # every stream of the window sees the failure, as its own query would
            failure = exc
            _settle(asks, lambda _user, _job: failure)
            return
        _settle(asks, lambda user, job: _final(rows.get(job), user))

    def _rows(self, job_ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self.services.uow(autocommit=True) as db:
            for start in range(0, len(job_ids), CHUNK):
                query = select(jobs).where(jobs.c.id.in_(job_ids[start : start + CHUNK]))
                found.update((row.id, row) for row in db.execute(query))
        return found


def _final(row: Any, user_id: str) -> dict[str, Any] | None:
    return final_event(row) if row is not None and row.user_id == user_id else None


def _settle(
    asks: dict[str, list[tuple[str, asyncio.Future[dict[str, Any] | None]]]],
    outcome: Callable[[str, str], Any],
) -> None:
    for job_id, waiting in asks.items():
        for user_id, future in waiting:
            if future.done():
                continue  # its stream ended meanwhile (the client left)
            value = outcome(user_id, job_id)
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)
