"""What ends an open stream from the database: its job ended, or its API key was revoked.

Each open stream asks at its heartbeat. Streams opened together hit their heartbeat together: a
thousand queries at once took the API's database pool from ordinary requests (bench/streams.py). So
the asks of a short window are collected and answered by one query per window, in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, select

from api.streams.frames import final_event
from orchestration.accounts.api_keys import api_keys
from orchestration.services import Services
from orchestration.tables import jobs

WINDOW_S = 0.05
CHUNK = 500  # ids per query


class WindowedRows:
    """`row(id)`: a table's row by id (None if there is none), the asks of a window in one query."""

    def __init__(self, services: Services, table: Table, *, window_s: float = WINDOW_S) -> None:
        self.services, self.table, self.window_s = services, table, window_s
        self._asks: dict[str, list[asyncio.Future[Any]]] = {}
        self._answering: asyncio.Task[None] | None = None

    async def row(self, row_id: str) -> Any:
        """The row with this id, or None."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asks.setdefault(row_id, []).append(future)
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
            _settle(asks, lambda _id: failure)
            return
        _settle(asks, rows.get)

    def _rows(self, ids: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self.services.uow(autocommit=True) as db:
            for start in range(0, len(ids), CHUNK):
                query = select(self.table).where(self.table.c.id.in_(ids[start : start + CHUNK]))
                found.update((row.id, row) for row in db.execute(query))
        return found


class JobEndings:
    """`final_of(user_id, job_id)`: the job's final event if it ended, else None (one query per window)."""

    def __init__(self, services: Services, *, window_s: float = WINDOW_S) -> None:
        self._rows = WindowedRows(services, jobs, window_s=window_s)

    async def final_of(self, user_id: str, job_id: str) -> dict[str, Any] | None:
        """The final event of the user's job if it ended (None while it runs, or if it is not theirs)."""
        row = await self._rows.row(job_id)
        return final_event(row) if row is not None and row.user_id == user_id else None


class LiveKeys:
    """`live(key_id)`: whether an API key still authenticates (one query per window for every stream)."""

    def __init__(self, services: Services, *, window_s: float = WINDOW_S) -> None:
        self._rows = WindowedRows(services, api_keys, window_s=window_s)

    async def live(self, key_id: str) -> bool:
        """False once the key was revoked (or deleted)."""
        row = await self._rows.row(key_id)
        return row is not None and row.revoked_at is None


def _settle(asks: dict[str, list[asyncio.Future[Any]]], outcome: Callable[[str], Any]) -> None:
    for row_id, waiting in asks.items():
        value = outcome(row_id)
        for future in waiting:
            if future.done():
                continue  # its stream ended meanwhile (the client left)
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)
