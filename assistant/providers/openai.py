"""`openai`: any OpenAI-compatible chat-completions endpoint via langchain-openai, streaming with usage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from assistant.catalog import ModelSpec
from assistant.providers import Chunk, ProviderError, Usage
from assistant.transcript import Turn
from runtime.settings import Settings

PROBE_TTL_S = 30.0
_probes: dict[str, tuple[float, bool]] = {}
_probe_lock = threading.Lock()


def configured(settings: Settings) -> bool:
    """Whether an endpoint and key are set."""
    return bool(settings.OPENAI_BASE_URL and settings.OPENAI_API_KEY)


def available(spec: ModelSpec, settings: Settings) -> bool:
    """Configured, and the endpoint answered `GET /models` recently (checked at most every 30 s)."""
    if not configured(settings):
        return False
    base = settings.OPENAI_BASE_URL.rstrip("/")
    now = time.monotonic()
    with _probe_lock:
        cached = _probes.get(base)
        if cached and now - cached[0] < PROBE_TTL_S:
            return cached[1]
    try:
        answer = httpx.get(
            f"{base}/models", headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"}, timeout=2.0
        )
        reachable = answer.status_code < 500
    except httpx.HTTPError:
        reachable = False
    with _probe_lock:
        _probes[base] = (now, reachable)
    return reachable


def chat_model(spec: ModelSpec, settings: Settings, *, max_tokens: int) -> Any:
    """A LangChain ChatOpenAI for this model; retries are the saga's, not the client's."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=str(spec.options.get("upstream", spec.id)),
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,  # type: ignore[arg-type]
        timeout=settings.OPENAI_TIMEOUT_S,
        max_retries=0,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        stream_usage=True,
        temperature=spec.options.get("temperature"),
    )


def _error(exc: Exception) -> ProviderError:
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return ProviderError(f"provider unavailable: {type(exc).__name__}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409, 429)
        return ProviderError(f"provider answered {exc.status_code}: {exc.message}", retryable=retryable)
    return ProviderError(f"provider error: {type(exc).__name__}", retryable=False)


def stream(spec: ModelSpec, turns: Sequence[Turn], *, max_tokens: int, settings: Settings) -> Iterator[Chunk]:
    """Stream the reply; usage comes in the last chunk (`stream_options.include_usage`)."""
    import openai

    if not configured(settings):
        raise ProviderError("no OpenAI-compatible endpoint is configured", retryable=False)
    messages = [(turn["role"], turn["content"]) for turn in turns]
    finish: str | None = None
    try:
        for piece in chat_model(spec, settings, max_tokens=max_tokens).stream(messages):
            finish = piece.response_metadata.get("finish_reason") or finish
            if finish == "content_filter":
                raise ProviderError("the provider refused the content", retryable=False)
            usage = piece.usage_metadata
            text = piece.content if isinstance(piece.content, str) else ""
            exact = Usage(usage["input_tokens"], usage["output_tokens"]) if usage else None
            if text or exact:
                yield Chunk(text=text, usage=exact)
    except openai.OpenAIError as exc:
        raise _error(exc) from exc
    except httpx.HTTPError as exc:
        raise ProviderError(f"provider unavailable: {type(exc).__name__}", retryable=True) from exc
    yield Chunk(finish_reason=finish or "stop")
