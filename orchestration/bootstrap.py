"""The composition root: builds the connections and services every entry point uses."""

from __future__ import annotations

import os
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
    producer.conf.update(broker_url=settings.broker_url, result_backend=None)
    return producer


_by_pid: dict[int, Services] = {}


def process_services() -> Services:
    """This process's services, rebuilt after a fork so pools are never shared."""
    pid = os.getpid()
    if pid not in _by_pid:
        _by_pid.clear()  # inherited from the parent: its pools must not be used here
        _by_pid[pid] = bootstrap()
    return _by_pid[pid]
