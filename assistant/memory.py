"""Memory: fill the context window with the recent messages (and, given scores, the relevant older ones)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from assistant.transcript import Turn, token_bound, turn_bound

RECENT_SHARE = 0.6  # of the budget kept for the most recent messages when relevance scores are given


def fill_context(
    earlier: Sequence[Any],
    *,
    new: str,
    budget: int,
    relevance: Mapping[str, float] | None = None,
) -> list[Turn]:
    """The turns of `select_context`'s messages, then `new`."""
    kept = select_context(earlier, new=new, budget=budget, relevance=relevance)
    return [*(_turn(row) for row in kept), Turn(role="user", content=new)]


def select_context(
    earlier: Sequence[Any],
    *,
    new: str,
    budget: int,
    relevance: Mapping[str, float] | None = None,
) -> list[Any]:
    """Earlier messages (rows with id, role, content, in order) that fit `budget` tokens beside `new`.

    Without `relevance`, the newest messages that fit. With it (message id -> similarity to `new`),
    the newest messages up to a share of the budget, then the most relevant older ones that still fit,
    all kept in conversation order.
    """
    candidates = [row for row in earlier if row.content]
    sizes = [turn_bound(_turn(row)) for row in candidates]
    question = Turn(role="user", content=new)
    used = token_bound([question])
    chosen: set[int] = set()
    recent_limit = budget * RECENT_SHARE if relevance else budget
    for index in range(len(candidates) - 1, -1, -1):
        if used + sizes[index] > recent_limit:
            break
        chosen.add(index)
        used += sizes[index]
    if relevance:
        older = [i for i in range(len(candidates)) if i not in chosen]
        for index in sorted(older, key=lambda i: -relevance.get(candidates[i].id, 0.0)):
            if used + sizes[index] <= budget:
                chosen.add(index)
                used += sizes[index]
    return [candidates[i] for i in sorted(chosen)]


def overflows(earlier: Sequence[Any], *, new: str, budget: int) -> bool:
    """Whether the whole conversation no longer fits the budget (then relevance decides what stays)."""
    turns = [_turn(row) for row in earlier if row.content]
    return token_bound([*turns, Turn(role="user", content=new)]) > budget


def relevance(
    earlier: Sequence[Any],
    *,
    new: str,
    stored: Mapping[str, bytes] | None = None,
    embed_limit: int | None = None,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Similarity of earlier messages to `new` (local MiniLM, cosine), and the packed vectors it had to
    compute (to keep: each message is embedded once).

    `stored`: vectors kept earlier (message id -> packed, assistant/vectors.py). At most `embed_limit`
    missing ones are embedded, newest first; older ones left without a vector score 0 this turn. So a
    turn's cost is bounded however long the conversation: one product over the vectors, a few embeddings."""
    from assistant.embeddings import embed
    from assistant.vectors import packed

    texts = [row for row in earlier if row.content]
    known = dict(stored or {})
    missing = [row for row in reversed(texts) if row.id not in known][:embed_limit]
    computed = {
        row.id: packed(vector)
        for row, vector in zip(missing, embed([row.content for row in missing]), strict=True)
    }
    known.update(computed)
    question = np.frombuffer(packed(embed([new])[0]), dtype="<f4")
    ids = [row.id for row in texts if len(known.get(row.id, b"")) == question.nbytes]
    if not ids:
        return {}, computed
    matrix = np.frombuffer(b"".join(known[key] for key in ids), dtype="<f4").reshape(len(ids), -1)
    return dict(zip(ids, (matrix @ question).tolist(), strict=True)), computed


def _turn(row: Any) -> Turn:
    return Turn(role=row.role, content=row.content)


WORD = re.compile(r"[a-z0-9]{3,}")


def keywords(text: str) -> set[str]:
    """Lower-case words of three characters or more (the lexical search's terms)."""
    return set(WORD.findall(text.lower()))


def search(rows: Sequence[Any], *, query: str, limit: int) -> list[tuple[float, Any]]:
    """Rows (with `content`) sharing the most words with `query`, best first, as (score, row)."""
    wanted = keywords(query)
    if not wanted:
        return []
    scored = []
    for row in rows:
        shared = len(wanted & keywords(row.content or ""))
        if shared:
            scored.append((shared / len(wanted), row))
    scored.sort(key=lambda pair: -pair[0])
    return scored[:limit]
