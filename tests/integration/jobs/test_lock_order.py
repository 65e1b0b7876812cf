"""One lock order for every money path: creating jobs with an API key while settling its earlier ones.

Before the unit of work, `create_job` locked the API key's row and then the user's account, while
`settle` locked the account and then the key: on PostgreSQL a third of such operations deadlocked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

import ledger
from orchestration.accounts.api_keys import api_keys, create_key
from orchestration.bootstrap import bootstrap
from orchestration.jobs import claims, steps
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import zero_sum

ROUNDS = 40


@pytest.fixture
def services(services: Services) -> Iterator[Services]:
    """The module's services, but with room for every job of the test to run at once."""
    roomy = bootstrap(services.settings.model_copy(update={"JOB_MAX_RUNNING_PER_USER": 10_000}))
    yield roomy
    roomy.close()


def _job_with_key(services: Services, user: str, key_id: str) -> str:
    # `images` has no worker in this module: the job waits until the test runs its steps itself.
    command = job_cases.CreateJob(
        user_id=user,
        kind="diagnostic",
        params={"queue": "images", "steps": 1, "cost_per_step": 1000},
        api_key_id=key_id,
        daily_credit_limit=10**15,
    )
    row, _created = job_cases.create_job(services, command)
    return str(row.id)


def _ran(services: Services, job_id: str) -> str:
    claimed = claims.claim(services, job_id=job_id, task_id=f"lock-order-{job_id}", retries=0)
    assert claimed is not None
    assert steps.run(services, claimed)
    return job_id


def test_creating_and_settling_jobs_of_one_api_key_never_deadlock(services: Services, user: str) -> None:
    with services.uow() as db:
        key, _secret = create_key(db, user_id=user, name="busy", daily_credit_limit=10**15)
    # Jobs whose run is recorded: settling each locks the account and returns the key's allowance.
    ready = [_ran(services, _job_with_key(services, user, key.id)) for _ in range(2 * ROUNDS)]
    errors: list[BaseException] = []
    created: list[str] = []
    start = threading.Barrier(4)

    def guarded(work: Any) -> Any:
        def body() -> None:
            start.wait()
            try:
                work()
            except BaseException as exc:  # a DeadlockDetected would land here
                errors.append(exc)

        return body

    def create() -> None:
        for _ in range(ROUNDS):
            created.append(_job_with_key(services, user, key.id))

    def settle(chunk: list[str]) -> None:
        for job_id in chunk:
            assert steps.settle(services, job_id=job_id) == "succeeded"

    threads = [
        threading.Thread(target=guarded(create)),
        threading.Thread(target=guarded(create)),
        threading.Thread(target=guarded(lambda: settle(ready[::2]))),
        threading.Thread(target=guarded(lambda: settle(ready[1::2]))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert len(created) == 2 * ROUNDS
    with services.uow(autocommit=True) as db:
        spent_today = db.execute(select(api_keys.c.spent_today).where(api_keys.c.id == key.id)).scalar_one()
        held = ledger.balance(db, user_id=user).held
    # The key still counts exactly the holds of the open jobs (the settled ones gave back their unspent 0).
    assert spent_today == 2 * ROUNDS * 1000 + len(created) * 1000
    assert held == len(created) * 1000
    for job_id in created:
        job_cases.cancel_job(services, user_id=user, job_id=job_id)
    with services.uow(autocommit=True) as db:
        assert ledger.balance(db, user_id=user).held == 0
        assert db.execute(select(jobs.c.status).where(jobs.c.id.in_(created)).distinct()).scalars().all() == [
            "canceled"
        ]
    assert zero_sum(services) == 0


def test_a_money_unit_locks_the_users_account_first(services: Services, user: str) -> None:
    # While one money unit of a user is open, another one of the same user waits at its first
    # statement (the account lock on PostgreSQL; BEGIN IMMEDIATE on SQLite), not in mid-work.
    entered = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with services.uow(account_of=user) as db:
            entered.set()
            release.wait(10)
            db.execute(update(jobs).where(jobs.c.user_id == user).values(priority=jobs.c.priority))
            order.append("first")

    def second() -> None:
        entered.wait(10)
        with services.uow(account_of=user):
            order.append("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    entered.wait(10)
    threads[1].join(timeout=1)  # still blocked on the account lock
    assert order == []
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["first", "second"]
