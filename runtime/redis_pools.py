"""Redis connection pools that give back what a burst took: at most `max_idle` idle connections kept.

redis-py keeps every connection it ever opened: a process that once held 2,000 streams (or ran 200
request threads at once) kept them all, idle, after the burst, of Redis' 10,000 `maxclients` for every
process together. Like SQLAlchemy's QueuePool (`pool_size` kept, overflow closed on return), these
pools close a connection given back while `max_idle` others already wait. A connection handed back
for a moment between two reads (an open stream) is taken again before that matters.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection


class IdleCappedPool(redis.BlockingConnectionPool):
    """The threads' blocking pool, keeping at most `max_idle` idle connections."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.max_idle = max_idle

    def idle_connections(self) -> int:
        """Connections waiting in the pool (the queue's other entries are placeholders for new ones)."""
        return int(self.pool.qsize() - (self.max_connections - len(self._connections)))

    def owns_connection(self, connection: Any) -> int:
        # redis-py's hook for "do not take this one back": release() then closes it, drops it and
        # leaves a placeholder, from which get_connection() makes a new one when one is needed.
        return bool(super().owns_connection(connection) and self.idle_connections() < self.max_idle)


class AsyncIdleCappedPool(aioredis.BlockingConnectionPool):
    """The event loop's blocking pool (the stream server's), keeping at most `max_idle` idle connections."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_idle = max_idle

    async def release(self, connection: AbstractConnection) -> None:
        """Give `connection` back; close it instead when enough idle ones are kept."""
        await super().release(connection)
        async with self._lock:
            # Another task may have taken it in between: then it is in use, not idle.
            surplus = len(self._available_connections) > self.max_idle
            if not surplus or connection not in self._available_connections:
                return
            self._available_connections.remove(connection)
        await connection.disconnect()

    def idle_connections(self) -> int:
        """Connections open and waiting in the pool (what `max_idle` bounds)."""
        return sum(1 for conn in self._available_connections if conn.is_connected)
