"""Notifications end to end: a real API, real Celery workers (critical on prefork, the notify queue on
threads), PostgreSQL/SQLite and Redis, a webhook receiver and an SMTP server (aiosmtpd) on 127.0.0.1.

One user, five endpoints scripted to succeed, fail then succeed, answer 410, ask to slow down and
redirect; jobs and a payment move the balance across thresholds; everything that arrives is checked with
the standardwebhooks library."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orchestration.bootstrap import bootstrap
from orchestration.jobs import progress
from orchestration.notify.tables import endpoints
from orchestration.payments.fulfilment import apply_fact
from orchestration.payments.orders import NewOrder, get_order, insert_order
from orchestration.services import Services
from payments.facts import PaymentFact
from runtime.packs import DEFAULT_PACKS
from runtime.settings import load_settings
from tests.support.processes import ROOT, api_server, child_env, free_port, worker
from tests.support.webhook_receiver import Received, Receiver, webhook_receiver

pytestmark = [pytest.mark.slow]
JWT_SECRET = "notify-test-secret-notify-test-secret-0123"
FERNET_KEY = Fernet.generate_key().decode()
SCHEDULE = "0,0.5,0.5,0.5"  # the spec's schedule scaled down: four attempts, half a second apart


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as served:
        yield served


@pytest.fixture(scope="module")
def env(
    redis_url: str,
    module_database_url: str,
    mailbox: tuple[Mailbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    return child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        AUTH_JWT_SECRET=JWT_SECRET,
        VAR_DIR=str(tmp_path_factory.mktemp("var")),
        CREDITFLOW_ENV="test",
        WEBHOOK_SECRET_KEY=FERNET_KEY,
        WEBHOOK_RETRY_SCHEDULE_S=SCHEDULE,
        WEBHOOK_RETRY_JITTER="0",
        WEBHOOK_TIMEOUT_S="3",
        OUTBOUND_ALLOW_LOOPBACK="true",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(mailbox[1]),
        SMTP_SECURITY="none",
        RATE_LIMIT_JOBS="1000/minute",
        API_WORKERS="1",
    )


@pytest.fixture(scope="module")
def services(env: dict[str, str]) -> Iterator[Services]:
    names = ("REDIS_URL", "DATABASE_URL", "AUTH_JWT_SECRET", "WEBHOOK_SECRET_KEY", "WEBHOOK_RETRY_SCHEDULE_S")
    built = bootstrap(load_settings(**{k: env[k] for k in names}, OUTBOUND_ALLOW_LOOPBACK=True))
    yield built
    built.close()


@pytest.fixture(scope="module")
def api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("logs")
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "critical.log", name="crit"),
        worker("interactive,notify", env=env, cwd=ROOT, log=logs / "io.log", name="io", concurrency=20),
        api_server(env=env, log=logs / "api.log") as base,
    ):
        yield base


def _token(sub: str, email: str) -> str:
    now = int(time.time())
    claims = {"iss": "creditflow", "sub": sub, "email": email, "iat": now, "exp": now + 900}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


class Client:
    """A signed-in user of the API."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.base}{path}", headers=self.headers, timeout=30, **kwargs)

    def job(self, cost: str) -> str:
        answer = self.call("POST", "/api/v1/diagnostics/jobs", json={"steps": 1, "cost_per_step": cost})
        assert answer.status_code == 202, answer.text
        job_id = str(answer.json()["job_id"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.call("GET", f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded":
                return job_id
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not succeed")


def _verify(secret: str, item: Received) -> dict[str, Any]:
    body: dict[str, Any] = Webhook(secret).verify(item.body, item.headers)
    assert set(body) == {"type", "timestamp", "data"}
    assert len(item.body) < 20 * 1024
    return body


def _types(secret: str, items: list[Received]) -> list[str]:
    return [_verify(secret, item)["type"] for item in items]


def _credit(services: Services, user_id: str) -> str:
    """A paid Stripe order of the 1000-credit pack, applied by the fulfilment every rail uses."""
    now = datetime.now(UTC)
    pack = DEFAULT_PACKS[0]
    with services.uow(account_of=user_id) as db:
        order = insert_order(
            db, NewOrder(user_id, pack, "stripe", 2400, "USD", now + timedelta(hours=1)), now=now
        )
        fact = PaymentFact(
            kind="paid", order_id=order.id, amount=2400, currency="USD", payment_ref=f"pi_{uuid.uuid4().hex}"
        )
        assert apply_fact(db, order, fact, now).credits > 0
    return str(order.id)


def _refund(services: Services, user_id: str, order_id: str, cents: int) -> None:
    """A partial refund of that order, as the provider's refund event is applied."""
    now = datetime.now(UTC)
    with services.uow(account_of=user_id) as db:
        order = get_order(db, order_id, lock=True)
        fact = PaymentFact(
            kind="refunded", order_id=order_id, amount=cents, currency="USD", key=uuid.uuid4().hex
        )
        assert apply_fact(db, order, fact, now).credits < 0


def _wait(what: str, predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not seen in {timeout}s")


def test_webhooks_thresholds_and_email_end_to_end(
    api: str, services: Services, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.test"
    user = Client(api, _token(f"notify-{uuid.uuid4().hex}", email))
    me = user.call("GET", "/api/v1/me").json()
    user_id = me["id"]

    # Bad input is refused, nothing registered; API keys may not manage webhooks.
    for bad in (
        {"url": f"{receiver.base}/a", "events": ["job.nope"]},
        {"url": "ftp://127.0.0.1/a", "events": ["job.succeeded"]},
        {"url": "http://10.0.0.1/a", "events": ["job.succeeded"]},
        {"url": f"{receiver.base}/a", "events": []},
    ):
        refused = user.call("POST", "/api/v1/webhooks", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    key = user.call("POST", "/api/v1/api-keys", json={"name": "ide"}).json()["key"]
    as_key = Client(api, key).call(
        "POST", "/api/v1/webhooks", json={"url": f"{receiver.base}/a", "events": ["job.succeeded"]}
    )
    assert as_key.status_code == 403
    assert user.call("GET", "/api/v1/webhooks").json()["items"] == []

    receiver.scripts.update(
        {
            "/flaky": [(500, {}), (500, {}), (200, {})],
            "/gone": [(410, {})],
            "/slow": [(429, {"Retry-After": "2"}), (200, {})],
            "/moved": [(302, {"Location": "/a"})],
        }
    )
    secrets: dict[str, str] = {}
    ids: dict[str, str] = {}
    for path, events in (
        (
            "/a",
            [
                "job.succeeded",
                "job.failed",
                "balance.low",
                "balance.recovered",
                "payment.succeeded",
                "payment.refunded",
            ],
        ),
        ("/flaky", ["job.succeeded"]),
        ("/gone", ["job.succeeded"]),
        ("/slow", ["job.succeeded"]),
        ("/moved", ["job.succeeded"]),
    ):
        made = user.call("POST", "/api/v1/webhooks", json={"url": f"{receiver.base}{path}", "events": events})
        assert made.status_code == 201, made.text
        assert made.json()["secret"].startswith("whsec_")
        secrets[path], ids[path] = made.json()["secret"], made.json()["id"]
    listed = user.call("GET", "/api/v1/webhooks").json()["items"]
    assert len(listed) == 5
    assert all("secret" not in item for item in listed)

    # Two thresholds; the balance (1000) is over both. A 10-credit hold crosses 995 once.
    prefs = user.call("PATCH", "/api/v1/me/preferences", json={"low_balance_threshold": ["995", "500"]})
    assert prefs.status_code == 200
    assert prefs.json()["low_balance_threshold"] == ["500", "995"]
    first_job = user.job("10")
    a = receiver.wait("/a", 2)
    bodies = [_verify(secrets["/a"], item) for item in a]
    assert sorted(b["type"] for b in bodies) == ["balance.low", "job.succeeded"]
    low = next(b for b in bodies if b["type"] == "balance.low")
    assert low["data"] == {"threshold": "995", "available": "990"}
    assert next(b for b in bodies if b["type"] == "job.succeeded")["data"]["job_id"] == first_job

    # 500, 500, 200: three attempts of one delivery, one webhook-id, each signed afresh.
    flaky = receiver.wait("/flaky", 3)
    assert len({item.headers["webhook-id"] for item in flaky}) == 1
    assert _types(secrets["/flaky"], flaky) == ["job.succeeded"] * 3
    # 429 with Retry-After: 2 waits two seconds, not the schedule's half second.
    slow = receiver.wait("/slow", 2)
    assert slow[1].at - slow[0].at >= 1.9
    # A redirect is a failure, never followed: four attempts, then the delivery is given up.
    moved = receiver.wait("/moved", 4)
    assert len({item.headers["webhook-id"] for item in moved}) == 1
    # 410 disables the endpoint and tells its owner (on /me/events and by email).
    receiver.wait("/gone", 1)
    _wait("410 disables", lambda: _endpoint(user, ids["/gone"])["status"] == "disabled")

    log = user.call("GET", "/api/v1/webhooks/deliveries", params={"endpoint_id": ids["/flaky"]}).json()[
        "items"
    ]
    assert [(d["status"], d["attempts"], d["response_status"]) for d in log] == [("succeeded", 3, 200)]
    moved_log = _wait(
        "the redirect given up",
        lambda: [d for d in _deliveries(user, ids["/moved"]) if d["status"] == "failed"],
    )
    assert moved_log[0]["attempts"] == 4
    assert "redirect" in moved_log[0]["error"]
    assert receiver.on("/a") == a  # the redirect's Location was not visited

    # A second job: still under 995, nothing more to tell of it; the disabled endpoint gets nothing.
    user.job("10")
    a = receiver.wait("/a", 3)
    assert _types(secrets["/a"], a).count("balance.low") == 1
    assert len(receiver.on("/gone")) == 1

    # A top-up lifts the balance over 995: recovered (and the payment); the next crossing tells again.
    order_id = _credit(services, user_id)
    a = receiver.wait("/a", 5)
    assert sorted(_types(secrets["/a"], a[3:])) == ["balance.recovered", "payment.succeeded"]
    user.job("990")  # 1980 -> 990: under 995 again, over 500
    a = receiver.wait("/a", 7)
    tail = [_verify(secrets["/a"], item) for item in a[5:]]
    assert sorted(b["type"] for b in tail) == ["balance.low", "job.succeeded"]
    assert _types(secrets["/a"], a).count("balance.low") == 2

    # Rotation: a new secret, shown once; the old one still verifies for a day.
    rotated = user.call("POST", f"/api/v1/webhooks/{ids['/a']}/rotate")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secrets["/a"]
    assert user.call("POST", f"/api/v1/webhooks/{ids['/a']}/test").status_code == 202
    test_send = receiver.wait("/a", 8)[7]
    assert _verify(new_secret, test_send)["type"] == "webhook.test"
    assert _verify(secrets["/a"], test_send)["type"] == "webhook.test"
    with pytest.raises(WebhookVerificationError):
        Webhook(secrets["/flaky"]).verify(test_send.body, test_send.headers)

    # Replay: the first delivery again, same webhook-id, a new row in the log.
    first = _deliveries(user, ids["/a"])[-1]
    replayed = user.call("POST", f"/api/v1/webhooks/deliveries/{first['id']}/replay")
    assert replayed.status_code == 202
    assert replayed.json()["replay_of"] == first["id"]
    again = receiver.wait("/a", 9)[8]
    assert again.headers["webhook-id"] == first["webhook_id"]
    # The first job's two deliveries (balance.low, job.succeeded) are made together: either can be
    # the log's oldest and either can arrive first.
    assert first["webhook_id"] in {item.headers["webhook-id"] for item in a[:2]}
    assert user.call("POST", "/api/v1/webhooks/deliveries/whd_nope/replay").status_code == 404

    # /me/events carried each crossing; email told the low balance and the disabled endpoint.
    stream = [
        event
        for _id, event in progress.read_events(
            services.redis, progress.user_stream(user_id), "0-0", block_ms=None
        )
    ]
    kinds = [event["type"] for event in stream]
    assert kinds.count("low_balance") == 2
    assert kinds.count("balance_recovered") == 1
    assert "webhook_disabled" in kinds
    box, _port = mailbox
    mails = _wait(
        "emails", lambda: [m for rcpt, m in box.messages if email in rcpt] if len(box.messages) >= 4 else None
    )
    subjects = [line for m in mails for line in m.splitlines() if line.startswith("Subject:")]
    assert subjects.count("Subject: Your creditflow balance is low") == 2
    assert "Subject: Your creditflow balance is back up" in subjects
    assert "Subject: A creditflow webhook endpoint was disabled" in subjects

    # Failing every delivery for five days disables an endpoint too: /moved has failed since "long ago".
    with services.uow() as db:
        db.execute(
            update(endpoints)
            .where(endpoints.c.id == ids["/moved"])
            .values(failing_since=datetime.now(UTC) - timedelta(days=6))
        )
    user.job("1")
    _wait("five days of failures disable", lambda: _endpoint(user, ids["/moved"])["status"] == "disabled")

    # A failed job is told too (from the compensation's transaction), charged nothing.
    failing = user.call(
        "POST", "/api/v1/diagnostics/jobs", json={"steps": 1, "cost_per_step": "1", "fail_at_step": 1}
    ).json()["job_id"]
    told = _wait(
        "job.failed",
        # The deliveries since the rotation, signed with the new secret too.
        lambda: [
            b for b in (_verify(new_secret, i) for i in receiver.on("/a")[9:]) if b["type"] == "job.failed"
        ],
    )
    assert told[0]["data"] == {"job_id": failing, "kind": "diagnostic", "status": "failed", "charged": "0"}

    # A refund (a tenth of the pack back to the card) is told as payment.refunded; 889 crosses nothing new.
    _refund(services, user_id, order_id, 240)
    refunded = _wait(
        "payment.refunded",
        lambda: [
            b
            for b in (_verify(new_secret, i) for i in receiver.on("/a")[9:])
            if b["type"] == "payment.refunded"
        ],
    )
    assert refunded[0]["data"] == {
        "order_id": order_id,
        "rail": "stripe",
        "status": "refunded",
        "credits": "100",
    }
    assert _types(new_secret, receiver.on("/a")[9:]).count("balance.low") == 0

    # Deleting an endpoint: gone from the list, someone else's is a 404.
    other = Client(api, _token(f"notify-{uuid.uuid4().hex}", "o@example.test"))
    assert other.call("DELETE", f"/api/v1/webhooks/{ids['/flaky']}").status_code == 404
    assert user.call("DELETE", f"/api/v1/webhooks/{ids['/flaky']}").status_code == 204
    assert ids["/flaky"] not in {item["id"] for item in user.call("GET", "/api/v1/webhooks").json()["items"]}


def _endpoint(user: Client, endpoint_id: str) -> dict[str, Any]:
    items = user.call("GET", "/api/v1/webhooks").json()["items"]
    return next(item for item in items if item["id"] == endpoint_id)


def _deliveries(user: Client, endpoint_id: str) -> list[dict[str, Any]]:
    answer = user.call("GET", "/api/v1/webhooks/deliveries", params={"endpoint_id": endpoint_id})
    return list(answer.json()["items"])
