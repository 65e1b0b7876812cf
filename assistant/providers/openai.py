"""`openai`: any OpenAI-compatible chat-completions endpoint, streamed over httpx2, usage last."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx2  # the HTTP client of openai >= 3 (httpx's successor)

from assistant.providers import Chunk, ProviderError, Usage
from assistant.specs import ModelSpec
from assistant.transcript import Turn
from runtime.settings import Settings

PROBE_TTL_S = 30.0
_probes: dict[str, tuple[float, bool]] = {}
_probe_lock = threading.Lock()
_flights: dict[str, threading.Lock] = {}  # per endpoint: held by the one probe in flight


def configured(settings: Settings) -> bool:
    """Whether an endpoint and key are set."""
    return bool(settings.OPENAI_BASE_URL and settings.OPENAI_API_KEY)


def available(spec: ModelSpec, settings: Settings) -> bool:
    """Configured, and the endpoint answered `GET /models` recently (checked at most every 30 s).

    One probe at a time per endpoint: the callers that find the answer stale while a probe is out wait
    for it (a catalog listing in every API thread would otherwise send one each, and wait as long)."""
    if not configured(settings):
        return False
    base = settings.OPENAI_BASE_URL.rstrip("/")
    with _probe_lock:
        flight = _flights.setdefault(base, threading.Lock())
    with flight:
        with _probe_lock:
            cached = _probes.get(base)
        if cached and time.monotonic() - cached[0] < PROBE_TTL_S:
            return cached[1]
        try:
            answer = httpx2.get(
                f"{base}/models", headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"}, timeout=2.0
            )
            reachable = answer.status_code < 500
        except httpx2.HTTPError:
            reachable = False
        with _probe_lock:
            _probes[base] = (time.monotonic(), reachable)
        return reachable


_clients: dict[tuple[int, float], httpx2.Client] = {}
_clients_lock = threading.Lock()
# One pooled HTTP client per process serves every concurrent stream (an I/O worker runs hundreds).
MAX_CONNECTIONS = 1000
SAMPLING = ("temperature", "top_p", "stop")


def _client(settings: Settings) -> httpx2.Client:
    key = (os.getpid(), settings.OPENAI_TIMEOUT_S)
    with _clients_lock:
        if key not in _clients:
            limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            _clients[key] = httpx2.Client(limits=limits, timeout=settings.OPENAI_TIMEOUT_S)
        return _clients[key]


def _status_error(status: int, body: bytes) -> ProviderError:
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode(errors="replace")
    retryable = status >= 500 or status in (408, 409, 429)
    return ProviderError(f"provider answered {status}: {message}", retryable=retryable)


def stream(
    spec: ModelSpec,
    turns: Sequence[Turn],
    *,
    max_tokens: int,
    settings: Settings,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Chunk]:
    """Stream the reply; usage comes in the last chunk (`stream_options.include_usage`).

    The chat-completions wire protocol straight over one pooled httpx2 client, not the OpenAI SDK: on
    this path the SDK spent 108 us building a typed object from each chunk (json.loads: 2.4 us) and 6.7 ms
    transforming a 40-message request, which for 64 users streaming at once is a third of two cores."""
    if not configured(settings):
        raise ProviderError("no OpenAI-compatible endpoint is configured", retryable=False)
    chosen = {**{k: spec.options[k] for k in SAMPLING if spec.options.get(k) is not None}, **(options or {})}
    body: dict[str, Any] = {
        "model": str(spec.options.get("upstream", spec.id)),
        "messages": [
            {"role": turn["role"], "content": turn.get("parts") or turn["content"]} for turn in turns
        ],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        **{k: v for k, v in chosen.items() if k in SAMPLING and v is not None},
    }
    url = settings.OPENAI_BASE_URL.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {settings.OPENAI_API_KEY}"}
    finish: str | None = None
    try:
        with _client(settings).stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                raise _status_error(response.status_code, response.read())
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # comments, blank lines, other SSE fields
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                piece = json.loads(data)
                if "error" in piece:
                    raise _status_error(502, data.encode())
                usage = piece.get("usage")
                exact = Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])) if usage else None
                text = ""
                for choice in piece.get("choices") or ():
                    finish = choice.get("finish_reason") or finish
                    text += (choice.get("delta") or {}).get("content") or ""
                if finish == "content_filter":
                    raise ProviderError("the provider refused the content", retryable=False)
                if text or exact:
                    yield Chunk(text=text, usage=exact)
    except httpx2.HTTPError as exc:
        raise ProviderError(f"provider unavailable: {type(exc).__name__}", retryable=True) from exc
    except ValueError as exc:  # a chunk that is not JSON
        raise ProviderError(f"provider sent a malformed chunk: {exc}", retryable=True) from exc
    yield Chunk(finish_reason=finish or "stop")
