"""Our metrics on real processes: a prefork worker serves its pool's job meters, fed by real jobs; the API
serves the rest; every creditflow_* name the Grafana dashboard and the alert rules use is exported."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from api.app import create_app
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from orchestration.tables import FINAL_STATUSES, jobs
from runtime.local import embedded_redis_url, stop_embedded_redis
from runtime.settings import load_settings
from tests.support.processes import ROOT, child_env, free_port, worker

pytestmark = pytest.mark.slow
SECRET = "metrics-test-secret-metrics-test-secret-01"
DEPLOY = ROOT / "deploy"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _names_used() -> set[str]:
    """Every creditflow_* series the dashboard's and the alert rules' expressions read."""
    dashboard = json.loads((DEPLOY / "grafana" / "creditflow.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bcreditflow_[a-z0-9_]+", expr)}


@pytest.fixture(scope="module")
def stack(
    module_database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Services, FlaskClient, str]]:
    """A prefork worker (critical, interactive) exporting on a port, and the API in this process."""
    tmp = tmp_path_factory.mktemp("metrics")
    broker = embedded_redis_url(tmp / "broker")  # this module's own: no other test's sagas reach it
    port = free_port()
    settings = {
        "DATABASE_URL": module_database_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker,
        "AUTH_JWT_SECRET": SECRET,
    }
    env = child_env(
        **settings, CREDITFLOW_ENV="test", VAR_DIR=str(tmp / "var"), WORKER_METRICS_PORT=str(port)
    )
    services = bootstrap(load_settings(**settings))
    try:
        with worker("critical,interactive", env=env, cwd=ROOT, log=tmp / "worker.log", name="metrics"):
            yield (
                services,
                create_app(services.settings, services).test_client(),
                f"http://127.0.0.1:{port}/metrics",
            )
    finally:
        services.close()
        stop_embedded_redis(tmp / "broker")


def _final(services: Services, job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with services.uow(autocommit=True) as db:
            row = db.execute(select(jobs).where(jobs.c.id == job_id)).one()
        if row.status in FINAL_STATUSES:
            return row
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {row.status}")


def test_jobs_feed_the_meters_and_the_dashboards_names_exist(
    stack: tuple[Services, FlaskClient, str],
) -> None:
    services, client, worker_url = stack
    token = jwt.encode(
        {"iss": "creditflow", "sub": f"m-{uuid.uuid4().hex}", "exp": int(time.time()) + 600},
        SECRET,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    api_before = _samples(client.get("/metrics").get_data(as_text=True))
    bodies = (
        {"steps": 2, "tokens": True, "cost_per_step": "1.5"},
        {"steps": 1, "cost_per_step": "2"},
        {"steps": 2, "fail_at_step": 2, "cost_per_step": "1"},
    )
    job_ids = []
    for body in bodies:
        answer = client.post("/api/v1/diagnostics/jobs", headers=headers, json=body)
        assert answer.status_code == 202, answer.json
        job_ids.append(answer.json["job_id"])
    rows = [_final(services, job_id) for job_id in job_ids]
    assert [row.status for row in rows] == ["succeeded", "succeeded", "failed"]
    # The settle in the critical pool's child counted; its parent serves it (multiprocess files).
    deadline = time.monotonic() + 10
    while True:
        scraped = _samples(requests.get(worker_url, timeout=10).text)
        if _value(scraped, "creditflow_jobs_finished_total", kind="diagnostic", status="failed") or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert _value(scraped, "creditflow_jobs_finished_total", kind="diagnostic", status="succeeded") == 2
    assert _value(scraped, "creditflow_jobs_finished_total", kind="diagnostic", status="failed") == 1
    assert _value(scraped, "creditflow_job_duration_seconds_count", kind="diagnostic", model="none") == 3
    assert (
        _value(scraped, "creditflow_job_time_to_first_token_seconds_count", kind="diagnostic", model="none")
        == 1
    )
    charged = sum(row.cost_charged for row in rows)
    assert charged == 5_000_000
    assert (
        _value(scraped, "creditflow_credits_charged_micro_total", kind="diagnostic", model="none") == charged
    )
    released = sum(row.cost_released for row in rows)
    assert _value(scraped, "creditflow_credits_released_micro_total", kind="diagnostic") == released
    compensated = {
        labels: v for (name, labels), v in scraped.items() if name == "creditflow_compensations_total"
    }
    assert sum(compensated.values()) == 1
    # The API counted the holds it committed, and serves the books' gauges.
    api_text = client.get("/metrics").get_data(as_text=True)
    api_after = _samples(api_text)
    held = _value(api_after, "creditflow_credits_held_micro_total", kind="diagnostic") - _value(
        api_before, "creditflow_credits_held_micro_total", kind="diagnostic"
    )
    assert held == sum(row.cost_held for row in rows)
    assert _value(api_after, "creditflow_holds_stranded") == 0
    assert _value(api_after, "creditflow_credits_on_hold_micro") == 0  # every job ended: nothing held
    assert ("creditflow_queue_priority_length", (("priority", "5"), ("queue", "interactive"))) in api_after
    # Every series the dashboard and the alerts read is exported by one of our processes.
    exported = {name for name, _labels in {**api_after, **scraped}}
    missing = sorted(_names_used() - exported)
    assert missing == []
    assert len(_names_used()) >= 15


def test_alert_rules_and_dashboard_are_complete() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"page", "warn"}
            assert rule["annotations"]["summary"]
    dashboard = json.loads((DEPLOY / "grafana" / "creditflow.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
