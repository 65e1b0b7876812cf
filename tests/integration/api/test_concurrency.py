"""Ten first requests of a new user at once: one user, one ledger account, one welcome grant."""

from __future__ import annotations

import threading
import uuid

from flask import Flask
from sqlalchemy import func, select

from ledger.tables import accounts, entries
from orchestration.accounts.users import users
from orchestration.services import Services
from tests.integration.api.conftest import bearer, make_token

RACERS = 10


def test_racing_first_requests_make_one_user_and_one_grant(app: Flask, services: Services) -> None:
    sub = f"racer-{uuid.uuid4().hex[:10]}"
    token = make_token(sub=sub)
    barrier = threading.Barrier(RACERS)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def first_request() -> None:
        client = app.test_client()
        barrier.wait()
        answer = client.get("/api/v1/me", headers=bearer(token))
        with lock:
            answers.append((answer.status_code, (answer.json or {}).get("id", "")))

    threads = [threading.Thread(target=first_request) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in answers] == [200] * RACERS, answers
    assert len({user_id for _, user_id in answers}) == 1
    with services.uow() as session:
        assert session.execute(select(func.count()).where(users.c.external_id == sub)).scalar() == 1
        account = session.execute(select(accounts).where(accounts.c.user_id == answers[0][1])).one()
        grants = session.execute(
            select(func.count()).where(entries.c.account_id == account.id, entries.c.kind == "grant")
        ).scalar()
    assert grants == 1
    assert account.posted == 1000 * 1_000_000
