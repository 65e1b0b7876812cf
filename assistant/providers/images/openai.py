"""`openai`: an OpenAI-compatible `POST /v1/images/generations` answering `b64_json`.

The call is synchronous (the image comes back in the answer): `submit` makes it and this process keeps
the bytes until the first poll hands them over. Nothing upstream can be polled again, so a worker that
died mid-call can't resume it: the job then fails uncharged (stated in the README). A refusal by the
content policy (`content_policy_violation`) is a moderation."""

from __future__ import annotations

import base64
import binascii
import threading
import uuid

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status
from assistant.providers.images.http import call
from runtime.settings import Settings

MODERATION_CODES = ("content_policy_violation", "moderation_blocked")
_results: dict[str, Status] = {}
_lock = threading.Lock()


def available(settings: Settings) -> bool:
    """Configured when a base URL and key are set."""
    return bool(settings.IMAGES_OPENAI_BASE_URL and settings.IMAGES_OPENAI_API_KEY)


def submit(request: ImageRequest, settings: Settings) -> Handle:
    """Generate the image (the answer carries it)."""
    body = {
        "model": request.upstream,
        "prompt": request.prompt,
        "size": f"{request.width}x{request.height}",
        "n": 1,
        "response_format": "b64_json",
    }
    headers = {"Authorization": f"Bearer {settings.IMAGES_OPENAI_API_KEY}"}
    url = f"{settings.IMAGES_OPENAI_BASE_URL.rstrip('/')}/images/generations"
    handle = Handle("openai", f"openai-{uuid.uuid4().hex}", {}, request.as_json())
    try:
        answer = call(settings, "POST", url, what="OpenAI images", headers=headers, body=body, ok=(200,))
    except ImageProviderError as exc:
        if exc.code not in MODERATION_CODES:
            raise
        status = Status("moderated", error="refused by the content policy")
    else:
        status = _decoded(answer)
    with _lock:
        _results[handle.request_id] = status
    return handle


def _decoded(answer: dict[str, object]) -> Status:
    data = answer.get("data")
    first = data[0] if isinstance(data, list) and data else {}
    encoded = first.get("b64_json") if isinstance(first, dict) else None
    if not isinstance(encoded, str):
        return Status("failed", error="the answer carried no b64_json image")
    try:
        return Status("ready", result=base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return Status("failed", error="the b64_json image is not base64")


def poll(handle: Handle, settings: Settings) -> Status:
    """The answer `submit` received; failed when this process never had it (its worker died)."""
    with _lock:
        status = _results.pop(handle.request_id, None)
    if status is None:
        return Status(
            "failed", error="the synchronous OpenAI images call can't be resumed after a worker died"
        )
    return status


def download(url: str, settings: Settings) -> bytes:
    """Not used: the image comes back inline (b64_json)."""
    raise ImageProviderError("OpenAI images are returned inline", retryable=False)


def cancel(handle: Handle, settings: Settings) -> bool:
    """A synchronous call can't be canceled upstream."""
    with _lock:
        _results.pop(handle.request_id, None)
    return False
