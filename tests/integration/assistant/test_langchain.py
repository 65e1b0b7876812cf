"""LangChain models through the whole job path (quote, hold, stream, settle, receipt) with real workers:
`langchain_openai.ChatOpenAI` against the local OpenAI-compatible server, and LangChain's fake models;
semantic search over one's conversations with MiniLM and LangChain embeddings."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from assistant import conversations
from assistant.catalog import DEFAULT_CATALOG
from assistant.transcript import token_estimate
from ledger.amounts import credits_text
from orchestration.services import Services
from tests.integration.assistant.conftest import Client
from tests.support.openai_server import REPLY, openai_server

pytestmark = pytest.mark.slow
IN, OUT = 1, 2  # micro-credits a token
PRICING = {"input_per_million": IN * 1_000_000, "output_per_million": OUT * 1_000_000}
SCRIPTED = "tests.support.langchain_models.ScriptedChatModel"
LONG = " ".join(f"w{i}" for i in range(200))


def entry(model_id: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "langchain",
        "kind": "chat",
        "quality": 0,
        "environments": ["test"],
        "capabilities": {"context_length": 8192, "streaming": True, "tools": False, "vision": True},
        "pricing": PRICING,
        "options": options,
    }


def embedding(model_id: str, cls: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "langchain",
        "kind": "embedding",
        "environments": ["test"],
        "capabilities": {"dimensions": kwargs.get("size", 8)},
        "pricing": {"input_per_million": IN * 1_000_000},
        "options": {"class": cls, "kwargs": kwargs},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with openai_server() as served:
        yield served


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, upstream: tuple[str, list[Any]]) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    shutil.copy(DEFAULT_CATALOG, path)
    document = yaml.safe_load(path.read_text())

    def openai(model: str) -> dict[str, Any]:
        kwargs = {"model": model, "base_url": upstream[0], "max_retries": 0, "stream_usage": True}
        return {
            "class": "langchain_openai.ChatOpenAI",
            "kwargs": kwargs,
            "secrets": {"api_key": "OPENAI_API_KEY"},
        }

    document["models"] += [
        entry("lc-openai", openai("fake")),
        entry("lc-openai-400", openai("error-400")),
        entry("lc-slow", {"class": SCRIPTED, "kwargs": {"reply": LONG, "usage": False, "delay_s": 0.03}}),
        entry("lc-nousage", {"class": SCRIPTED, "kwargs": {"reply": "a short reply here", "usage": False}}),
        entry(
            "lc-flaky",
            {"class": SCRIPTED, "kwargs": {"reply": "after a retry", "fail_with": "429", "fail_calls": 1}},
        ),
        entry("lc-missing", {"class": "langchain_nowhere.ChatNowhere", "kwargs": {"model": "x"}}),
        embedding("lc-embed", "langchain_core.embeddings.DeterministicFakeEmbedding", {"size": 8}),
        embedding("lc-embed-broken", "tests.support.langchain_models.BrokenEmbeddings", {}),
    ]
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def env(env: dict[str, str]) -> dict[str, str]:
    """The entries' secret lives in a setting (OPENAI_BASE_URL stays unset: the direct path is off)."""
    return {**env, "OPENAI_API_KEY": "sk-lc-test"}


def test_the_catalog_lists_langchain_models_and_why_one_is_unavailable(client: Client) -> None:
    items = {item["id"]: item for item in client.call("GET", "/api/v1/models").json()["items"]}
    assert (items["lc-openai"]["available"], items["lc-openai"]["unavailable_reason"]) == (True, None)
    missing = items["lc-missing"]
    assert missing["available"] is False
    assert "langchain_nowhere is not installed" in missing["unavailable_reason"]
    assert client.conversation().startswith("")  # the API still answers
    refused = client.send(client.conversation(), content="hi", model="lc-missing")
    assert refused.status_code == 422


