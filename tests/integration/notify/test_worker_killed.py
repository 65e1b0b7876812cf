"""A notify worker SIGKILLed in the middle of a webhook delivery: nothing was recorded but the claimed
row, and once its lease runs out the sweep sends the delivery again from that row, with the same
webhook-id, through a fresh worker. No message, no Redis state is needed to remember it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from orchestration.accounts.users import get_or_create_user
from orchestration.bootstrap import bootstrap
from orchestration.notify import endpoints, outbox, sweep
from orchestration.notify.tables import deliveries
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.processes import ROOT, child_env, descendants, worker
from tests.support.webhook_receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.slow]
TIMEOUT_S = "3"  # the guard's deadline for one exchange; the lease is this and a margin


@pytest.fixture(scope="module")
def env(redis_url: str, module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        VAR_DIR=str(tmp_path_factory.mktemp("var")),
        CREDITFLOW_ENV="test",
        WEBHOOK_SECRET_KEY=Fernet.generate_key().decode(),
        WEBHOOK_TIMEOUT_S=TIMEOUT_S,
        OUTBOUND_ALLOW_LOOPBACK="true",
    )


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> Iterator[Services]:
    names = ("REDIS_URL", "DATABASE_URL", "WEBHOOK_SECRET_KEY", "WEBHOOK_TIMEOUT_S")
    built = bootstrap(load_settings(**{k: env[k] for k in names}, OUTBOUND_ALLOW_LOOPBACK=True))
    yield built
    built.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as served:
        yield served


def _row(services: Services, endpoint_id: str) -> object:
    with services.uow(autocommit=True) as db:
        return db.execute(select(deliveries).where(deliveries.c.endpoint_id == endpoint_id)).one()


def test_a_delivery_cut_by_sigkill_goes_out_again_from_its_row(
    env: dict[str, str], services: Services, receiver: Receiver, tmp_path: Path
) -> None:
    with services.uow() as db:
        user_id = get_or_create_user(db, external_id=f"kill-{uuid.uuid4().hex}").id
    endpoint, secret = endpoints.create(
        services, user_id=user_id, url=f"{receiver.base}/hang", events=["job.succeeded"]
    )
    receiver.holds["/hang"] = 30.0  # the first attempt hangs until its worker is killed
    with worker("notify", env=env, cwd=ROOT, log=tmp_path / "notify.log", name="notify") as doomed:
        with services.uow() as db:  # its fan-out is sent when this commits
            outbox.write(db, user_id=user_id, event_type="job.succeeded", data={"job_id": "j1"})
        first = receiver.wait("/hang", 1)[0]
        for process in [*descendants(doomed.pid), doomed]:
            os.kill(process.pid, signal.SIGKILL)
    claimed = _row(services, endpoint.id)
    assert (claimed.status, claimed.attempts) == ("pending", 1)  # type: ignore[attr-defined]
    with worker("notify", env=env, cwd=ROOT, log=tmp_path / "notify2.log", name="notify2"):
        deadline = time.monotonic() + 60
        while len(receiver.on("/hang")) < 2 and time.monotonic() < deadline:
            sweep.sweep(
                services
            )  # what beat does every NOTIFY_SWEEP_INTERVAL_S; nothing is due before the lease ends
            time.sleep(1)
        second = receiver.wait("/hang", 2, timeout=5)[1]
    assert second.at - first.at >= float(TIMEOUT_S)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert Webhook(secret).verify(second.body, second.headers)["data"] == {"job_id": "j1"}
    done = _row(services, endpoint.id)
    assert (done.status, done.attempts, done.response_status) == ("succeeded", 2, 200)  # type: ignore[attr-defined]
