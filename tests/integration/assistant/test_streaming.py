"""Many users streaming at once on the I/O pool, against a paced OpenAI-compatible upstream.

The workers are the pools `creditflow dev` runs (critical+maintenance prefork, the I/O queues on a
threads pool); the upstream streams TOKENS tokens INTERVAL_MS apart with usage in its last chunk.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from assistant.pricing import chat_cost
from orchestration.bootstrap import bootstrap
from orchestration.services import Services
from orchestration.tables import jobs
from runtime.settings import load_settings
from tests.integration.jobs.conftest import zero_sum
from tests.support import stream_client as http
from tests.support.paced_upstream import TOKEN
from tests.support.processes import ROOT, api_server, child_env, free_port, stop, wait_http, worker

pytestmark = pytest.mark.slow
SECRET = "streaming-test-secret-0123456789-abcdef"
USERS, TOKENS, INTERVAL_MS = 64, 24, 15
PRICING = {"input_per_million": 300_000_000, "output_per_million": 1_200_000_000}  # gpt-4o-mini's


@pytest.fixture(scope="module")
def upstream_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = (tmp_path_factory.mktemp("upstream") / "upstream.log").open("wb")
    argv = [
        sys.executable,
        "-m",
        "tests.support.paced_upstream",
        "--port",
        str(port),
        "--tokens",
        str(TOKENS),
        "--interval-ms",
        str(INTERVAL_MS),
    ]
    process = subprocess.Popen(argv, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process=process, timeout=30)
        yield port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def stack(
    redis_url: str, module_database_url: str, upstream_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Services]]:
    env = child_env(
        REDIS_URL=redis_url,
        DATABASE_URL=module_database_url,
        AUTH_JWT_SECRET=SECRET,
        VAR_DIR=str(tmp_path_factory.mktemp("var")),
        CREDITFLOW_ENV="test",
        OPENAI_BASE_URL=f"http://127.0.0.1:{upstream_port}/v1",
        OPENAI_API_KEY="test",
        RATE_LIMIT_JOBS="100000/minute",
        RATE_LIMIT_USER="100000/minute",
        RATE_LIMIT_IP="100000/minute",
        SSE_HEARTBEAT_S="1",
    )
    logs = tmp_path_factory.mktemp("logs")
    services = bootstrap(load_settings(DATABASE_URL=module_database_url, REDIS_URL=redis_url))
    with (
        worker("critical,maintenance", env=env, cwd=ROOT, log=logs / "critical.log", name="crit"),
        worker(
            "interactive,agents,images", env=env, cwd=ROOT, log=logs / "io.log", name="io", concurrency=200
        ),
        api_server(env=env, log=logs / "api.log") as base,
    ):
        yield int(base.rsplit(":", 1)[1]), services
    services.close()


def _bearer() -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": "creditflow", "sub": f"s-{uuid.uuid4().hex}", "iat": now, "exp": now + 900}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


async def _conversation(port: int, headers: dict[str, str]) -> str:
    answer = await http.request(
        port, "POST", "/api/v1/chat/conversations", body={"model": "gpt-4o-mini"}, headers=headers
    )
    body = await answer.json()
    assert answer.status == 201, body
    return str(body["id"])


async def _turn(port: int, headers: dict[str, str], conversation: str) -> dict[str, Any]:
    """Send a message, follow its events to the end: the job id, the token texts, the final event."""
    posted = await http.request(
        port,
        "POST",
        f"/api/v1/chat/conversations/{conversation}/messages",
        body={"content": "Tell me something.", "max_tokens": 64},
        headers=headers,
    )
    accepted = await posted.json()
    assert posted.status == 202, accepted
    texts: list[str] = []
    final: dict[str, Any] = {}
    events = await http.request(port, "GET", accepted["events_url"], headers=headers)
    async for frame in events.frames():
        if frame.event == "token":
            texts.append(json.loads(frame.data)["text"])
        elif frame.event in ("result", "failed", "canceled"):
            final = json.loads(frame.data)
            break
    events.close()
    return {"job_id": accepted["job_id"], "texts": texts, "final": final}


def test_sixty_four_users_stream_at_once_and_each_pays_exactly_its_usage(stack: tuple[int, Services]) -> None:
    port, services = stack
    before = zero_sum(services)

    async def everyone() -> list[dict[str, Any]]:
        users = [_bearer() for _ in range(USERS)]
        conversations = await asyncio.gather(*(_conversation(port, headers) for headers in users))
        turns = await asyncio.gather(*(_turn(port, h, c) for h, c in zip(users, conversations, strict=True)))
        return list(turns)

    turns = asyncio.run(asyncio.wait_for(everyone(), timeout=120))
    with services.uow(autocommit=True) as db:
        rows = {
            row.id: row
            for row in db.execute(jobs.select().where(jobs.c.id.in_([t["job_id"] for t in turns])))
        }
    for turn in turns:
        row = rows[turn["job_id"]]
        assert row.status == "succeeded", row.error
        assert turn["final"]["type"] == "result"
        assert "".join(turn["texts"]) == row.result["reply"] == TOKEN * TOKENS
        usage = row.result["usage"]
        assert usage["output_tokens"] == TOKENS
        assert row.cost_charged == chat_cost(
            PRICING, input_tokens=usage["input_tokens"], output_tokens=TOKENS
        )
        assert len(turn["texts"]) < TOKENS  # coalesced: fewer events than tokens
    # They ran side by side on the I/O pool, not one after another as on a two-process prefork pool.
    assert _most_at_once(list(rows.values())) >= USERS // 4
    assert zero_sum(services) == before == 0


def _most_at_once(rows: list[Any]) -> int:
    edges = sorted([(row.started_at, 1) for row in rows] + [(row.finished_at, -1) for row in rows])
    running = most = 0
    for _moment, change in edges:
        running += change
        most = max(most, running)
    return most


def test_a_resumed_stream_misses_no_text_and_repeats_none(stack: tuple[int, Services]) -> None:
    port, services = stack

    async def resumed() -> tuple[str, list[str]]:
        headers = _bearer()
        conversation = await _conversation(port, headers)
        posted = await http.request(
            port,
            "POST",
            f"/api/v1/chat/conversations/{conversation}/messages",
            body={"content": "Go on.", "max_tokens": 64},
            headers=headers,
        )
        accepted = await posted.json()
        texts, last = [], None
        first = await http.request(port, "GET", accepted["events_url"], headers=headers)
        async for frame in first.frames():  # leave after the second token event
            if frame.event == "token":
                texts.append(json.loads(frame.data)["text"])
                last = frame.id
                if len(texts) == 2:
                    break
        first.close()
        again = await http.request(
            port, "GET", accepted["events_url"], headers={**headers, "Last-Event-ID": last}
        )
        async for frame in again.frames():
            if frame.event == "token":
                texts.append(json.loads(frame.data)["text"])
            elif frame.event == "result":
                break
        again.close()
        return accepted["job_id"], texts

    job_id, texts = asyncio.run(asyncio.wait_for(resumed(), timeout=60))
    with services.uow(autocommit=True) as db:
        reply = db.execute(jobs.select().where(jobs.c.id == job_id)).one().result["reply"]
    assert "".join(texts) == reply == TOKEN * TOKENS
