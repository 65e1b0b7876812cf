"""Image generation benchmark: images/s and time to first progress (a preview for the local renderer)
through creditflow, against the same generations driven directly (the floor), at 1 and 32 users.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/images.py
It creates (and drops) a throw-away database, starts the local protocol server of the remote providers
(tests/support/image_providers.py), real workers (critical, images on threads, local on prefork) and
`creditflow api`.

floor, remote: a client submitting to the provider mock and polling it at the same interval as ours;
floor, local: the sketch renderer called directly (one process per local worker slot);
ours: POST /api/v1/images/generations -> the job's SSE stream to its `result` (hold, saga, polling,
storing the image, settlement). The ratio of the two is what the job machinery and polling cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.providers.images import ImageRequest, sketch
from tests.support.api_user import signed_token
from tests.support.databases import fresh_database
from tests.support.image_providers import KEYS, ProviderServer, provider_server
from tests.support.processes import ROOT, api_server, child_env, worker
from tests.support.sse import frames, open_stream

SECRET = "bench-images-secret-bench-images-secret-01234"  # noqa: S105 (a throw-away stack)
POLL_S = 0.05
LOCAL_SLOTS = 2
SIZE = 256
LOCAL_STEPS, REMOTE_STEPS = 8, 4
DEADLINE_S = 120.0  # every run stops by then, finished or not


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@contextmanager
def stack(database_url: str, redis_url: str, tmp: Path, providers: ProviderServer) -> Iterator[str]:
    """Workers and the API on a fresh database; the API's base URL."""
    env = child_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AUTH_JWT_SECRET=SECRET,
        VAR_DIR=str(tmp),
        CREDITFLOW_ENV="test",
        RATE_LIMIT_JOBS="100000/minute",
        RATE_LIMITS_ENABLED="false",
        IMAGE_POLL_INTERVAL_S=str(POLL_S),
        IMAGE_PROVIDERS="flux-schnell=fal",
        JOB_MAX_RUNNING_PER_USER="64",
        **providers.settings(),
    )
    with ExitStack() as stack:
        stack.enter_context(worker("critical", env=env, cwd=ROOT, log=tmp / "critical.log", name="crit"))
        stack.enter_context(
            worker("images", env=env, cwd=ROOT, log=tmp / "images.log", name="img", concurrency=64)
        )
        stack.enter_context(
            worker("local", env=env, cwd=ROOT, log=tmp / "local.log", name="local", concurrency=LOCAL_SLOTS)
        )
        yield stack.enter_context(api_server(env=env, log=tmp / "api.log"))


def _run(users: int, per_user: int, one: Any) -> dict[str, float]:
    """`users` threads each making `per_user` images with `one()` -> seconds to first progress."""
    firsts: list[float] = []
    deadline = time.monotonic() + DEADLINE_S
    started = time.monotonic()

    def user(_index: int) -> int:
        made = 0
        for _ in range(per_user):
            if time.monotonic() > deadline:
                break
            firsts.append(one())
            made += 1
        return made

    with ThreadPoolExecutor(users) as pool:
        done = sum(pool.map(user, range(users)))
    elapsed = time.monotonic() - started
    return {
        "images": done,
        "per_s": done / elapsed,
        "first_p50": pct(firsts, 0.5),
        "first_p95": pct(firsts, 0.95),
    }


def floor_remote(providers: ProviderServer) -> float:
    """One generation on the fal mock driven directly; seconds to its first IN_PROGRESS step."""
    headers = {"Authorization": f"Key {KEYS['fal']}"}
    body = {
        "prompt": f"floor {uuid.uuid4().hex}",
        "image_size": {"width": SIZE, "height": SIZE},
        "num_inference_steps": REMOTE_STEPS,
    }
    start, first = time.monotonic(), None
    with httpx2.Client(timeout=30) as client:
        urls = client.post(f"{providers.base}/fal/fal-ai/flux/schnell", json=body, headers=headers).json()
        while time.monotonic() - start < DEADLINE_S:
            status = client.get(f"{urls['status_url']}?logs=1", headers=headers).json()
            if status["status"] == "IN_PROGRESS" and first is None:
                first = time.monotonic() - start
            if status["status"] == "COMPLETED":
                result = client.get(urls["response_url"], headers=headers).json()
                client.get(result["images"][0]["url"]).raise_for_status()
                break
            time.sleep(POLL_S)
    return first if first is not None else time.monotonic() - start


