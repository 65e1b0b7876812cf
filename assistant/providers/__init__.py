"""Model providers behind one interface: stream a reply to a transcript, report usage, map errors."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from runtime.settings import Settings

if TYPE_CHECKING:
    from assistant.specs import ModelSpec
    from assistant.transcript import Turn

MODULES = {
    "echo": "assistant.providers.echo",
    "openai": "assistant.providers.openai",
    "local": "assistant.providers.local",
    "langchain": "assistant.providers.langchain",
    "minilm": "assistant.providers.minilm",  # an embedding model: no `stream`
    "inspect": "assistant.providers.inspect",
}


@dataclass(frozen=True)
class Usage:
    """Tokens read and written by one call."""

    input_tokens: int
    output_tokens: int
    counted_by: str = "provider"  # or "estimate": the provider reported none, our count is billed

    def as_json(self) -> dict[str, Any]:
        """The usage as stored on jobs and messages (`counted_by` said only when it is our estimate)."""
        counts: dict[str, Any] = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        return counts if self.counted_by == "provider" else {**counts, "counted_by": self.counted_by}


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed reply: text delta, and the exact usage so far when the provider knows it."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class ProviderError(Exception):
    """A provider call failed; `retryable` says whether another try may succeed (429, 5xx, timeouts)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Provider(Protocol):
    """What every provider module offers."""

    def available(self, spec: ModelSpec, settings: Settings) -> bool:
        """Whether the provider is configured and reachable for this model."""

    def stream(
        self,
        spec: ModelSpec,
        turns: Sequence[Turn],
        *,
        max_tokens: int,
        settings: Settings,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        """Stream the reply to `turns`; the last chunk carries the usage.

        `options` are a caller's sampling choices (temperature, top_p, stop), over the catalog's."""


def provider_for(name: str) -> Provider:
    """The provider module named `name`; KeyError for an unknown one."""
    return importlib.import_module(MODULES[name])  # type: ignore[return-value]


def is_available(spec: ModelSpec, settings: Settings) -> bool:
    """Whether the model's provider exists, is configured and is reachable."""
    if spec.kind == "image":
        from assistant.providers.images import image_available

        return image_available(spec, settings)
    if spec.provider not in MODULES:
        return False
    return provider_for(spec.provider).available(spec, settings)


def unavailable_reason(spec: ModelSpec, settings: Settings) -> str | None:
    """Why the model can't be used, for the providers that say (None: available, or no reason given)."""
    if spec.provider not in MODULES:
        return f"no provider named {spec.provider!r}"
    explain = getattr(provider_for(spec.provider), "unavailable_reason", None)
    return explain(spec, settings) if explain is not None else None
