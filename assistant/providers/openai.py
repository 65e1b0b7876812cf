"""`openai`: any OpenAI-compatible chat-completions endpoint, streamed with the OpenAI SDK, usage last."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx2  # the HTTP client of openai >= 3 (httpx's successor)

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
        answer = httpx2.get(
            f"{base}/models", headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"}, timeout=2.0
        )
        reachable = answer.status_code < 500
    except httpx2.HTTPError:
        reachable = False
    with _probe_lock:
        _probes[base] = (now, reachable)
    return reachable


_clients: dict[tuple[int, str, str, float], Any] = {}
_clients_lock = threading.Lock()
# One pooled HTTP client per process serves every concurrent stream (an I/O worker runs hundreds).
MAX_CONNECTIONS = 1000


def client(settings: Settings) -> Any:
    """This process's OpenAI client for the configured endpoint (retries are the saga's, not the SDK's)."""
    import openai

    key = (os.getpid(), settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY, settings.OPENAI_TIMEOUT_S)
    with _clients_lock:
        if key not in _clients:
            limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            _clients[key] = openai.OpenAI(
                base_url=settings.OPENAI_BASE_URL,
                api_key=settings.OPENAI_API_KEY,
                timeout=settings.OPENAI_TIMEOUT_S,
                max_retries=0,
                http_client=httpx2.Client(limits=limits, timeout=settings.OPENAI_TIMEOUT_S),
            )
        return _clients[key]


def _error(exc: Exception) -> ProviderError:
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return ProviderError(f"provider unavailable: {type(exc).__name__}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409, 429)
        return ProviderError(f"provider answered {exc.status_code}: {exc.message}", retryable=retryable)
    return ProviderError(f"provider error: {type(exc).__name__}", retryable=False)


SAMPLING = ("temperature", "top_p", "stop")


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Stream the reply (OpenAI SDK); usage comes in the last chunk (`stream_options.include_usage`)."""
    import openai

    if not configured(settings):
        raise ProviderError("no OpenAI-compatible endpoint is configured", retryable=False)
    chosen = {**{k: spec.options[k] for k in SAMPLING if spec.options.get(k) is not None}, **(options or {})}
    options = {k: v for k, v in chosen.items() if k in SAMPLING and v is not None}
    finish: str | None = None
    try:
        answer = client(settings).chat.completions.create(
            model=str(spec.options.get("upstream", spec.id)),
            messages=[{"role": turn["role"], "content": turn["content"]} for turn in turns],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **options,
        )
        with answer:
            for piece in answer:
                usage = piece.usage
                exact = Usage(usage.prompt_tokens, usage.completion_tokens) if usage else None
                text = ""
                for choice in piece.choices:
                    finish = choice.finish_reason or finish
                    if choice.delta and choice.delta.content:
                        text += choice.delta.content
                if finish == "content_filter":
                    raise ProviderError("the provider refused the content", retryable=False)
                if text or exact:
                    yield Chunk(text=text, usage=exact)
    except openai.OpenAIError as exc:
        raise _error(exc) from exc
    except httpx2.HTTPError as exc:
        raise ProviderError(f"provider unavailable: {type(exc).__name__}", retryable=True) from exc
    yield Chunk(finish_reason=finish or "stop")
