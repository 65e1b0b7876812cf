"""End to end over HTTP with the local renderer (sketch-local) on real PostgreSQL, Redis and Celery
workers: a cost preview holds nothing, bad requests are refused whole, progress rises with previews, the
image is served to its owner only, the charge equals the quote, and a cancel pays the steps done only."""

from __future__ import annotations

import base64
import io
import time
import uuid

import pytest
from PIL import Image
from sqlalchemy import select

from orchestration.images.tables import image_generations, images
from orchestration.services import Services
from tests.integration.images.conftest import Client

pytestmark = [pytest.mark.slow]


def job_key() -> str:
    return uuid.uuid4().hex


def step_price(width: int, height: int, per_megapixel_step: int = 50_000) -> int:
    return -(-per_megapixel_step * width * height // 1_000_000)


def credits(micro: int) -> str:
    whole, fraction = divmod(micro, 1_000_000)
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(whole)


def test_an_image_from_prompt_to_pixels(api: str, services: Services) -> None:
    alice, bob = Client(api), Client(api)
    body = {
        "prompt": "a lighthouse on a cliff at dusk",
        "model": "sketch-local",
        "width": 512,
        "height": 512,
        "steps": 12,
        "seed": 42,
    }
    quote = 12 * step_price(512, 512)

    preview = alice.post("/api/v1/images/generations?dry_run=true", body)
    assert preview.status_code == 200, preview.text
    assert preview.json()["cost"] == {"quoted": credits(quote), "held": "0"}
    assert preview.json()["details"]["step_price"] == step_price(512, 512)
    assert preview.json()["price_version"]
    assert alice.available() == "1000"
    assert alice.get("/api/v1/jobs").json()["items"] == []

    for bad, field in (
        ({"width": 500}, "width"),
        ({"steps": 51}, "steps"),
        ({"seed": 2**32}, "seed"),
        ({"prompt": "word " * 300}, "prompt"),
        ({"width": 2048, "height": 2048 + 16}, "height"),
        ({"model": "flux-nonexistent"}, None),
    ):
        refused = alice.generate(**{**body, **bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        if field:
            assert field in refused.json()["errors"], refused.json()
    assert alice.available() == "1000"
    assert alice.get("/api/v1/jobs").json()["items"] == []

    key = {"Idempotency-Key": f"img-{job_key()}"}
    accepted = alice.post("/api/v1/images/generations", body, headers=key)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    replay = alice.post("/api/v1/images/generations", body, headers=key)
    assert replay.json()["job_id"] == job_id  # the same job, held once
    assert alice.post("/api/v1/images/generations", {**body, "seed": 43}, headers=key).status_code == 409
    assert accepted.json()["cost"] == {"quoted": credits(quote), "held": credits(quote)}
    events = alice.events(accepted.json()["events_url"])
    kinds = [e.event for e in events]
    assert kinds[0] == "queued", kinds
    assert kinds[-1] == "result", kinds
    running = [e.data for e in events if e.event == "progress" and e.data["stage"] == "generating"]
    percents = [p["percent"] for p in running]
    assert len(percents) >= 5, percents
    assert percents == sorted(percents), percents
    assert percents[0] < percents[-1], percents
    assert all(p["total"] == 12 and p["eta_s"] is not None for p in running)
    previews = [p["preview_url"] for p in running if "preview_url" in p]
    assert previews, "no preview while rendering"
    for url in previews:
        assert url.startswith("data:image/webp;base64,")
        raw = base64.b64decode(url.split(",", 1)[1])
        assert len(raw) < 4096
        assert Image.open(io.BytesIO(raw)).format == "WEBP"
    result = events[-1].data
    assert result["credits_spent"] == credits(quote)
    (image,) = result["result"]["images"]

    job = alice.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["cost"] == {
        "quoted": credits(quote),
        "held": credits(quote),
        "charged": credits(quote),
        "released": "0",
    }
    assert alice.available() == credits(1000 * 1_000_000 - quote)

    served = alice.get(image["url"])
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "image/png"
    assert "private" in served.headers["Cache-Control"]
    assert "immutable" in served.headers["Cache-Control"]
    assert Image.open(io.BytesIO(served.content)).size == (512, 512)
    again = alice.get(image["url"], headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304
    thumb = alice.get(f"{image['url']}?size=thumb")
    assert thumb.headers["Content-Type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    assert bob.get(image["url"]).status_code == 404
    assert bob.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert alice.get("/api/v1/images/0123456789abcdef0123456789abcdef").status_code == 404

    # The same prompt and seed draw the same picture (a second job, a second charge).
    twin = alice.generate(**body).json()
    assert alice.wait_job(twin["job_id"])["status"] == "succeeded"
    with services.uow(autocommit=True) as db:
        rows = db.execute(select(images).where(images.c.job_id.in_([job_id, twin["job_id"]]))).all()
    assert len(rows) == 2
    twin_image = alice.get(f"/api/v1/images/{next(r.id for r in rows if r.job_id == twin['job_id'])}")
    assert twin_image.content == served.content


def test_cancel_mid_render_pays_the_steps_done_and_keeps_no_image(api: str, services: Services) -> None:
    alice = Client(api)
    body = {
        "prompt": "a very slow cathedral",
        "model": "sketch-local",
        "width": 1024,
        "height": 1024,
        "steps": 50,
        "seed": 7,
    }
    per_step = step_price(1024, 1024)
    job_id = alice.generate(**body).json()["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = alice.get(f"/api/v1/jobs/{job_id}").json()["progress"] or {}
        if progress.get("stage") == "generating" and progress.get("step", 0) >= 3:
            break
        time.sleep(0.05)
    assert alice.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 202
    job = alice.wait_job(job_id)
    assert job["status"] == "canceled", job
    steps_done = job["result"]["steps_done"]
    assert 3 <= steps_done < 50
    assert job["cost"]["charged"] == credits(steps_done * per_step)
    assert job["cost"]["released"] == credits(50 * per_step - steps_done * per_step)
    assert job["result"]["images"] == []
    assert alice.available() == credits(1000 * 1_000_000 - steps_done * per_step)
    with services.uow(autocommit=True) as db:
        assert db.execute(select(images).where(images.c.job_id == job_id)).first() is None
        generation = db.execute(select(image_generations).where(image_generations.c.job_id == job_id)).one()
    assert generation.state == "canceled"
