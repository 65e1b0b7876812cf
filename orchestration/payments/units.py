"""The database scopes of the payment use cases, all through the unit of work (orchestration/uow.py):
a money unit locks the user's account first, then the order, event or transfer rows it touches."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection

from orchestration.services import Services

log = logging.getLogger(__name__)


@contextmanager
def money_unit(services: Services, user_id: str) -> Iterator[Connection]:
    """One transaction that moves a user's money: its first statement locks the user's ledger account,
    so every payment path takes the account before the order, event or transfer rows it then locks."""
    with services.uow(account_of=user_id) as connection:
        yield connection


@contextmanager
def plain_unit(services: Services) -> Iterator[Connection]:
    """A transaction that moves no money (reads, order creation, event intake)."""
    with services.uow() as connection:
        yield connection


def send_task(services: Services, name: str, *args: object) -> bool:
    """Enqueue a task after the commit; False if the broker refused (the reconciler sends it again)."""
    try:
        services.producer.send_task(name, args=list(args), ignore_result=True)
    except Exception:
        log.exception("could not enqueue %s%r; the reconciler will retry", name, args)
        return False
    return True


def aware(moment: datetime) -> datetime:
    """A stored time as aware UTC (SQLite hands back naive UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
