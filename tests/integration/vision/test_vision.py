"""Vision analyses end to end: a real API process (its outbound fetches under a socket guard and a test
name table), real Celery workers, PostgreSQL/Redis, and a local OpenAI-compatible server that decodes the
image parts it is sent. Also: dry runs of every job-creating POST create nothing."""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import jwt
import pytest
import requests
import yaml
from sqlalchemy import func, select

import ledger
from assistant.catalog import DEFAULT_CATALOG
from assistant.pricing import chat_cost
from ledger.tables import accounts, entries, holds
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from orchestration.tables import jobs
from runtime.settings import load_settings
from tests.support.images import GPT_4O_TILES, picture, png_bomb
from tests.support.network_guard import subprocess_env
from tests.support.openai_server import openai_server
from tests.support.processes import ROOT, api_server, child_env, worker
from tests.support.web_origin import Answer, WebOrigin, body, redirect, web_origin

pytestmark = pytest.mark.slow
JWT_SECRET = "vision-test-secret-0123456789-abcdefgh"
VLM = {
    "id": "vision-test",
    "provider": "openai",
    "kind": "chat",
    "quality": 3,
    "environments": ["test"],
    "capabilities": {
        "context_length": 16000,
        "streaming": True,
        "vision": True,
        "image": GPT_4O_TILES,
    },
    "pricing": {"input_per_million": 2_000_000_000, "output_per_million": 8_000_000_000},
    "options": {"upstream": "fake-vision"},
}


