"""The composition root: builds the connections and services every entry point uses."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import redis
from celery import Celery
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from orchestration.uow import unit_of_work
from runtime.db import make_engine, single_statement_engine
from runtime.settings import Settings, get_settings

# The producer only publishes (and answers orchestration/broker.py's probes): a broker that stops
# answering must fail a send or a readiness probe in seconds, not hang the request thread (Redis).
# On RabbitMQ, a persistent message is on disk only once the broker confirms it: without confirms a
# broker crash lost a saga sent just before it (tests/integration/test_broker.py); confirms cost
# 1.1 ms per send (p50 0.6 -> 1.7 ms on this machine). The Redis transport ignores the option.
PRODUCER_TRANSPORT_OPTIONS = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0, "confirm_publish": True}


@dataclass(frozen=True)
class Services:
    """What handlers need: settings, the database and Redis, created once per process."""

    settings: Settings
    engine: Engine
    redis: redis.Redis
    producer: Celery

    @contextmanager
    def uow(
        self,
        *,
        account_of: str | None = None,
        account_of_job: str | None = None,
        account: int | None = None,
        autocommit: bool = False,
        snapshot: bool = False,
    ) -> Iterator[Connection]:
        """A unit of work (orchestration/uow.py): a transaction, a money transaction, or autocommit."""
        with unit_of_work(
            self.engine,
            self._autocommit_engine,
            account_of=account_of,
            account_of_job=account_of_job,
            account=account,
            autocommit=autocommit,
            snapshot=snapshot,
        ) as connection:
            yield connection

    @cached_property
    def _autocommit_engine(self) -> Engine:
        # Built once: execution_options() makes a new engine proxy on every call.
        return single_statement_engine(self.engine)

    def close(self) -> None:
        """Release pooled connections (tests and process shutdown)."""
        self.engine.dispose()
        self.redis.close()
        self.producer.close()


def bootstrap(settings: Settings | None = None) -> Services:
    """Wire adapters from settings; opens nothing until first use (pools are lazy)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, pool_size=settings.DATABASE_POOL_SIZE)
    # Every SSE reader blocks on its own connection (XREAD BLOCK): size the pool for all threads,
    # and make a request wait for a free connection rather than fail when they are all taken. The
    # read timeout must outlast a heartbeat's block (redis-py would reuse the connect timeout).
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.redis_max_connections,
        timeout=10,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=5,
        socket_timeout=settings.SSE_HEARTBEAT_S + 15,
    )
    client = redis.Redis(connection_pool=pool)
    return Services(settings, engine, client, make_producer(settings))


def make_producer(settings: Settings) -> Celery:
    """A Celery client for sending sagas: celeryconfig's routes, this settings' broker, no results.

    Nothing we send is awaited through Celery (the job row is the record), and a result backend
    costs every sending thread its own backend instance and a result-channel subscription."""
    import celeryconfig

    producer = Celery("creditflow-producer")
    producer.config_from_object(celeryconfig)
    options = {**celeryconfig.broker_transport_options, **PRODUCER_TRANSPORT_OPTIONS}
    producer.conf.update(
        broker_url=settings.broker_url, result_backend=None, broker_transport_options=options
    )
    return producer


_by_pid: dict[int, Services] = {}
# A threads pool starts hundreds of tasks at once: without the lock each built its own services (pools,
# heartbeat thread) and all but the last were dropped from the registry with their pools still open.
_by_pid_lock = threading.Lock()


def process_services() -> Services:
    """This process's services, rebuilt after a fork so pools are never shared."""
    pid = os.getpid()
    found = _by_pid.get(pid)
    if found is not None:
        return found
    with _by_pid_lock:
        if pid not in _by_pid:
            _by_pid.clear()  # inherited from the parent: its pools must not be used here
            _by_pid[pid] = bootstrap()
        return _by_pid[pid]