def test_chat_openai_turn_streams_settles_exact_usage_and_has_a_receipt(
    client: Client, upstream: tuple[str, list[dict[str, Any]]]
) -> None:
    conversation = client.conversation(model="lc-openai")
    accepted = client.send(conversation, content="say hello please", max_tokens=64).json()
    events = client.events(accepted["events_url"])
    assert "".join(e.data["text"] for e in events if e.event == "token") == "".join(REPLY)
    final = events[-1]
    assert final.event == "result", final
    prompt_tokens = len(["say", "hello", "please"]) + 4  # what the local server counts
    usage = final.data["result"]["usage"]
    assert usage == {"input_tokens": prompt_tokens, "output_tokens": len(REPLY)}  # the upstream's figures
    cost = prompt_tokens * IN + len(REPLY) * OUT
    assert final.data["result"]["cost"] == credits_text(cost) == final.data["credits_spent"]
    job = client.wait_job(accepted["job_id"])
    assert (job["status"], job["cost"]["charged"]) == ("succeeded", credits_text(cost))
    assert Decimal(job["cost"]["charged"]) + Decimal(job["cost"]["released"]) == Decimal(job["cost"]["held"])
    request = upstream[1][-1]
    assert request["auth"] == "Bearer sk-lc-test"  # the secret came from the settings
    assert request["body"]["stream"] is True
    assert request["body"]["max_completion_tokens"] == 64
    messages = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()["messages"]
    assert [m["content"] for m in messages] == ["say hello please", "".join(REPLY)]
    entries = client.call("GET", "/api/v1/credits/transactions").json()["items"]
    spent = [e for e in entries if e["job_id"] == accepted["job_id"] and e["kind"] == "capture"]
    assert [e["amount"] for e in spent] == [credits_text(-cost)]  # the ledger's receipt of the charge
    balance = client.call("GET", "/api/v1/credits/balance").json()
    assert balance["available"] == credits_text(1000_000_000 - cost)


def test_a_model_without_usage_is_billed_by_our_estimate_and_a_cancel_bills_the_delivered(
    client: Client,
) -> None:
    conversation = client.conversation(model="lc-slow")
    accepted = client.send(conversation, content="count for me", max_tokens=1000).json()
    client.events(accepted["events_url"], until_tokens=5)
    assert client.call("POST", f"/api/v1/jobs/{accepted['job_id']}/cancel").status_code == 202
    job = client.wait_job(accepted["job_id"])
    assert job["status"] == "canceled"
    usage, reply = job["result"]["usage"], job["result"]["reply"]
    assert LONG.startswith(reply)
    assert 0 < len(reply) < len(LONG)
    assert usage["output_tokens"] < 400  # the whole reply is 400 pieces
    assert usage["counted_by"] == "estimate"  # what was delivered, by our count
    assert job["cost"]["charged"] == credits_text(usage["input_tokens"] * IN + usage["output_tokens"] * OUT)


def test_a_model_that_reports_no_usage_is_billed_by_our_count_said_in_the_result(client: Client) -> None:
    conversation = client.conversation(model="lc-nousage")
    job = client.wait_job(client.send(conversation, content="tell me", max_tokens=50).json()["job_id"])
    assert (job["status"], job["result"]["reply"]) == ("succeeded", "a short reply here")
    usage = job["result"]["usage"]
    assert usage == {
        "input_tokens": token_estimate("tell me") + 4,
        "output_tokens": token_estimate("a short reply here"),
        "counted_by": "estimate",
    }
    assert job["cost"]["charged"] == credits_text(usage["input_tokens"] * IN + usage["output_tokens"] * OUT)


def test_a_rate_limited_upstream_is_retried_and_the_turn_bills_the_reply_once(client: Client) -> None:
    conversation = client.conversation(model="lc-flaky")
    job = client.wait_job(client.send(conversation, content="again", max_tokens=50).json()["job_id"])
    assert (job["status"], job["result"]["reply"]) == ("succeeded", "after a retry")
    usage = job["result"]["usage"]  # the scripted model's own figures: input words, output chunks
    assert usage == {"input_tokens": 1, "output_tokens": 5}
    assert job["cost"]["charged"] == credits_text(1 * IN + 5 * OUT)


def test_an_upstream_bad_request_fails_the_turn_and_charges_nothing(client: Client) -> None:
    conversation = client.conversation(model="lc-openai-400")
    accepted = client.send(conversation, content="this will be refused", max_tokens=16).json()
    job = client.wait_job(accepted["job_id"])
    assert job["status"] == "failed"
    assert job["cost"]["charged"] == "0"
    assert client.call("GET", "/api/v1/credits/balance").json()["available"] == "1000"


