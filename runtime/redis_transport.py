"""kombu's Redis transport, reusing one redis-py client per channel for publishes and acks.

Stock kombu (5.7) builds a new `redis.Redis` for every publish, ack and event it sends. With
redis-py 8 that constructor fills a table of about 170 response callbacks each time: in a worker's
main process it was a fifth of the CPU (task events, acks). The client is only a front for the
channel's connection pool, so one per channel does the same work. `register()` makes `redis://`
and `rediss://` broker URLs use this transport; everything else is kombu's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis

ALIASES = ("redis", "rediss")


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A kombu Redis channel whose own commands share one client."""

    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The given client, else the channel's shared one (rebuilt when the pool was replaced)."""
        if client:
            yield client
            return
        shared = self._shared_client
        # kombu drops and rebuilds its pools after a fork or a connection error: follow them.
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with the channel above."""

    Channel = Channel


def register() -> None:
    """Make `redis://` and `rediss://` broker URLs use this transport (call before connecting)."""
    for alias in ALIASES:
        kombu.transport.TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"
