"""A worker that dies mid-generation is followed by one that resumes it: one upstream generation, one
charge. Remote: the I/O worker process is SIGKILLed mid-poll, the reaper queues the job again, and the
next worker polls the provider id stored before the first poll. Local: a prefork child is SIGKILLed
mid-render, its message comes back, and the render is drawn again from its stored request."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from orchestration.images.tables import image_generations, images
from orchestration.jobs import reaper
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.images.conftest import Client
from tests.support.image_providers import ProviderServer
from tests.support.processes import ROOT, descendants, worker

pytestmark = [pytest.mark.slow]


def wait_step(client: Client, job_id: str, step: int) -> None:
    deadline = time.monotonic() + 30
    while ((client.job(job_id)["progress"] or {}).get("step") or 0) < step:
        assert time.monotonic() < deadline, client.job(job_id)
        time.sleep(0.05)


def rows_of(services: Services, job_id: str) -> tuple[Any, Any, list[Any]]:
    with services.uow(autocommit=True) as db:
        job = db.execute(select(jobs).where(jobs.c.id == job_id)).one()
        generation = db.execute(select(image_generations).where(image_generations.c.job_id == job_id)).one()
        kept = list(db.execute(select(images).where(images.c.job_id == job_id)).all())
    return job, generation, kept


def test_a_prefork_child_killed_mid_render_is_redelivered_and_charged_once(
    api: str, services: Services, workers: dict[str, Any]
) -> None:
    client = Client(api)
    body = {"prompt": "a clock tower", "model": "sketch-local", "width": 1024, "height": 1024, "steps": 30}
    job_id = client.generate(**body).json()["job_id"]
    wait_step(client, job_id, 3)
    (child,) = descendants(workers["local"].pid)
    child.send_signal(signal.SIGKILL)
    job = client.wait_job(job_id)
    assert job["status"] == "succeeded", job
    assert job["cost"]["charged"] == job["cost"]["quoted"]
    row, generation, kept = rows_of(services, job_id)
    assert row.attempts == 2
    assert generation.state == "stored"
    assert len(kept) == 1


def test_an_io_worker_killed_mid_poll_is_followed_by_one_polling_the_same_upstream_id(
    api: str,
    providers: ProviderServer,
    services: Services,
    workers: dict[str, Any],
    image_env: dict[str, str],
) -> None:
    client = Client(api)
    prompt = f"[slow] a night market {uuid.uuid4().hex[:6]}"
    body = {"prompt": prompt, "model": "flux-dev-fal", "width": 256, "height": 256, "steps": 24, "seed": 3}
    job_id = client.generate(**body).json()["job_id"]
    wait_step(client, job_id, 3)
    os.killpg(workers["images"].pid, signal.SIGKILL)  # the whole threads-pool worker, mid-poll
    workers["images"].wait(timeout=10)
    (generation,) = providers.of_prompt(prompt)
    with worker(
        "images", env=image_env, cwd=ROOT, log=workers["logs"] / "images-2.log", name="img2", concurrency=5
    ):
        deadline = time.monotonic() + 30
        while client.job(job_id)["status"] == "running":  # the reaper sees the stale heartbeat
            assert time.monotonic() < deadline
            reaper.sweep(services)
            time.sleep(0.5)
        job = client.wait_job(job_id)
    assert job["status"] == "succeeded", job
    assert job["cost"]["charged"] == job["cost"]["quoted"]
    assert providers.of_prompt(prompt) == [generation]  # no second submit upstream
    row, stored, kept = rows_of(services, job_id)
    assert stored.request_id == generation.id
    assert row.attempts == 2
    assert len(kept) == 1
    assert client.get(job["result"]["images"][0]["url"]).status_code == 200
