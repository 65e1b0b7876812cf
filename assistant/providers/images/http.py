"""The HTTP side every remote image provider shares: one pooled client per process, and what an
answer's status means (429 waits what it says, 402 and 401 are the operator's problem, 5xx passes)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import httpx2

from assistant.providers.images import ImageProviderError
from runtime.settings import Settings

MAX_CONNECTIONS = 500
MAX_IMAGE_BYTES = 64 * 1024 * 1024
_clients: dict[tuple[int, float], httpx2.Client] = {}
_lock = threading.Lock()


def client(settings: Settings) -> httpx2.Client:
    """This process's client (an I/O worker polls hundreds of generations with it)."""
    key = (os.getpid(), settings.IMAGE_HTTP_TIMEOUT_S)
    with _lock:
        if key not in _clients:
            limits = httpx2.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
            _clients[key] = httpx2.Client(limits=limits, timeout=settings.IMAGE_HTTP_TIMEOUT_S)
        return _clients[key]


def _retry_after(answer: httpx2.Response, body: Any) -> float | None:
    for value in (
        body.get("retry_after") if isinstance(body, dict) else None,
        answer.headers.get("Retry-After"),
    ):
        try:
            if value is not None:
                return max(0.0, min(60.0, float(value)))
        except (TypeError, ValueError):
            continue
    return None


def _detail(body: Any, raw: bytes) -> str:
    if isinstance(body, dict):
        for name in ("detail", "error", "message"):
            value = body.get(name)
            if isinstance(value, dict):
                value = value.get("message")
            if value:
                return str(value)[:300]
    return raw[:300].decode(errors="replace")


def refusal(answer: httpx2.Response, what: str) -> ImageProviderError:
    """The error an unsuccessful answer stands for."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    status, detail = answer.status_code, _detail(body, answer.content)
    message = f"{what} answered {status}: {detail}"
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error["code"]) if isinstance(error, dict) and error.get("code") else None
    if status == 429:
        return ImageProviderError(message, retryable=True, retry_after=_retry_after(answer, body), code=code)
    if status in (401, 402, 403):
        return ImageProviderError(message, retryable=False, operator=True, code=code)
    return ImageProviderError(message, retryable=status >= 500 or status in (408, 409), code=code)


def call(
    settings: Settings,
    method: str,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any] | None = None,
    ok: tuple[int, ...] = (200, 201, 202),
) -> Any:
    """Send a JSON request; its JSON answer, or the ImageProviderError it stands for."""
    try:
        answer = client(settings).request(method, url, headers=dict(headers), json=body)
    except httpx2.HTTPError as exc:
        raise ImageProviderError(f"{what} unreachable: {type(exc).__name__}", retryable=True) from exc
    if answer.status_code not in ok:
        raise refusal(answer, what)
    try:
        return answer.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise ImageProviderError(f"{what} answered no JSON", retryable=True) from exc


def fetch(settings: Settings, url: str, *, what: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The bytes at a provider's result URL; an expired one (403, 404, 410) is final."""
    try:
        with client(settings).stream("GET", url, headers=dict(headers or {})) as answer:
            if answer.status_code != 200:
                answer.read()
                error = refusal(answer, what)
                error.operator = False  # a refused download is an expired link, not the account
                raise error
            data = bytearray()
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise ImageProviderError(
                        f"{what} sent more than {MAX_IMAGE_BYTES} bytes", retryable=False
                    )
            return bytes(data)
    except httpx2.HTTPError as exc:
        raise ImageProviderError(f"{what} unreachable: {type(exc).__name__}", retryable=True) from exc
