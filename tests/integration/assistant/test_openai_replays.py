"""Whole OpenAI answers outlive their client's timeout, and every replay answers what the job did: on the
real stack (gunicorn on the async front, real workers), with the official `openai` SDK as the client."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.assistant.conftest import ECHO_DELAY_MS, Client

pytestmark = pytest.mark.slow
# The echo model answers "You said: <text>" a word per ECHO_DELAY_MS: this one takes about 2.5 s.
LONG = " ".join(f"word{i}" for i in range(60))
MESSAGES = [{"role": "user", "content": LONG}]
REPLY = f"You said: {LONG}"
STREAM_OPTIONS_MESSAGE = "The 'stream_options' parameter is only allowed when 'stream' is enabled."


def _sdk(api: str, bearer: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api}/openai/v1", api_key=bearer, **{"max_retries": 0, **options})


def _jobs_of(services: Services, client: Client) -> list[Any]:
    user_id = client.call("GET", "/api/v1/me").json()["id"]
    with services.uow(autocommit=True) as db:
        return list(db.execute(select(jobs).where(jobs.c.user_id == user_id)).all())


def test_a_whole_answer_outlives_its_clients_timeout_and_the_sdks_retry_gets_it(
    api: str, client: Client, services: Services
) -> None:
    # Each attempt gives up long before the reply is done; the SDK retries on its own (no key).
    timeout = 40 * ECHO_DELAY_MS / 1000
    completion = _sdk(api, client.bearer, timeout=timeout, max_retries=8).chat.completions.create(
        model="echo", messages=MESSAGES
    )
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    made = _jobs_of(services, client)
    assert len(made) == 1  # the retries joined the first attempt's job: one job, billed once
    assert (made[0].status, completion.id) == ("succeeded", f"chatcmpl-{made[0].id}")
    assert completion.usage is not None
    assert completion.usage.model_extra["cost"] == client.job(made[0].id)["cost"]["charged"]


def test_a_whole_answer_whose_client_left_runs_on_and_its_key_replays_it(api: str, client: Client) -> None:
    key = {"Idempotency-Key": f"timeout-{time.time_ns()}"}
    with pytest.raises(openai.APITimeoutError):
        _sdk(api, client.bearer, timeout=0.5).chat.completions.create(
            model="echo", messages=MESSAGES, extra_headers=key
        )
    # Asked again at once: the job still runs, and the answer waits for it.
    raw = _sdk(api, client.bearer, timeout=60).chat.completions.with_raw_response.create(
        model="echo", messages=MESSAGES, extra_headers=key
    )
    assert raw.parse().choices[0].message.content == REPLY
    job = client.job(raw.headers["x-creditflow-job-id"])
    assert job["status"] == "succeeded"


def test_a_first_attempt_of_the_same_request_is_a_new_job(
    api: str, client: Client, services: Services
) -> None:
    # Only the SDK's own retry (x-stainless-retry-count > 0) joins an earlier job of the same request.
    sdk = _sdk(api, client.bearer, timeout=60)
    first, second = (sdk.chat.completions.create(model="echo", messages=MESSAGES) for _ in range(2))
    assert first.id != second.id
    assert len(_jobs_of(services, client)) == 2


def test_a_canceled_completion_is_never_reported_as_finished(api: str, client: Client) -> None:
    key = {"Idempotency-Key": f"cancel-{time.time_ns()}"}
    stream = _sdk(api, client.bearer, timeout=60).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, extra_headers=key
    )
    seen = []
    for chunk in stream:
        seen.append(chunk)
        if len(seen) >= 4:
            break
    stream.close()  # a streamed reply's client that leaves cancels it
    job_id = seen[0].id.removeprefix("chatcmpl-")
    assert client.wait_job(job_id)["status"] == "canceled"
    with pytest.raises(openai.ConflictError) as whole:
        _sdk(api, client.bearer, max_retries=2).chat.completions.create(
            model="echo", messages=MESSAGES, extra_headers=key
        )
    assert whole.value.body["code"] == "canceled"
    assert whole.value.response.headers["x-should-retry"] == "false"  # so the SDK asked once
    replayed = _sdk(api, client.bearer).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, extra_headers=key
    )
    with pytest.raises(openai.APIError) as streamed:
        list(replayed)  # the text it delivered, then OpenAI's error event: no finish reason
    assert "canceled" in str(streamed.value)


def test_a_streamed_replay_after_its_events_expired_sends_the_text_from_the_row(
    api: str, client: Client, services: Services
) -> None:
    key = {"Idempotency-Key": f"expired-{time.time_ns()}"}
    sdk = _sdk(api, client.bearer, timeout=60)
    first = sdk.chat.completions.create(model="echo", messages=MESSAGES[:1], stream=True, extra_headers=key)
    seen = list(first)
    first_text = "".join(chunk.choices[0].delta.content or "" for chunk in seen if chunk.choices)
    job_id = seen[0].id.removeprefix("chatcmpl-")
    client.wait_job(job_id)
    services.redis.delete(f"jobs:{job_id}")  # its event stream expired
    again = sdk.chat.completions.create(model="echo", messages=MESSAGES[:1], stream=True, extra_headers=key)
    chunks = list(again)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == first_text
    assert first_text == REPLY
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"


def test_raw_surrogate_bytes_are_a_400_in_openais_shape(api: str, client: Client) -> None:
    # ED A0 80 is not UTF-8 (Python's json would read it as a lone surrogate nothing can store).
    raw = b'{"model":"echo","messages":[{"role":"user","content":"a\xed\xa0\x80b"}]}'
    headers = {"Authorization": f"Bearer {client.bearer}", "Content-Type": "application/json"}
    refused = httpx.post(f"{api}/openai/v1/chat/completions", content=raw, headers=headers, timeout=30)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["type"] == "invalid_request_error"


def test_stream_options_without_stream_is_refused_as_openai_does(api: str, client: Client) -> None:
    with pytest.raises(openai.BadRequestError) as options:
        _sdk(api, client.bearer).chat.completions.create(
            model="echo", messages=MESSAGES[:1], stream_options={"include_usage": True}
        )
    assert options.value.body["message"] == STREAM_OPTIONS_MESSAGE
    assert options.value.body["param"] == "stream_options"


def _params(services: Services, completion_id: str) -> Any:
    with services.uow(autocommit=True) as db:
        job_id = completion_id.removeprefix("chatcmpl-")
        return db.execute(select(jobs.c.params).where(jobs.c.id == job_id)).scalar_one()


def test_an_assistant_turn_of_tool_calls_with_null_content_is_taken(
    api: str, client: Client, services: Services
) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    turns = [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "user", "content": "never mind"},
    ]
    answered = _sdk(api, client.bearer, timeout=60).chat.completions.create(model="echo", messages=turns)
    assert answered.choices[0].message.content == "You said: never mind"
    assert _params(services, answered.id)["messages"][1]["content"] == "[tool call now({})]"


def test_an_empty_stop_list_is_no_stop_sequence(api: str, client: Client, services: Services) -> None:
    answered = _sdk(api, client.bearer, timeout=60).chat.completions.create(
        model="echo", messages=MESSAGES[:1], stop=[]
    )
    assert answered.choices[0].message.content == REPLY
    assert "stop" not in _params(services, answered.id)["options"]
