"""Prices in integer micro-credits: the worst case a chat turn can cost, and what its usage costs."""

from __future__ import annotations

from collections.abc import Mapping

PER_MILLION = 1_000_000


def chat_cost(pricing: Mapping[str, int], *, input_tokens: int, output_tokens: int) -> int:
    """Exact cost of a usage, rounded up to the micro-credit (never free when something was used)."""
    total = input_tokens * int(pricing["input_per_million"]) + output_tokens * int(
        pricing["output_per_million"]
    )
    return -(-total // PER_MILLION)


def chat_hold(pricing: Mapping[str, int], *, prompt_tokens: int, max_tokens: int) -> int:
    """The most a turn can cost: the prompt's token bound and every allowed reply token (at least 1)."""
    return max(1, chat_cost(pricing, input_tokens=prompt_tokens, output_tokens=max_tokens))