def floor_local(seed: int, submitted: float) -> float:
    """One sketch render called directly; seconds from its submission (`time.time()`, so a wait for a
    free process counts, as a wait for a worker slot does in ours) to its first preview."""
    start, first = submitted, None
    handle = sketch.submit(ImageRequest("sketch-local", "a bench", SIZE, SIZE, LOCAL_STEPS, seed), None)  # type: ignore[arg-type]
    while True:
        status = sketch.poll(handle, None)  # type: ignore[arg-type]
        if status.preview and first is None:
            first = time.time() - start
        if status.state == "ready":
            return first if first is not None else time.time() - start


def ours(api: str, model: str, steps: int) -> Any:
    """One image through the API, followed on its event stream; seconds to its first progress step.

    Each thread is its own user (open streams are capped per user), signed in before it is timed."""
    users = threading.local()

    def one() -> float:
        if not hasattr(users, "bearer"):
            users.bearer = signed_token(SECRET)
            requests.get(f"{api}/api/v1/me", headers={"Authorization": f"Bearer {users.bearer}"}, timeout=30)
        bearer = users.bearer
        body = {
            "prompt": f"bench {uuid.uuid4().hex}",
            "model": model,
            "width": SIZE,
            "height": SIZE,
            "steps": steps,
        }
        start, first = time.monotonic(), None
        answer = requests.post(
            f"{api}/api/v1/images/generations",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {bearer}"},
        )
        answer.raise_for_status()
        with open_stream(f"{api}{answer.json()['events_url']}", bearer, timeout=DEADLINE_S) as stream:
            for frame in frames(stream):
                data = frame.data or {}
                wanted = (
                    "preview_url" in data if model == "sketch-local" else data.get("stage") == "generating"
                )
                if frame.event == "progress" and wanted and first is None:
                    first = time.monotonic() - start
                if frame.event in ("result", "failed", "canceled"):
                    assert frame.event == "result", data
                    break
        return first if first is not None else time.monotonic() - start

    return one


def main() -> int:
    """Measure floor and ours for the local renderer and the remote protocol, at 1 and 32 users."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64, help="images per run (split between the users)")
    args = parser.parse_args()
    base, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not base.startswith("postgres") or not redis_url:
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    tmp = Path(tempfile.mkdtemp(prefix="cf-bench-images-"))
    report: dict[str, Any] = {}
    with provider_server() as providers, fresh_database("postgresql", tmp, pool_size=20) as engine:
        url = engine.url.render_as_string(hide_password=False)
        with stack(url, redis_url, tmp, providers) as api, ProcessPoolExecutor(LOCAL_SLOTS) as cores:
            for users in (1, 32):
                per_user = max(1, args.images // users) if users > 1 else min(args.images, 16)
                report[f"local floor x{users}"] = _run(
                    users,
                    per_user,
                    lambda: cores.submit(floor_local, uuid.uuid4().int % 2**32, time.time()).result(),
                )
                report[f"local ours x{users}"] = _run(users, per_user, ours(api, "sketch-local", LOCAL_STEPS))
                report[f"remote floor x{users}"] = _run(users, per_user, lambda: floor_remote(providers))
                report[f"remote ours x{users}"] = _run(
                    users, per_user, ours(api, "flux-schnell", REMOTE_STEPS)
                )
    print(json.dumps(report, indent=1))
    for kind in ("local", "remote"):
        for users in (1, 32):
            floor, mine = report[f"{kind} floor x{users}"], report[f"{kind} ours x{users}"]
            print(
                f"{kind:6} x{users:<2}  ours {mine['per_s']:6.2f} images/s, first progress p50 "
                f"{mine['first_p50'] * 1000:7.1f} ms  |  floor {floor['per_s']:6.2f} images/s, "
                f"{floor['first_p50'] * 1000:7.1f} ms  |  throughput "
                f"{100 * mine['per_s'] / floor['per_s']:5.1f}% of the floor, "
                f"first progress {mine['first_p50'] / floor['first_p50']:5.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
