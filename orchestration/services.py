"""What every use case is handed: settings, the database, Redis and the saga producer (built by bootstrap)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import redis
from celery import Celery
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from orchestration.uow import unit_of_work
from runtime.db import single_statement_engine
from runtime.settings import Settings

log = logging.getLogger(__name__)
# orchestration/notify's fan-out task (workers/notify.py), by name: orchestration imports no worker.
FAN_OUT_TASK = "creditflow.notify.fan_out"


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
            on_commit=self._fan_out,
        ) as connection:
            yield connection

    def _fan_out(self, notification_ids: list[str]) -> None:
        # Notifications written in the unit go out after its commit, on the notify queue (never in the
        # path of the job that wrote them); one the broker refuses is found by the sweep.
        try:
            self.producer.send_task(FAN_OUT_TASK, args=[notification_ids], ignore_result=True)
        except Exception as exc:
            log.warning("%d notification(s) not fanned out (%s); the sweep will", len(notification_ids), exc)

    @cached_property
    def _autocommit_engine(self) -> Engine:
        # Built once: execution_options() makes a new engine proxy on every call.
        return single_statement_engine(self.engine)

    def close(self) -> None:
        """Release pooled connections (tests and process shutdown)."""
        self.engine.dispose()
        self.redis.close()
        self.producer.close()
