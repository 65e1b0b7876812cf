"""`echo`: instant and deterministic; repeats the last user message a piece at a time (dev and tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from assistant.providers import Chunk, Usage
from assistant.specs import ModelSpec
from assistant.transcript import Turn, pieces, transcript
from runtime.settings import Settings


def available(spec: ModelSpec, settings: Settings) -> bool:
    """Listed in development and tests only: never run in production."""
    return settings.CREDITFLOW_ENV != "production"


def reply_to(turns: Sequence[Turn]) -> str:
    """The echo's full reply to a conversation."""
    last = next((turn["content"] for turn in reversed(turns) if turn["role"] == "user"), "")
    return f"You said: {last.strip()}"


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Stream the reply one piece (token) at a time, ECHO_TOKEN_DELAY_MS apart; usage on every chunk.

    Sampling options change nothing (the echo is deterministic); `stop` sequences end it early."""
    if settings.CREDITFLOW_ENV == "production":
        from assistant.providers import ProviderError

        raise ProviderError("the echo model is not available in production", retryable=False)
    prompt_tokens = len(pieces(transcript(turns)))
    reply = _until_stop(pieces(reply_to(turns)), (options or {}).get("stop") or [])
    delay = settings.ECHO_TOKEN_DELAY_MS / 1000
    for index, piece in enumerate(reply[:max_tokens], start=1):
        if delay:
            time.sleep(delay)
        yield Chunk(text=piece, usage=Usage(prompt_tokens, index))
    finish = "length" if len(reply) > max_tokens else "stop"
    yield Chunk(usage=Usage(prompt_tokens, min(len(reply), max_tokens)), finish_reason=finish)


def _until_stop(reply: list[str], stops: Sequence[str]) -> list[str]:
    """The pieces before the first stop sequence (the stop sequence itself is not sent)."""
    text = "".join(reply)
    cut = min((text.find(stop) for stop in stops if stop and stop in text), default=-1)
    if cut < 0:
        return reply
    kept, length = [], 0
    for piece in reply:
        if length + len(piece) > cut:
            if cut > length:
                kept.append(piece[: cut - length])
            break
        kept.append(piece)
        length += len(piece)
    return kept