@pytest.fixture(scope="module")
def stack(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Workers, the API with OUTBOUND_ALLOW_LOOPBACK, an image origin and the OpenAI-compatible server."""
    base = tmp_path_factory.mktemp("vision")
    catalog = base / "catalog.yaml"
    shutil.copy(DEFAULT_CATALOG, catalog)
    document = yaml.safe_load(catalog.read_text())
    document["models"].append(VLM)
    # The same model behind an upstream that refuses every request (the test server's `error-400`).
    document["models"].append({**VLM, "id": "vision-broken", "options": {"upstream": "error-400"}})
    catalog.write_text(yaml.safe_dump(document))
    refused_log = base / "refused.log"
    refused_log.touch()
    with openai_server() as (openai_base, received), web_origin() as origin:
        env = child_env(
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            AUTH_JWT_SECRET=JWT_SECRET,
            VAR_DIR=str(base / "var"),
            CREDITFLOW_ENV="test",
            ASSISTANT_CATALOG=str(catalog),
            OPENAI_BASE_URL=openai_base,
            OPENAI_API_KEY="sk-vision",
            OUTBOUND_ALLOW_LOOPBACK="true",
            RATE_LIMIT_JOBS="1000/minute",
            API_WORKERS="1",
            MEMORY_EMBEDDINGS="false",
            DIAGNOSTIC_JOBS_ENABLED="true",
        )
        # The API fetches image URLs: there, `images.test` and `cloud.test` resolve as the test says, and
        # a connect anywhere but 127.0.0.1 fails and is logged.
        api_env = {
            **env,
            **subprocess_env({"images.test": "127.0.0.1", "cloud.test": "169.254.169.254"}, str(refused_log)),
        }
        logs = base / "logs"
        logs.mkdir()
        with (
            worker(
                "critical,maintenance,local",
                env=env,
                cwd=ROOT,
                log=logs / "crit.log",
                name="crit",
                concurrency=1,
            ),
            worker("interactive", env=env, cwd=ROOT, log=logs / "io.log", name="io", concurrency=4),
            api_server(env=api_env, log=logs / "api.log") as api,
        ):
            yield {"api": api, "origin": origin, "received": received, "refused_log": refused_log}
    assert refused_log.read_text() == "", "a connect beyond 127.0.0.1 was attempted"


@pytest.fixture(scope="module")
def services(stack: dict[str, Any], redis_url: str, database_url: str) -> Iterator[Services]:
    built = bootstrap(
        load_settings(REDIS_URL=redis_url, DATABASE_URL=database_url, AUTH_JWT_SECRET=JWT_SECRET)
    )
    yield built
    built.close()


class User:
    """A new user (1000 welcome credits) talking to the API."""

    def __init__(self, api: str) -> None:
        now = int(time.time())
        claims = {"iss": "creditflow", "sub": f"v-{uuid.uuid4().hex}", "iat": now, "exp": now + 900}
        self.api = api
        self.bearer = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        self.id = self.call("GET", "/api/v1/me").json()["id"]

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.bearer}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.api}{path}", headers=headers, timeout=60, **kwargs)

    def analyse(self, query: str = "", **payload: Any) -> requests.Response:
        return self.call(
            "POST", f"/api/v1/vision/analyses{query}", json={"prompt": "what is this?", **payload}
        )

    def wait(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                return dict(job)
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not final: {job}")

    def events(self, job_id: str) -> list[str]:
        with self.call("GET", f"/api/v1/jobs/{job_id}/events", stream=True) as answer:
            return [
                line.removeprefix("event:").strip()
                for line in answer.iter_lines(decode_unicode=True)
                if line and line.startswith("event:")
            ]


@pytest.fixture
def user(stack: dict[str, Any]) -> User:
    return User(stack["api"])


def footprint(services: Services, user_id: str) -> tuple[int, int, int, int]:
    """The user's jobs, holds, ledger entries and available balance: a dry run or refusal changes none."""
    with services.uow(autocommit=True) as db:
        account = db.execute(select(accounts).where(accounts.c.user_id == user_id)).one()
        count = lambda query: int(db.execute(query).scalar_one())  # noqa: E731
        return (
            count(select(func.count()).select_from(jobs).where(jobs.c.user_id == user_id)),
            count(select(func.count()).select_from(holds).where(holds.c.account_id == account.id)),
            count(select(func.count()).select_from(entries).where(entries.c.account_id == account.id)),
            int(account.posted) - int(account.held),
        )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_vlm_sees_the_downscaled_image_and_the_charge_is_its_usage(
    stack: dict[str, Any], user: User, services: Services
) -> None:
    image = b64(picture(1600, 1200, "PNG"))
    before = footprint(services, user.id)
    dry = user.analyse("?dry_run=true", image_base64=image, model="vision-test")
    assert dry.status_code == 200, dry.text
    quote = dry.json()
    # Counted after downscaling to the model's limit: 1600x1200 -> 1024x768, 4 tiles = 85 + 4 x 170.
    assert quote["details"]["image_tokens"] == 765
    assert quote["details"]["image_size"] == {"width": 1024, "height": 768}
    assert quote["cost"]["held"] == "0"
    assert footprint(services, user.id) == before
    accepted = user.analyse(image_base64=image, model="vision-test")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["cost"]["quoted"] == quote["cost"]["quoted"]  # the dry run's quote, exactly
    job_id = accepted.json()["job_id"]
    assert "token" in user.events(job_id)
    job = user.wait(job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["reply"] == "I see 1024x768/JPEG."  # the model received the checked, smaller image
    usage = job["result"]["usage"]
    assert usage["input_tokens"] >= 765
    cost = chat_cost(VLM["pricing"], input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"])
    assert Decimal(job["cost"]["charged"]) * ledger.MICRO == cost
    with services.uow(autocommit=True) as db:
        kept = db.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar_one()["image"]
    assert "data" not in kept  # the settled job keeps what it was quoted from, not the picture
    assert kept["tokens"] == 765
    sent = stack["received"][-1]["body"]["messages"][0]["content"]
    assert [part["type"] for part in sent] == ["text", "image_url"]
    assert sent[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_a_model_error_fails_the_job_and_charges_nothing(user: User, services: Services) -> None:
    before = footprint(services, user.id)[3]
    accepted = user.analyse(image_base64=b64(picture(64, 64, "PNG")), model="vision-broken")
    assert accepted.status_code == 202, accepted.text
    job = user.wait(accepted.json()["job_id"])
    assert job["status"] == "failed"
    assert Decimal(job["cost"]["charged"] or 0) == 0
    assert footprint(services, user.id)[3] == before  # the hold was voided: the balance is whole again


def test_an_image_url_is_fetched_through_the_guard(stack: dict[str, Any], user: User) -> None:
    origin: WebOrigin = stack["origin"]
    origin.answers["/cat.jpg"] = body(picture(640, 480, "JPEG"), "image/jpeg")
    accepted = user.analyse(image_url=origin.url("/cat.jpg", "images.test"), model="vision-test")
    assert accepted.status_code == 202, accepted.text
    job = user.wait(accepted.json()["job_id"])
    assert job["result"]["reply"] == "I see 640x480/JPEG."
    assert origin.requests[-1][2]["host"] == f"images.test:{origin.port}"


def test_refused_images_are_clear_errors_and_charge_nothing(
    stack: dict[str, Any], user: User, services: Services
) -> None:
    origin: WebOrigin = stack["origin"]
    origin.answers["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/iam/")
    origin.answers["/to-cloud-name"] = redirect("http://cloud.test/latest/meta-data/")
    origin.answers["/huge"] = body(b"\xff" * (11 * 1024 * 1024), "image/jpeg")
    origin.answers["/page"] = body(b"<html></html>", "text/html")
    origin.answers["/bomb.png"] = body(png_bomb(), "image/png")
    origin.answers["/slow"] = Answer(headers={"Content-Type": "image/png"}, chunks=[b"x"] * 100, pause_s=0.2)
    port = origin.port
    cases = {
        "http://169.254.169.254/latest/meta-data/": "url_address",
        f"http://[::ffff:7f00:1]:{port}/cat.jpg": "url_address",
        f"http://[::ffff:127.0.0.1]:{port}/cat.jpg": "url_address",
        "http://2130706433/": "url_address",
        "http://0x7f000001/": "url_address",
        "http://127.1/": "url_address",
        "http://10.0.0.1/x.png": "url_address",
        "http://100.64.0.1/x.png": "url_address",
        "http://[fd00::1]/x.png": "url_address",
        "file:///etc/passwd": "url_scheme",
        "gopher://127.0.0.1:70/_GET": "url_scheme",
        origin.url("/to-metadata"): "url_address",
        origin.url("/to-cloud-name"): "url_address",
        origin.url("/huge"): "url_too_large",
        origin.url("/page"): "url_content_type",
        origin.url("/bomb.png"): "too_many_pixels",
    }
    before = footprint(services, user.id)
    for url, reason in cases.items():
        answer = user.analyse(image_url=url, model="vision-test")
        assert answer.status_code == 422, (url, answer.text)
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert answer.json()["reason"] == reason, (url, answer.json())
    bomb = user.analyse(image_base64=b64(png_bomb()), model="vision-test")
    assert (bomb.status_code, bomb.json()["reason"]) == (422, "too_many_pixels")
    both = user.analyse(image_base64=b64(picture(8, 8)), image_url=origin.url("/cat.jpg"))
    assert both.status_code == 422
    assert footprint(services, user.id) == before
    assert stack["refused_log"].read_text() == ""


def test_the_local_analyser_reports_what_it_computes(user: User, services: Services) -> None:
    image = b64(picture(300, 200, "JPEG", exif={0x010F: "TestCam"}))
    accepted = user.analyse(image_base64=image, model="inspect-local")
    assert accepted.status_code == 202, accepted.text
    job = user.wait(accepted.json()["job_id"])
    assert (job["status"], job["queue"]) == ("succeeded", "local")
    report = job["result"]["analysis"]
    assert (report["format"], report["original_size"]) == ("JPEG", {"width": 300, "height": 200})
    assert report["exif"]["Make"] == "TestCam"
    assert len(report["dhash"]) == 16
    assert {c["hex"] for c in report["dominant_colours"]}
    assert Decimal(job["cost"]["charged"]) * ledger.MICRO == 1000  # its price per image, nothing else
    # An API key spends within its limits: vision analyses are open to it (api/auth/policy.py).
    key = user.call("POST", "/api/v1/api-keys", json={"name": "vision"}).json()["key"]
    with_key = requests.post(
        f"{user.api}/api/v1/vision/analyses?dry_run=true",
        json={"prompt": "p", "image_base64": image, "model": "inspect-local"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert with_key.status_code == 200, with_key.text
    assert with_key.json()["cost"]["quoted"] == "0.001"


def test_dry_runs_of_every_job_kind_create_nothing(
    stack: dict[str, Any], user: User, services: Services
) -> None:
    conversation = user.call("POST", "/api/v1/chat/conversations", json={"model": "echo"}).json()["id"]
    posts = [
        (f"/api/v1/chat/conversations/{conversation}/messages", {"content": "hello there", "max_tokens": 20}),
        (
            "/api/v1/agent-tasks",
            {"kind": "research", "prompt": "look this up", "max_credits": "2", "model": "echo"},
        ),
        ("/api/v1/diagnostics/jobs", {"steps": 4, "cost_per_step": "0.001"}),
        ("/openai/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
    ]
    before = footprint(services, user.id)
    for path, payload in posts:
        answer = user.call("POST", f"{path}?dry_run=true", json=payload, headers={"Idempotency-Key": "dry-1"})
        assert answer.status_code == 200, (path, answer.text)
        quote = answer.json()
        assert quote["cost"]["held"] == "0"
        assert Decimal(quote["cost"]["quoted"]) > 0
        assert quote["price_version"]
    assert footprint(services, user.id) == before
    messages = user.call("GET", f"/api/v1/chat/conversations/{conversation}").json()["messages"]
    assert messages == []  # the chat dry run's message was rolled back with its hold
    bad = user.call("POST", "/api/v1/diagnostics/jobs?dry_run=maybe", json={"steps": 1})
    assert bad.status_code == 422
    assert footprint(services, user.id) == before
    # The key a dry run carried was not claimed: the real request with it goes through.
    real = user.call(
        "POST",
        "/api/v1/diagnostics/jobs",
        json={"steps": 4, "cost_per_step": "0.001"},
        headers={"Idempotency-Key": "dry-1"},
    )
    assert real.status_code == 202, real.text
