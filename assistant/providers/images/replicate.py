"""`replicate`: Replicate predictions. `POST /v1/models/{owner}/{name}/predictions` (with `Cancel-After`,
the job's deadline, so Replicate stops it even if we are gone) answers a prediction with `urls.get` and
`urls.cancel`; its status goes `starting` -> `processing` -> `succeeded` / `failed` / `canceled` /
`aborted`, progress is read from its `logs` (tqdm lines), and outputs are deleted after an hour."""

from __future__ import annotations

from typing import Any

from assistant.providers.images import Handle, ImageProviderError, ImageRequest, Status, steps_from_logs
from assistant.providers.images.http import call, fetch
from runtime.settings import Settings

MODERATION_WORDS = ("nsfw", "safety", "moderat")


def available(settings: Settings) -> bool:
    """Configured when the token is set."""
    return bool(settings.REPLICATE_API_TOKEN)


def _headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"}


def submit(request: ImageRequest, settings: Settings) -> Handle:
    """Create the prediction, to be canceled by Replicate itself past the job's time limit."""
    body = {
        "input": {
            "prompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "num_inference_steps": request.steps,
            "seed": request.seed,
            "guidance": request.guidance or 0,
            "num_outputs": 1,
            "output_format": "png",
        }
    }
    headers = {**_headers(settings), "Cancel-After": f"{settings.IMAGES_TIME_LIMIT_S}s"}
    base = settings.REPLICATE_API_BASE.rstrip("/")
    url = f"{base}/v1/models/{request.upstream}/predictions"
    answer = call(settings, "POST", url, what="Replicate", headers=headers, body=body)
    urls = answer.get("urls") or {}
    if not answer.get("id") or not urls.get("get"):
        raise ImageProviderError("Replicate created a prediction without an id and urls.get", retryable=False)
    kept = {"get": str(urls["get"]), "cancel": str(urls.get("cancel") or "")}
    return Handle("replicate", str(answer["id"]), kept, request.as_json())


def _output_url(output: Any) -> str | None:
    if isinstance(output, list):
        output = output[0] if output else None
    return str(output) if isinstance(output, str) and output else None


def poll(handle: Handle, settings: Settings) -> Status:
    """Read the prediction."""
    answer = call(
        settings, "GET", handle.urls["get"], what="Replicate", headers=_headers(settings), ok=(200,)
    )
    status = answer.get("status")
    if status == "starting":
        return Status("queued")
    if status == "processing":
        step, total, eta_s = steps_from_logs(str(answer.get("logs") or ""))
        return Status("running", step=step, total=total, eta_s=eta_s)
    if status == "succeeded":
        url = _output_url(answer.get("output"))
        return (
            Status("ready", result_url=url) if url else Status("failed", error="succeeded without an output")
        )
    error = str(answer.get("error") or status)
    if status == "failed" and any(word in error.lower() for word in MODERATION_WORDS):
        return Status("moderated", error=error)
    if status == "canceled":
        return Status("canceled", error=error)
    return Status("failed", error=error)  # failed, aborted, or a status we don't know


def download(url: str, settings: Settings) -> bytes:
    """The output file (Replicate's delivery URLs need the token)."""
    return fetch(settings, url, what="Replicate delivery", headers=_headers(settings))


def cancel(handle: Handle, settings: Settings) -> bool:
    """`POST urls.cancel` of this prediction."""
    if not handle.urls.get("cancel"):
        return False
    call(settings, "POST", handle.urls["cancel"], what="Replicate cancel", headers=_headers(settings))
    return True