def test_the_openai_compatible_api_answers_from_a_langchain_model(client: Client) -> None:
    answer = client.call(
        "POST",
        "/openai/v1/chat/completions",
        json={"model": "lc-openai", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 32},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"] == "".join(REPLY)
    assert body["usage"]["completion_tokens"] == len(REPLY)


def _conversation(services: Services, client: Client, title: str, *contents: str) -> str:
    conversation = client.conversation(title=title)
    with services.uow() as db:
        for position, content in enumerate(contents):
            conversations.add_message(
                db, conversation_id=conversation, position=position, role="user", content=content
            )
    return conversation


def test_search_ranks_the_callers_own_messages_by_minilm(client: Client, services: Services) -> None:
    garden = _conversation(services, client, "garden", "tomatoes need full sun and deep watering")
    _conversation(
        services, client, "taxes", "the quarterly VAT return is due in April", "invoice numbering rules"
    )
    other = Client(client.base)
    _conversation(services, other, "secret", "tomato seedlings in my greenhouse")  # someone else's
    query = {"q": "how do I grow tomato plants?"}
    first = client.call("GET", "/api/v1/chat/search", params=query)
    assert first.status_code == 200, first.text
    # MiniLM is CPU work: the request embeds the query only, the `local` worker the messages
    assert first.json()["searched"] + first.json()["not_yet_embedded"] == 3
    deadline = time.monotonic() + 60
    while (found := client.call("GET", "/api/v1/chat/search", params=query).json())["not_yet_embedded"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["model"] == "all-minilm-l6-v2"  # the cheapest embedding model
    assert found["cost"] == "0"  # a free model: nothing booked
    hits = found["items"]
    assert hits[0]["conversation_id"] == garden
    assert hits[0]["excerpt"] == "tomatoes need full sun and deep watering"
    assert hits[0]["score"] > hits[-1]["score"]
    assert len(hits) == 3  # the caller's three messages, never the other user's
    assert (found["searched"], found["not_yet_embedded"]) == (3, 0)
    theirs = other.call("GET", "/api/v1/chat/search", params={"q": "tomato"}).json()
    assert theirs["searched"] + theirs["not_yet_embedded"] == 1


def test_a_priced_embedding_model_bills_what_it_embedded_once(client: Client, services: Services) -> None:
    texts = ("first note about rivers", "second note about mountains")
    _conversation(services, client, "notes", *texts)
    first = client.call("GET", "/api/v1/chat/search", params={"q": "rivers", "model": "lc-embed"}).json()
    tokens = token_estimate("rivers") + sum(token_estimate(text) for text in texts)
    assert first["usage"] == {"input_tokens": tokens, "counted_by": "estimate"}
    assert first["cost"] == credits_text(tokens * IN)
    again = client.call("GET", "/api/v1/chat/search", params={"q": "rivers", "model": "lc-embed"}).json()
    assert again["cost"] == credits_text(token_estimate("rivers") * IN)  # the messages' vectors were kept
    assert [hit["message_id"] for hit in again["items"]] == [hit["message_id"] for hit in first["items"]]
    spent = tokens * IN + token_estimate("rivers") * IN
    assert client.call("GET", "/api/v1/credits/balance").json()["available"] == credits_text(
        1000_000_000 - spent
    )


def test_search_refusals_change_nothing(client: Client, services: Services) -> None:
    _conversation(services, client, "n", "a message")
    broken = client.call("GET", "/api/v1/chat/search", params={"q": "x", "model": "lc-embed-broken"})
    assert broken.status_code == 502
    assert broken.headers["Content-Type"].startswith("application/problem+json")
    assert client.call("GET", "/api/v1/chat/search", params={"q": "x", "model": "echo"}).status_code == 422
    assert client.call("GET", "/api/v1/chat/search", params={"q": ""}).status_code == 422
    assert client.call("GET", "/api/v1/chat/search").status_code == 422
    balance = client.call("GET", "/api/v1/credits/balance").json()
    assert (balance["available"], balance["held"]) == ("1000", "0")  # the broken model's hold was voided
