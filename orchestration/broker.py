"""The Celery broker as Celery uses it (BROKER_URL, else REDIS_URL): reachable? lost its queues? backlog?

Every check goes through the producer's own kombu connection pool (`Services.producer.pool`): the
broker URL, transport and transport options (priority steps, key separator, timeouts) that sagas are
published with, and pooled connections kept between checks rather than one opened per probe. A
check never reads REDIS_URL: with a separate broker that is another server.

Redis as the broker keeps queues in lists, and a Redis restarted without persistence forgets them:
`epoch_lost` keeps a marker key on the broker's Redis (next to the queues, so it vanishes with them)
and reports its absence so the reaper re-sends every queued job's saga. Priorities are sub-lists
(`images` for priority 0, `images:5` for the default 5, ... `images:9`); `queue_lengths` lets kombu
count them with its own key rules.

RabbitMQ needs no epoch check: the queues Celery declares are durable and its messages persistent
(`task_default_delivery_mode` "persistent"), and the producer waits for the broker's publisher
confirm (orchestration/bootstrap.py), which RabbitMQ sends once a persistent message is on disk. So
a broker crash and restart keeps what was queued (tests/integration/test_broker.py kills a node).
Only losing RabbitMQ's disk loses them, and then those jobs fail after JOB_QUEUE_TIMEOUT_S with their
holds released, as they do when a send after the commit fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration.services import Services

EPOCH_KEY = "creditflow:broker-epoch"
# A probe or a scrape must answer within seconds: a load balancer's readiness check times out.
TIMEOUT_S = 2.0


@contextmanager
def _connection(services: Services, timeout: float = TIMEOUT_S) -> Iterator[Any]:
    """A connection from the producer's pool, connected (one attempt), returned to the pool after."""
    connection = services.producer.pool.acquire(block=True, timeout=timeout)
    try:
        connection.ensure_connection(max_retries=0, timeout=timeout)
        yield connection
    except Exception:
        # Drop a broken link so the next user of this pooled connection reconnects.
        connection.close()
        raise
    finally:
        connection.release()


def _is_redis(connection: Any) -> bool:
    return bool(connection.transport.driver_type == "redis")


def ping(services: Services) -> None:
    """One round trip to the broker on a pooled connection; raises when it does not answer in time."""
    with _connection(services) as connection:
        if _is_redis(connection):
            with connection.default_channel.conn_or_acquire() as client:
                client.ping()
        else:
            connection.channel().close()  # channel.open and close: two round trips on the kept link


def epoch_lost(services: Services) -> bool:
    """True when a Redis broker has forgotten its queues since the last call (the first call too)."""
    with _connection(services) as connection:
        if not _is_redis(connection):
            return False  # durable queues, persistent messages: see the module docstring
        with connection.default_channel.conn_or_acquire() as client:
            return bool(client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True))


def queue_lengths(services: Services, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue, on the broker (Redis: every priority sub-list counted)."""
    with _connection(services) as connection:
        if _is_redis(connection):
            # kombu's Redis queue_declare creates nothing and answers the sum of the sub-lists.
            channel = connection.default_channel
            return {queue: int(channel.queue_declare(queue=queue).message_count) for queue in queues}
        return _amqp_lengths(connection, queues)


def priority_lengths(services: Services, queues: Iterable[str]) -> dict[tuple[str, str], int]:
    """Messages waiting per (queue, priority) sub-list on a Redis broker, by kombu's own key rules; on
    RabbitMQ (one queue, priorities inside it) each queue's depth under priority "all"."""
    queues = list(queues)
    with _connection(services) as connection:
        if not _is_redis(connection):
            return {(queue, "all"): length for queue, length in _amqp_lengths(connection, queues).items()}
        channel = connection.default_channel
        keys = [(queue, step) for queue in queues for step in channel.priority_steps]
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for queue, step in keys:
                pipe.llen(channel._q_for_pri(queue, step))
            sizes = pipe.execute()
    return {(queue, str(step)): int(size) for (queue, step), size in zip(keys, sizes, strict=True)}


def _amqp_lengths(connection: Any, queues: Iterable[str]) -> dict[str, int]:
    # A passive declare on a queue nobody declared yet is a channel error that closes the channel;
    # the publishing channel (default_channel) must not be the one it closes.
    lengths: dict[str, int] = {}
    channel = connection.channel()
    try:
        for queue in queues:
            try:
                lengths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except connection.channel_errors:
                lengths[queue] = 0
                channel = connection.channel()
    finally:
        channel.close()
    return lengths
