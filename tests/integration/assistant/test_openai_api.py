"""The OpenAI-compatible API with the official `openai` SDK and LangChain as clients, on the real stack."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest

import ledger
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.assistant.conftest import Client

pytestmark = pytest.mark.slow
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there friend"}]
REPLY = "You said: hello there friend"


def sdk(api: str, bearer: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api}/openai/v1", api_key=bearer, max_retries=0, timeout=60)


def job_of(client: Client, job_id: str) -> dict[str, Any]:
    return client.wait_job(job_id)


def test_a_completion_is_a_job_charged_exactly_what_its_usage_says(api: str, client: Client) -> None:
    raw = sdk(api, client.bearer).chat.completions.with_raw_response.create(model="echo", messages=MESSAGES)
    completion = raw.parse()
    job_id = raw.headers["x-creditflow-job-id"]
    assert completion.id == f"chatcmpl-{job_id}"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    job = job_of(client, job_id)
    assert (job["kind"], job["status"]) == ("completion", "succeeded")
    assert usage.model_extra["cost"] == job["cost"]["charged"]  # the charge, in credits
    balance = client.call("GET", "/api/v1/credits/balance").json()
    assert Decimal(balance["available"]) == Decimal(1000) - Decimal(job["cost"]["charged"])


def test_a_stream_sends_the_reply_in_chunks_and_the_usage_last(api: str, client: Client) -> None:
    stream = sdk(api, client.bearer).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}, max_tokens=50
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    job = job_of(client, job_id)
    assert usage.model_extra["cost"] == job["cost"]["charged"]


def test_the_charge_equals_the_ledgers_capture(api: str, client: Client, services: Services) -> None:
    raw = sdk(api, client.bearer).chat.completions.with_raw_response.create(model="echo", messages=MESSAGES)
    job_id = raw.headers["x-creditflow-job-id"]
    job = job_of(client, job_id)
    with services.uow(autocommit=True) as db:
        hold_id = db.execute(jobs.select().where(jobs.c.id == job_id)).one().hold_id
        hold = ledger.get_hold(db, hold_id=hold_id)
    assert hold.status == "captured"
    assert str(Decimal(hold.captured) / ledger.MICRO) == str(Decimal(job["cost"]["charged"]))


def test_refusals_are_openai_errors_with_the_status_codes_clients_handle(api: str, client: Client) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk(api, client.bearer).chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        sdk(api, "cf_not-a-real-key").chat.completions.create(model="echo", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as unsupported:
        sdk(api, client.bearer).chat.completions.create(model="echo", messages=MESSAGES, n=2)
    assert unsupported.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        sdk(api, client.bearer).chat.completions.create(model="echo", messages=[])


def test_a_hold_beyond_the_balance_is_402_with_the_amounts(
    api: str, client: Client, services: Services
) -> None:
    user_id = client.call("GET", "/api/v1/me").json()["id"]
    with services.uow(account_of=user_id) as db:  # everything available is held by another job
        available = ledger.balance(db, user_id=user_id).available
        later = datetime.now(UTC) + timedelta(hours=1)
        ledger.hold(
            db, user_id=user_id, amount=available, expires_at=later, reference="t", idempotency_key=user_id
        )
    with pytest.raises(openai.APIStatusError) as short:
        sdk(api, client.bearer).chat.completions.create(model="echo", messages=MESSAGES)
    assert short.value.status_code == 402
    body = short.value.body
    assert body["type"] == "insufficient_quota"
    assert Decimal(body["available"]) == 0
    assert Decimal(body["required"]) > 0


def test_a_client_that_leaves_mid_stream_cancels_and_pays_for_what_it_got(api: str, client: Client) -> None:
    long = " ".join(f"word{i}" for i in range(60))
    stream = sdk(api, client.bearer).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": long}], stream=True, max_tokens=200
    )
    got = []
    for chunk in stream:
        got.append(chunk)
        if len(got) >= 4:
            break
    stream.close()  # the client goes away
    job_id = got[0].id.removeprefix("chatcmpl-")
    job = job_of(client, job_id)
    assert job["status"] == "canceled"
    charged = Decimal(job["cost"]["charged"])
    assert Decimal(0) < charged < Decimal(job["cost"]["held"])
    assert job["result"]["finish_reason"] == "canceled"


def test_the_same_idempotency_key_replays_the_first_answer(api: str, client: Client) -> None:
    headers = {"Idempotency-Key": f"key-{time.time_ns()}"}
    first = sdk(api, client.bearer).chat.completions.with_raw_response.create(
        model="echo", messages=MESSAGES, extra_headers=headers
    )
    again = sdk(api, client.bearer).chat.completions.with_raw_response.create(
        model="echo", messages=MESSAGES, extra_headers=headers
    )
    assert again.headers["x-creditflow-job-id"] == first.headers["x-creditflow-job-id"]
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    with pytest.raises(openai.ConflictError):
        sdk(api, client.bearer).chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "other"}], extra_headers=headers
        )


def test_models_lists_the_catalogs_chat_models(api: str, client: Client) -> None:
    listed = {model.id for model in sdk(api, client.bearer).models.list()}
    assert "echo" in listed
    assert "gpt-4o-mini" not in listed  # no upstream configured here: not available


def test_langchain_chat_openai_runs_on_creditflow(api: str, client: Client) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="echo", base_url=f"{api}/openai/v1", api_key=client.bearer, max_retries=0)
    assert model.invoke("hello there friend").content == REPLY
    streamed = "".join(str(piece.content) for piece in model.stream("stream this"))
    assert streamed == "You said: stream this"


def test_an_api_key_works_as_the_bearer(api: str, client: Client) -> None:
    made = client.call("POST", "/api/v1/api-keys", json={"name": "sdk"}).json()
    completion = sdk(api, made["key"]).chat.completions.create(model="echo", messages=MESSAGES)
    assert completion.choices[0].message.content == REPLY
