"""Streaming one model reply and billing what was delivered: shared by chat turns and completions.

Billing rules (what users of other systems reported, PITFALLS "LLM billing"): the charge is the
provider's usage when the reply ended normally; a reply cut short (a cancel, a client gone, the time
limit, a stream broken midway) is billed for what was delivered; a stream that broke before any text is
raised, so the saga retries or compensates and nothing is billed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from assistant.pricing import chat_cost
from assistant.providers import ProviderError, Usage, provider_for
from assistant.specs import ModelSpec
from assistant.transcript import Turn, token_estimate
from runtime.settings import Settings

ENDED_EARLY = ("canceled", "interrupted", "time_limit", "lost")


class ReplySink(Protocol):
    """Where a reply reports: streamed text, the running cost, and whether to stop."""

    def token(self, text: str) -> None:
        """Publish a text delta."""

    def spend(self, total: int) -> None:
        """Book the reply's cost so far (micro-credits)."""

    def should_stop(self) -> bool:
        """True once the reply must end (canceled, or out of time)."""

    def stop_reason(self) -> str | None:
        """Why the reply stopped ("canceled", "time_limit"), once `should_stop()` said so."""


def stream_reply(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    pricing: Mapping[str, int],
    sink: ReplySink,
    options: Mapping[str, Any] | None = None,
    estimated_input: int | None = None,
) -> dict[str, Any]:
    """Stream the reply, booking the cost of what was delivered as it goes; its text, usage, cost, end.

    `estimated_input` replaces the prompt's text estimate where the prompt is more than text (an
    image's tokens), for a reply cut before the provider reported its usage."""
    provider = provider_for(spec.provider)
    text: list[str] = []
    usage: Usage | None = None
    finish = "stop"
    # The prompt's estimate is the same for every chunk: counted once, not once per token.
    if estimated_input is None:
        estimated_input = sum(token_estimate(turn["content"]) + 4 for turn in turns)
    try:
        for chunk in provider.stream(spec, turns, max_tokens=max_tokens, settings=settings, options=options):
            if chunk.text:
                text.append(chunk.text)
                sink.token(chunk.text)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
            sink.spend(_cost(pricing, estimated_input, usage, len(text)))
            if sink.should_stop():
                finish = sink.stop_reason() or "canceled"
                break
    except ProviderError:
        if not text:
            raise  # nothing delivered: the saga retries or compensates
        finish = "interrupted"  # a stream cut midway is billed for what was delivered
    final = usage if usage and finish not in ENDED_EARLY else _delivered(estimated_input, usage, len(text))
    cost = chat_cost(pricing, input_tokens=final.input_tokens, output_tokens=final.output_tokens)
    sink.spend(cost)
    return {"reply": "".join(text), "usage": final.as_json(), "cost": cost, "finish_reason": finish}


def _delivered(estimated_input: int, usage: Usage | None, pieces: int) -> Usage:
    """Exact usage when the provider reported it for what was delivered, else an estimate of it."""
    if usage is not None and usage.output_tokens >= pieces:
        return usage
    return Usage(usage.input_tokens if usage else estimated_input, pieces, counted_by="estimate")


def _cost(pricing: Mapping[str, int], estimated_input: int, usage: Usage | None, pieces: int) -> int:
    delivered = _delivered(estimated_input, usage, pieces)
    return chat_cost(pricing, input_tokens=delivered.input_tokens, output_tokens=delivered.output_tokens)
