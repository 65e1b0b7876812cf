"""Our kombu Redis transport on a real Redis: one client per channel, messages still flow."""

from __future__ import annotations

import os
import uuid

from kombu import Connection

import celeryconfig  # noqa: F401  (registers the transport, as every Celery process does)
from runtime.redis_transport import Channel, Transport


def test_broker_urls_use_our_transport(redis_url: str) -> None:
    with Connection(redis_url) as connection:
        assert isinstance(connection.transport, Transport)
        assert isinstance(connection.default_channel, Channel)


def test_a_channel_reuses_its_client_and_follows_a_new_pool(redis_url: str) -> None:
    with Connection(redis_url) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
            assert first is again
            assert first.connection_pool is channel.pool
        channel._after_fork()  # what kombu does in a forked child: its pools are dropped and rebuilt
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()


def test_messages_published_through_the_shared_client_arrive_in_order(redis_url: str) -> None:
    name = f"transport-test-{uuid.uuid4().hex}"
    with Connection(redis_url) as connection:
        queue = connection.SimpleQueue(name)
        try:
            for index in range(20):
                queue.put({"n": index, "pid": os.getpid()})
            received = []
            for _ in range(20):
                message = queue.get(timeout=5)
                received.append(message.payload["n"])
                message.ack()
            assert received == list(range(20))
        finally:
            queue.queue.delete()
            queue.close()
