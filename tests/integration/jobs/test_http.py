"""Jobs over HTTP on a real gunicorn API: 202/402, polling, SSE with resume, cancel, isolation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from orchestration.jobs import dead_letters
from orchestration.services import Services
from tests.integration.jobs.conftest import JWT_SECRET, wait_final
from tests.support.processes import (
    api_server,
)
from tests.support.sse import Frame, frames, open_stream

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("workers")]


@pytest.fixture(scope="module")
def api(job_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`creditflow api` (gunicorn, threaded workers) on a free port."""
    env = {**job_env, "RATE_LIMIT_JOBS": "1000/minute", "API_WORKERS": "1"}
    with api_server(env=env, log=tmp_path_factory.mktemp("api") / "api.log") as base:
        yield base


def token(sub: str | None = None, *, admin: bool = False) -> str:
    """A creditflow JWT for a (new) user."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "creditflow",
        "sub": sub or f"u-{uuid.uuid4().hex}",
        "iat": now,
        "exp": now + 600,
    }
    if admin:
        claims["roles"] = ["admin"]
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def post_job(api: str, bearer: str, key: str | None = None, **body: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(f"{api}/api/v1/diagnostics/jobs", json=body, headers=headers, timeout=30)


def get(api: str, bearer: str, path: str) -> requests.Response:
    return requests.get(f"{api}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def read_all(
    api: str, bearer: str, path: str, last: str | None = None, limit: int | None = None
) -> list[Frame]:
    """Events of an SSE endpoint until it ends (or `limit` events), without comments."""
    got: list[Frame] = []
    with open_stream(f"{api}{path}", bearer, last) as response:
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for frame in frames(response):
            if frame.comment is None and frame.event:
                got.append(frame)
                if limit and len(got) >= limit:
                    break
    return got


def test_job_lifecycle_over_http(api: str) -> None:
    bearer = token()
    answer = post_job(api, bearer, steps=3, cost_per_step="0.5")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued"
    assert body["cost"] == {"quoted": "1.5", "held": "1.5"}
    events = read_all(api, bearer, body["events_url"])
    assert next(e.event for e in events) == "queued"
    assert events[-1].event == "result"
    assert events[-1].data["credits_spent"] == "1.5"
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(set(ids)) == len(ids)
    job = get(api, bearer, body["status_url"]).json()
    assert job["status"] == "succeeded"
    assert job["cost"] == {"quoted": "1.5", "held": "1.5", "charged": "1.5", "released": "0"}
    assert get(api, bearer, "/api/v1/credits/balance").json()["available"] == "998.5"
    listed = get(api, bearer, "/api/v1/jobs?status=succeeded").json()
    assert [item["id"] for item in listed["items"]] == [body["job_id"]]


def test_sse_resume_misses_nothing_and_late_joiner_gets_history(api: str) -> None:
    bearer = token()
    body = post_job(api, bearer, steps=30, sleep_ms=30, tokens=True).json()
    first = read_all(api, bearer, body["events_url"], limit=5)
    rest = read_all(api, bearer, body["events_url"], last=first[-1].id)
    assert rest[-1].event == "result"
    late = read_all(api, bearer, body["events_url"])
    assert [e.id for e in first + rest] == [e.id for e in late]
    assert [e.event for e in late].count("token") == 30


def test_cancel_before_start_charges_nothing(api: str) -> None:
    bearer = token()
    body = post_job(api, bearer, queue="images", steps=2, cost_per_step="3").json()  # no images worker here
    canceled = requests.post(
        f"{api}/api/v1/jobs/{body['job_id']}/cancel",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceled"
    job = get(api, bearer, body["status_url"]).json()
    assert job["status"] == "canceled"
    assert job["cost"]["charged"] == "0"
    assert get(api, bearer, "/api/v1/credits/balance").json() == {
        "available": "1000",
        "held": "0",
        "posted": "1000",
    }
    assert read_all(api, bearer, body["events_url"])[-1].event == "canceled"
    again = requests.post(
        f"{api}/api/v1/jobs/{body['job_id']}/cancel",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"


def test_402_when_the_hold_cannot_be_placed(api: str) -> None:
    bearer = token()
    refused = post_job(api, bearer, steps=2, cost_per_step="600")
    assert refused.status_code == 402
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert (refused.json()["available"], refused.json()["required"]) == ("1000", "1200")
    assert get(api, bearer, "/api/v1/jobs").json()["items"] == []


def test_someone_elses_job_is_404_everywhere(api: str) -> None:
    owner, other = token(), token()
    body = post_job(api, owner, steps=1).json()
    for path in (body["status_url"], body["events_url"]):
        answer = get(api, other, path)
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/problem+json"
    cancel = requests.post(
        f"{api}/api/v1/jobs/{body['job_id']}/cancel", headers={"Authorization": f"Bearer {other}"}, timeout=30
    )
    assert cancel.status_code == 404


def test_idempotency_key_returns_the_same_job(api: str) -> None:
    bearer, key = token(), uuid.uuid4().hex
    first = post_job(api, bearer, key, steps=1)
    second = post_job(api, bearer, key, steps=1)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["job_id"] == second.json()["job_id"]
    assert post_job(api, bearer, key, steps=2).status_code == 409
    assert len(get(api, bearer, "/api/v1/jobs").json()["items"]) == 1


def test_heartbeat_comments_keep_a_quiet_stream_alive(api: str) -> None:
    bearer = token()
    body = post_job(api, bearer, queue="images", steps=1).json()  # never starts in this module
    comments = 0
    started = time.monotonic()
    with open_stream(f"{api}{body['events_url']}", bearer) as response:
        for frame in frames(response):
            comments += frame.comment == "keep-alive"
            if comments >= 2 or time.monotonic() - started > 10:
                break
    assert comments >= 2  # SSE_HEARTBEAT_S=1 in these tests (15 s by default)
    metrics = requests.get(f"{api}/metrics", timeout=30).text
    assert 'creditflow_jobs_open{queue="images",status="queued"}' in metrics
    requests.post(
        f"{api}/api/v1/jobs/{body['job_id']}/cancel",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )


def test_user_stream_carries_balance_changes(api: str, services: Services) -> None:
    bearer = token()
    get(api, bearer, "/api/v1/me")
    seen: list[Frame] = []
    with open_stream(f"{api}/api/v1/me/events", bearer) as response:
        job = post_job(api, bearer, steps=1, cost_per_step="2").json()
        for frame in frames(response):
            if frame.event == "balance":
                seen.append(frame)
                if frame.data["available"] == "998":
                    break
    assert seen[-1].data == {**seen[-1].data, "posted": "998", "held": "0", "available": "998"}
    # The job's end, on the user's stream with the balance it left (the job completions of /me/events).
    assert (seen[-1].data["job_id"], seen[-1].data["job_status"]) == (job["job_id"], "succeeded")
    assert get(api, bearer, f"/api/v1/jobs/{job['job_id']}").json()["status"] == "succeeded"


def test_dead_letters_are_listed_and_replayed_by_admins(api: str, services: Services, tmp_path: Path) -> None:
    bearer = token()
    job = post_job(api, bearer, steps=1).json()
    wait_final(services, job["job_id"])
    letter = dead_letters.record(
        services,
        task_name="creditflow.critical.settle",
        task_id="t-1",
        args=[job["job_id"]],
        kwargs={},
        reason="retries_exhausted",
        error="OperationalError: database went away",
        job_id=job["job_id"],
    )
    admin = token(admin=True)
    assert get(api, bearer, "/api/v1/admin/dead-letters").status_code == 403
    listed = get(api, admin, "/api/v1/admin/dead-letters?limit=200").json()
    assert letter in [item["id"] for item in listed["items"]]
    replayed = requests.post(
        f"{api}/api/v1/admin/dead-letters/{letter}/replay",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert replayed.status_code == 202
    assert replayed.json()["replays"] == 1
    audited = get(api, admin, f"/api/v1/admin/audit?target=dead_letter:{letter}").json()["items"]
    assert [(row["action"], row["after"]["replays"]) for row in audited] == [("dead_letter.replay", 1)]
    assert "args" not in audited[0]["after"]  # a task's arguments may carry what a user sent
    assert get(api, admin, "/api/v1/admin/dead-letters/nope/replay").status_code == 405
    missing = requests.post(
        f"{api}/api/v1/admin/dead-letters/nope/replay",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert missing.status_code == 404


def test_stream_ends_from_the_job_row_when_the_final_event_never_reached_redis(
    api: str, services: Services
) -> None:
    from sqlalchemy import update

    from orchestration.tables import jobs

    bearer = token()
    body = post_job(api, bearer, queue="images", steps=1).json()  # never starts in this module
    got: list[Frame] = []
    with open_stream(f"{api}{body['events_url']}", bearer) as response:
        for frame in frames(response):
            if frame.event == "queued":
                # The job ends but its final event is lost (a Redis blip after the commit).
                with services.uow() as session:
                    session.execute(
                        update(jobs)
                        .where(jobs.c.id == body["job_id"])
                        .values(status="failed", error={"code": "lost", "message": "test"}, cost_charged=0)
                    )
            if frame.event:
                got.append(frame)
    assert [frame.event for frame in got] == ["queued", "failed"]
    assert got[-1].id is None  # made from the row: Last-Event-ID stays on the last real entry
    assert got[-1].data["error"] == {"code": "lost", "message": "test"}
    again = read_all(api, bearer, body["events_url"], last=got[0].id)
    assert [frame.event for frame in again] == ["failed"]
    assert (
        requests.get(
            f"{api}{body['events_url']}",
            headers={"Authorization": f"Bearer {bearer}", "Last-Event-ID": "$"},
            timeout=10,
        ).status_code
        == 400
    )


def test_an_api_keys_daily_limit_caps_its_holds_and_gets_back_what_was_not_spent(
    api: str, services: Services
) -> None:
    bearer = token()
    created = requests.post(
        f"{api}/api/v1/api-keys",
        json={"name": "ci", "daily_credit_limit": "2"},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    failing = post_job(api, key, steps=3, cost_per_step="0.5", fail_at_step=1).json()  # holds 1.5
    assert wait_final(services, failing["job_id"]).status == "failed"  # its 1.5 comes back
    done = post_job(api, key, steps=3, cost_per_step="0.5").json()  # holds 1.5, charged 1.5
    assert wait_final(services, done["job_id"]).status == "succeeded"
    refused = post_job(api, key, steps=1, cost_per_step="1")  # 1.5 + 1 > 2
    assert refused.status_code == 402
    assert refused.json()["type"].endswith("api-key-daily-limit")
    assert (refused.json()["limit"], refused.json()["required"]) == ("2", "1")
    assert post_job(api, key, steps=1, cost_per_step="0.5").status_code == 202  # 1.5 + 0.5 fits
    assert (
        post_job(api, bearer, steps=1, cost_per_step="1").status_code == 202
    )  # the user's own token is not capped
