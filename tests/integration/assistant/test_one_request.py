"""One request to the first token: a chat POST with `Accept: text/event-stream`, on real workers."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from tests.integration.assistant.conftest import Client
from tests.support.sse import Frame, frames

pytestmark = pytest.mark.slow


def _stream_post(
    client: Client, path: str, key: str, body: dict[str, object]
) -> tuple[requests.Response, list[Frame]]:
    headers = {
        "Authorization": f"Bearer {client.bearer}",
        "Accept": "text/event-stream",
        "Idempotency-Key": key,
    }
    got: list[Frame] = []
    with requests.post(
        f"{client.base}{path}", json=body, headers=headers, stream=True, timeout=60
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for frame in frames(response):
            if frame.comment is None and frame.event:
                got.append(frame)
    return response, got


def test_a_message_posted_for_its_stream_answers_the_reply_in_the_same_response(client: Client) -> None:
    conversation = client.conversation(model="echo")
    path = f"/api/v1/chat/conversations/{conversation}/messages"
    body = {"content": "one two three four five", "max_tokens": 64}
    response, events = _stream_post(client, path, "turn-1", body)
    queued = events[0]
    assert queued.event == "queued"
    job_id = queued.data["job_id"]
    assert response.headers["X-Creditflow-Job-Id"] == job_id
    # The 202 body's fields ride on the first event.
    assert queued.data["status"] == "queued"
    assert queued.data["status_url"] == f"/api/v1/jobs/{job_id}"
    assert queued.data["events_url"] == f"/api/v1/jobs/{job_id}/events"
    assert set(queued.data["cost"]) == {"quoted", "held"}
    tokens = [frame for frame in events if frame.event == "token"]
    assert len(tokens) >= 3
    final = events[-1]
    assert final.event == "result"
    receipt = final.data["receipt"]
    assert Decimal(receipt["charged"]) > 0
    assert Decimal(receipt["charged"]) + Decimal(receipt["released"]) == Decimal(queued.data["cost"]["held"])

    # The same key replays the same job's stream; no second job, no second charge.
    replayed, again = _stream_post(client, path, "turn-1", body)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert [frame.id for frame in again] == [frame.id for frame in events]
    assert again[0].data["job_id"] == job_id
    assert again[-1].data["receipt"] == receipt

    # Last-Event-ID resumes on the ordinary events URL, right after the event named.
    middle = tokens[1]
    resumed = client.events_after(queued.data["events_url"], middle.id)
    ids = [frame.id for frame in events]
    assert [frame.id for frame in resumed] == ids[ids.index(middle.id) + 1 :]

    # The conversation answers its running total: this one reply's charge.
    detail = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()
    assert Decimal(detail["total_charged"]) == Decimal(receipt["charged"])
    assert [message["role"] for message in detail["messages"]] == ["user", "assistant"]
    # Without the header the same POST is the ordinary 202.
    plain = client.send(conversation, content="again", max_tokens=8)
    assert plain.status_code == 202
    assert plain.headers["Content-Type"].startswith("application/json")
    client.wait_job(plain.json()["job_id"])
