"""Conversations as providers see them: turns, a plain transcript, and token estimates."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

ROLES = {"user": "User", "assistant": "Assistant"}
PREAMBLE = "A conversation between a curious user and a helpful, concise assistant.\n\n"
STOP = ["\nUser:", "\nAssistant:", "<end_of_turn>"]
PIECE = re.compile(r"\S+\s*|\s+")
# Every rendered turn's overhead in tokens for chat-template providers ("<|im_start|>user\n" ...).
TURN_OVERHEAD = 8


class Turn(TypedDict):
    """One message of the prompt."""

    role: str
    content: str
    # OpenAI-style content parts (text and image_url) for vision models; `content` keeps the text alone,
    # for providers and estimates that read text.
    parts: NotRequired[list[dict[str, Any]]]


def transcript(turns: Sequence[Turn]) -> str:
    """A base model's prompt: the conversation as "User: ...\\nAssistant: ..." ending with "Assistant:"."""
    lines = [f"{ROLES.get(turn['role'], 'User')}: {turn['content'].strip()}" for turn in turns]
    return PREAMBLE + "\n".join([*lines, "Assistant:"])


def pieces(text: str) -> list[str]:
    """Whitespace-delimited pieces (a word and its trailing space): the echo model's tokens."""
    return PIECE.findall(text)


def turn_bound(turn: Turn) -> int:
    """Upper bound of one turn's tokens in any prompt: its rendered bytes plus the template overhead."""
    return len(f"{ROLES.get(turn['role'], 'User')}: {turn['content'].strip()}\n".encode()) + TURN_OVERHEAD


def token_bound(turns: Sequence[Turn]) -> int:
    """An upper bound of the prompt's tokens for any byte-level tokenizer: bytes plus turn overheads."""
    return len((PREAMBLE + "Assistant:").encode()) + TURN_OVERHEAD + sum(turn_bound(turn) for turn in turns)


def token_estimate(text: str) -> int:
    """A rough token count (4 bytes a token) when a provider reports none, e.g. a stream cut short."""
    return max(1, -(-len(text.encode()) // 4)) if text else 0
