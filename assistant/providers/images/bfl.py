"""`bfl`: Black Forest Labs' API. `POST /v1/{model}` answers `{id, polling_url}`; the generation is
polled at that `polling_url` (never one we build) until `Ready {result.sample}`, `Error`/`Failed`, or a
moderation status. Auth is the `x-key` header; 429 carries `retry_after`; 402 means the operator's
credits ran out (an operator alert: the user's job fails uncharged). BFL has no cancel: a canceled job
stops polling and is charged its steps done, which BFL's `progress` tells."""

from __future__ import annotations

from typing import Any

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status
from assistant.providers.images.http import call, fetch
from runtime.settings import Settings

MODERATED = ("Request Moderated", "Content Moderated")


def available(settings: Settings) -> bool:
    """Configured when the key is set."""
    return bool(settings.BFL_API_KEY)


def _headers(settings: Settings) -> dict[str, str]:
    return {"x-key": settings.BFL_API_KEY, "accept": "application/json"}


def submit(request: ImageRequest, settings: Settings) -> Handle:
    """Create the generation task."""
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "steps": request.steps,
        "seed": request.seed,
        "output_format": "png",
    }
    if request.guidance:
        body["guidance"] = request.guidance
    base = settings.BFL_API_BASE.rstrip("/")
    answer = call(
        settings,
        "POST",
        f"{base}/v1/{request.upstream}",
        what="BFL",
        headers=_headers(settings),
        body=body,
        ok=(200,),
    )
    if not answer.get("id") or not answer.get("polling_url"):
        raise ImageProviderError("BFL accepted the task without an id and polling_url", retryable=False)
    return Handle("bfl", str(answer["id"]), {"polling_url": str(answer["polling_url"])}, request.as_json())


def poll(handle: Handle, settings: Settings) -> Status:
    """Ask the task's polling_url."""
    answer = call(
        settings, "GET", handle.urls["polling_url"], what="BFL", headers=_headers(settings), ok=(200,)
    )
    status = str(answer.get("status"))
    total = int(handle.request.get("steps") or 0) or None
    if status == "Ready":
        return Status("ready", result_url=str((answer.get("result") or {}).get("sample") or "") or None)
    if status in MODERATED:
        return Status("moderated", error=status)
    if status in ("Error", "Failed", "Task not found"):
        return Status("failed", error=str(answer.get("details") or status))
    progress = answer.get("progress")
    if isinstance(progress, int | float) and total:
        return Status("running", step=int(progress * total), total=total)
    return Status("queued")  # Pending, with no progress yet


def download(url: str, settings: Settings) -> bytes:
    """The sample at its signed URL (valid for about 10 minutes)."""
    return fetch(settings, url, what="BFL delivery")


def cancel(handle: Handle, settings: Settings) -> bool:
    """BFL's API has no cancel: the task is left to finish upstream."""
    return False
