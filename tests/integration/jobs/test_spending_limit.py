"""The personal spending limit on real PostgreSQL: a job past the period's limit is refused before its hold
(nothing held, no job), a canceled job gives its room back, racing jobs never overshoot it, and over HTTP
the preference round-trips and a refusal is a 402 problem+json naming the limit."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import jsonschema
import jwt
import pytest
import requests
from sqlalchemy import func, select

import ledger
from orchestration.accounts.spending import SpendingLimitExceeded, period_start
from orchestration.accounts.users import get_or_create_user, set_preferences
from orchestration.jobs import create as job_cases
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.jobs.conftest import JWT_SECRET, diagnostic_job
from tests.support.processes import api_server

pytestmark = pytest.mark.slow
QUEUED = {"queue": "images", "steps": 1}  # no worker serves `images` here: the job waits, its hold kept


def job_count(services: Services, user: str) -> int:
    with services.uow(autocommit=True) as db:
        return int(db.execute(select(func.count()).where(jobs.c.user_id == user)).scalar_one())


def held(services: Services, user: str) -> int:
    with services.uow(autocommit=True) as db:
        return ledger.balance(db, user_id=user).held


def test_a_job_past_the_limit_is_refused_before_its_hold(services: Services, user: str) -> None:
    prefs = set_preferences(services, user_id=user, changes={"spending_limit": 5_000_000})
    assert (prefs["spending_limit"], prefs["spending_limit_period"]) == (5_000_000, "day")
    first = diagnostic_job(services, user, cost_per_step=2_000_000, **QUEUED)
    diagnostic_job(services, user, cost_per_step=3_000_000, **QUEUED)  # exactly at the limit: allowed
    assert held(services, user) == 5_000_000
    with pytest.raises(SpendingLimitExceeded) as refused:
        diagnostic_job(services, user, cost_per_step=1, **QUEUED)
    got = refused.value
    assert (got.spent, got.required, got.limit.credits) == (5_000_000, 1, 5_000_000)
    assert held(services, user) == 5_000_000  # nothing more held
    assert job_count(services, user) == 2  # and no job row

    # A canceled job charged nothing: its room comes back.
    assert job_cases.cancel_job(services, user_id=user, job_id=first) == "canceled"
    diagnostic_job(services, user, cost_per_step=2_000_000, **QUEUED)
    with pytest.raises(SpendingLimitExceeded):
        diagnostic_job(services, user, cost_per_step=1, **QUEUED)

    # A monthly limit counts the same jobs (all made this month); removing the limit lifts it.
    set_preferences(services, user_id=user, changes={"spending_limit_period": "month"})
    with pytest.raises(SpendingLimitExceeded):
        diagnostic_job(services, user, cost_per_step=1, **QUEUED)
    set_preferences(services, user_id=user, changes={"spending_limit": None})
    diagnostic_job(services, user, cost_per_step=1, **QUEUED)
    assert job_count(services, user) == 4


def test_someone_elses_limit_is_not_mine(services: Services, user: str) -> None:
    with services.uow() as db:
        other = get_or_create_user(db, external_id=f"test-{uuid.uuid4().hex}").id
    set_preferences(services, user_id=other, changes={"spending_limit": 1})
    diagnostic_job(services, user, cost_per_step=2_000_000, **QUEUED)
    with pytest.raises(SpendingLimitExceeded):
        diagnostic_job(services, other, cost_per_step=2, **QUEUED)


def test_racing_jobs_never_overshoot_the_limit(services: Services, user: str) -> None:
    set_preferences(services, user_id=user, changes={"spending_limit": 3_000_000})
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait(timeout=10)
        try:
            diagnostic_job(services, user, cost_per_step=1_000_000, **QUEUED)
            outcomes.append("made")
        except SpendingLimitExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["made"] * 3 + ["refused"] * 5
    assert held(services, user) == 3_000_000


def test_periods_start_at_the_utc_day_and_month() -> None:
    now = datetime(2026, 12, 7, 11, 30, tzinfo=UTC)
    assert period_start("day", now) == datetime(2026, 12, 7, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def api(job_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**job_env, "RATE_LIMIT_JOBS": "1000/minute", "API_WORKERS": "1"}
    with api_server(env=env, log=tmp_path_factory.mktemp("api") / "api.log") as base:
        yield base


def test_the_limit_over_http(api: str) -> None:
    now = int(time.time())
    bearer = jwt.encode({"iss": "creditflow", "sub": f"u-{uuid.uuid4().hex}", "iat": now, "exp": now + 600},
                        JWT_SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {bearer}"}

    def call(method: str, path: str, body: object = None) -> requests.Response:
        return requests.request(method, f"{api}{path}", json=body, headers=headers, timeout=30)

    for bad in ({"spending_limit": "0"}, {"spending_limit": "-1"}, {"spending_limit_period": "week"}):
        refused = call("PATCH", "/api/v1/me/preferences", bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    limit = {"spending_limit": "2.5", "spending_limit_period": "day"}
    changed = call("PATCH", "/api/v1/me/preferences", limit)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["spending_limit"], changed.json()["spending_limit_period"]) == ("2.5", "day")
    assert call("GET", "/api/v1/me").json()["preferences"]["spending_limit"] == "2.5"

    job = {"queue": "images", "steps": 1, "cost_per_step": "2"}
    assert call("POST", "/api/v1/diagnostics/jobs", job).status_code == 202
    refused = call("POST", "/api/v1/diagnostics/jobs", job)
    assert refused.status_code == 402, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/spending-limit")
    assert (problem["limit"], problem["period"], problem["spent"], problem["required"]) == (
        "2.5", "day", "2", "2",
    )
    assert "spending limit" in problem["detail"]
    # The body is what the document declares for the route's 402.
    document = call("GET", "/api/v1/openapi.json").json()
    declared = document["paths"]["/api/v1/diagnostics/jobs"]["post"]["responses"]["402"]
    name = declared["content"]["application/problem+json"]["schema"]["$ref"].rsplit("/", 1)[1]
    components = document["components"]
    jsonschema.validate(problem, {**components["schemas"][name], "components": components})
    assert call("GET", "/api/v1/credits/balance").json()["held"] == "2"  # the refused job held nothing
    assert len(call("GET", "/api/v1/jobs").json()["items"]) == 1
