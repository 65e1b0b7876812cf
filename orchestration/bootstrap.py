"""The composition root: builds the connections and services every entry point uses, and registers
the job kinds (the registry in orchestration/jobs/kinds.py imports no kind)."""

from __future__ import annotations

import os
import threading

import redis
from celery import Celery

from orchestration.images import generation, vision
from orchestration.jobs import kinds
from orchestration.replies import agents, chat, completions, diagnostic
from orchestration.services import Services
from payments import crypto_keys
from runtime.db import make_engine
from runtime.redis_pools import IdleCappedPool
from runtime.settings import Settings, SettingsError, get_settings

# The producer only publishes (and answers orchestration/broker.py's probes): a broker that stops
# answering must fail a send or a readiness probe in seconds, not hang the request thread (Redis).
# On RabbitMQ, a persistent message is on disk only once the broker confirms it: without confirms a
# broker crash lost a saga sent just before it (tests/integration/test_broker.py); confirms cost
# 1.1 ms per send (p50 0.6 -> 1.7 ms on this machine). The Redis transport ignores the option.
PRODUCER_TRANSPORT_OPTIONS = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0, "confirm_publish": True}


# Idle Redis connections a process keeps after a burst (runtime/redis_pools.py).
IDLE_REDIS_CONNECTIONS = 16


def check_settings(settings: Settings) -> None:
    """What settings alone can't check, at start: a CRYPTO_HD_KEY that derives no address stops the
    process now, not at the first crypto intent (SettingsError naming the variable, never its value)."""
    if settings.CRYPTO_HD_KEY and (problem := crypto_keys.hd_key_problem(settings.CRYPTO_HD_KEY)):
        raise SettingsError(f"invalid setting CRYPTO_HD_KEY: {problem}")


def register_kinds() -> None:
    """Make the product's job kinds known to job creation and the workers (idempotent)."""
    kinds_of_product = (chat.CHAT, completions.COMPLETION, agents.AGENT, diagnostic.DIAGNOSTIC)
    for kind in (*kinds_of_product, vision.VISION, generation.IMAGE):
        kinds.register(kind)


def bootstrap(settings: Settings | None = None) -> Services:
    """Wire adapters from settings and register the job kinds; opens nothing until first use."""
    settings = settings or get_settings()
    check_settings(settings)
    register_kinds()
    engine = make_engine(settings.database_url, pool_size=settings.DATABASE_POOL_SIZE)
    # Every SSE reader blocks on its own connection (XREAD BLOCK): size the pool for all threads,
    # and make a request wait for a free connection rather than fail when they are all taken. The
    # read timeout must outlast a heartbeat's block (redis-py would reuse the connect timeout).
    pool = IdleCappedPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.redis_max_connections,
        max_idle=IDLE_REDIS_CONNECTIONS,  # what a burst of threads opened is closed after it
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
    options = celeryconfig.transport_options_for(
        settings.broker_url, {**celeryconfig.broker_transport_options, **PRODUCER_TRANSPORT_OPTIONS}
    )
    producer.conf.update(
        broker_url=settings.broker_url,
        result_backend=None,
        broker_transport_options=options,
        task_queues=celeryconfig.queues_for(settings.broker_url, quorum=settings.BROKER_QUORUM_QUEUES),
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
