"""`fal`: fal's queue. A submit answers `{request_id, status_url, response_url, cancel_url}`; the status
goes `IN_QUEUE {queue_position}` -> `IN_PROGRESS {logs}` -> `COMPLETED`, the result is at response_url,
and `PUT cancel_url` stops a queued or running request. Auth is `Authorization: Key <FAL_KEY>`."""

from __future__ import annotations

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status, steps_from_logs
from assistant.providers.images.http import call, fetch
from runtime.settings import Settings


def available(settings: Settings) -> bool:
    """Configured when the key is set."""
    return bool(settings.FAL_KEY)


def _headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Key {settings.FAL_KEY}"}


def submit(request: ImageRequest, settings: Settings) -> Handle:
    """Put the request in fal's queue."""
    body = {
        "prompt": request.prompt,
        "image_size": {"width": request.width, "height": request.height},
        "num_inference_steps": request.steps,
        "seed": request.seed,
        "guidance_scale": request.guidance or 0,
        "num_images": 1,
        "enable_safety_checker": True,
        "output_format": "png",
    }
    base = settings.FAL_QUEUE_BASE.rstrip("/")
    answer = call(
        settings, "POST", f"{base}/{request.upstream}", what="fal", headers=_headers(settings), body=body
    )
    urls = {name: str(answer.get(name) or "") for name in ("status_url", "response_url", "cancel_url")}
    if not answer.get("request_id") or not all(urls.values()):
        raise ImageProviderError("fal queued the request without its id and URLs", retryable=False)
    return Handle("fal", str(answer["request_id"]), urls, request.as_json())


def poll(handle: Handle, settings: Settings) -> Status:
    """Ask the request's status (with its logs); fetch the result once COMPLETED."""
    url = handle.urls["status_url"]
    answer = call(
        settings, "GET", f"{url}{'&' if '?' in url else '?'}logs=1", what="fal", headers=_headers(settings)
    )
    status = answer.get("status")
    if status == "IN_QUEUE":
        position = answer.get("queue_position")
        return Status("queued", queue_position=int(position) if isinstance(position, int) else None)
    if status == "IN_PROGRESS":
        logs = "\n".join(
            str(line.get("message", "")) for line in answer.get("logs") or [] if isinstance(line, dict)
        )
        step, total, eta_s = steps_from_logs(logs)
        return Status("running", step=step, total=total, eta_s=eta_s)
    if status != "COMPLETED":
        return Status("failed", error=f"unknown fal status {status!r}")
    if answer.get("error"):
        return Status("failed", error=str(answer["error"]))
    return _completed(handle, settings)


def _completed(handle: Handle, settings: Settings) -> Status:
    result = call(
        settings, "GET", handle.urls["response_url"], what="fal", headers=_headers(settings), ok=(200,)
    )
    if any(result.get("has_nsfw_concepts") or []):
        return Status("moderated", error="the safety checker flagged the image")
    images = result.get("images") or []
    if not images or not images[0].get("url"):
        return Status("failed", error="fal completed without an image")
    return Status("ready", result_url=str(images[0]["url"]))


def download(url: str, settings: Settings) -> bytes:
    """The image at fal's CDN URL."""
    return fetch(settings, url, what="fal delivery")


def cancel(handle: Handle, settings: Settings) -> bool:
    """`PUT cancel_url`: True when fal took the cancel (False once the request already completed)."""
    try:
        call(settings, "PUT", handle.urls["cancel_url"], what="fal cancel", headers=_headers(settings))
    except ImageProviderError:
        return False
    return True
