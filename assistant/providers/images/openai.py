"""`openai`: an OpenAI-compatible `POST /v1/images/generations` answering `b64_json`.

The call is synchronous (the image comes back in the answer): `submit` makes it and this process keeps
the bytes until the first poll hands them over. With IMAGES_OPENAI_PARTIAL_IMAGES set, the call is
streamed (`stream: true, partial_images: n`): a thread of this process reads its
`image_generation.partial_image` events, which the polls report as steps with a preview, until
`image_generation.completed`. Nothing upstream can be polled again, so a worker that
died mid-call can't resume it: the job then fails uncharged (stated in the README). A refusal by the
content policy (`content_policy_violation`) is a moderation."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid

import httpx2

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status
from assistant.providers.images.http import call, client, refusal
from runtime.settings import Settings

MODERATION_CODES = ("content_policy_violation", "moderation_blocked")
_results: dict[str, Status] = {}
_streams: dict[str, httpx2.Response] = {}  # the streamed calls still being read, to close on a cancel
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
    partials = settings.IMAGES_OPENAI_PARTIAL_IMAGES
    try:
        if partials:
            _stream(
                handle.request_id,
                url,
                headers,
                {**body, "stream": True, "partial_images": partials},
                settings,
            )
            return handle
        answer = call(settings, "POST", url, what="OpenAI images", headers=headers, body=body, ok=(200,))
    except ImageProviderError as exc:
        if exc.code not in MODERATION_CODES:
            raise
        status = Status("moderated", error="refused by the content policy")
    else:
        status = _decoded(answer)
    _keep(handle.request_id, status)
    return handle


def _keep(request_id: str, status: Status) -> None:
    with _lock:
        _results[request_id] = status


def _stream(
    request_id: str, url: str, headers: dict[str, str], body: dict[str, object], settings: Settings
) -> None:
    """Open the streamed call (a refusal raises here, as unstreamed) and read its events in a thread."""
    http = client(settings)
    try:
        answer = http.send(http.build_request("POST", url, headers=headers, json=body), stream=True)
    except httpx2.HTTPError as exc:
        raise ImageProviderError(f"OpenAI images unreachable: {type(exc).__name__}", retryable=True) from exc
    if answer.status_code != 200:
        answer.read()
        answer.close()
        raise refusal(answer, "OpenAI images")
    _keep(request_id, Status("running", step=0, total=int(str(body["partial_images"])) + 1))
    with _lock:
        _streams[request_id] = answer
    threading.Thread(
        target=_read_events, args=(request_id, answer), daemon=True, name="openai-images"
    ).start()


def _read_events(request_id: str, answer: httpx2.Response) -> None:
    total = 1
    try:
        for line in answer.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:").strip())
            kind, encoded = event.get("type"), event.get("b64_json")
            if kind == "image_generation.partial_image" and isinstance(encoded, str):
                step = int(event.get("partial_image_index", 0)) + 1
                total = max(total, step + 1)
                _keep(
                    request_id, Status("running", step=step, total=total, preview=base64.b64decode(encoded))
                )
            elif kind == "image_generation.completed":
                _keep(request_id, _decoded({"data": [{"b64_json": encoded}]}))
                return
            elif kind == "error":
                _keep(request_id, Status("failed", error=str(event.get("error") or "stream error")))
                return
        _keep(request_id, Status("failed", error="the stream ended before the image"))
    except (httpx2.HTTPError, ValueError, binascii.Error) as exc:
        _keep(request_id, Status("failed", error=f"the stream broke: {type(exc).__name__}"))
    finally:
        answer.close()
        with _lock:
            if _streams.pop(request_id, None) is None:  # canceled: nobody will poll what it kept
                _results.pop(request_id, None)


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
        status = _results.get(handle.request_id)
        if status is not None and status.state != "running":
            _results.pop(handle.request_id)
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
        stream = _streams.pop(handle.request_id, None)
    if stream is not None:
        stream.close()  # the generation goes on upstream, unread: a streamed call has no cancel either
    return False
