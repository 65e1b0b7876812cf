"""One generation followed to its end, the same way for every provider.

The provider's id is committed before the first poll, so a later attempt (a retry, or a redelivery after
the worker died) polls that id instead of submitting again: one upstream generation, one charge. The
result is downloaded and stored the moment it is ready (result URLs expire in minutes). Progress is one
story: `queue_position`/`eta_s` while queued, `step`/`total`/`percent`/`eta_s` while running, a small
inline WebP preview when there is one, then the `result` with the image ids and the charge."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from assistant.providers.images import Handle, ImageProvider, ImageProviderError, ImageRequest, Status
from ledger.amounts import credits_text
from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.images import records
from orchestration.images.records import UnusableImage

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL_FAILURES = 5  # passing poll errors in a row before the attempt gives way to a Celery retry
DOWNLOAD_TRIES = 3
SLICE_S = 0.2  # a wait between polls checks for a cancel this often
IMAGE_PATH = "/api/v1/images/{id}"


class Stopped(Exception):
    """The job was told to stop (cancel, time limit, taken over) while a provider call was retried."""


def failure(code: str, message: str) -> FinalError:
    """A final failure with its own code on the job (`moderated`, `provider_account`, ...)."""
    error = FinalError(message)
    error.code = code
    return error


def _wait(ctx: RunContext, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ctx.should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(SLICE_S, left))


def _call(ctx: RunContext, what: str, call: Callable[[], T], *, tries: int, then_retry: bool = True) -> T:
    """Call the provider; passing errors are retried here (waiting what it asked), then by Celery, or
    (`then_retry` false: a submit, which no provider makes idempotent) the job fails uncharged."""
    for attempt in range(1, tries + 1):
        try:
            return call()
        except ImageProviderError as exc:
            if exc.operator:
                # The operator's upstream account is empty or its key refused: not the user's doing.
                log.critical("image provider refused the operator's account (%s): %s", what, exc)
                raise failure(
                    "provider_account", "the image provider is unavailable; nothing was charged"
                ) from exc
            if not exc.retryable:
                raise failure("provider_error", f"the image provider refused the {what}: {exc}") from exc
            if attempt == tries and not then_retry:
                raise failure("provider_error", f"the image provider failed the {what}: {exc}") from exc
            if attempt == tries:
                raise RetryableError(f"the image provider failed the {what}: {exc}") from exc
            _wait(ctx, exc.retry_after if exc.retry_after is not None else min(8.0, 0.5 * 2**attempt))
            if ctx.should_stop():
                raise Stopped from exc
    raise AssertionError("unreachable")


def _preview_url(preview: bytes | None) -> dict[str, str]:
    if not preview:
        return {}
    return {"preview_url": "data:image/webp;base64," + base64.b64encode(preview).decode()}


def _inline(preview: bytes) -> bytes:
    """A provider's preview as a small WebP (previews from remote providers come in any format)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(preview)) as image:
        return records.thumbnail(image, side=64, quality=40)


def _result(ctx: RunContext, image: Any, charge: int) -> dict[str, Any]:
    ctx.book(charge)
    return {
        "images": [
            {
                "id": image.id,
                "url": IMAGE_PATH.format(id=image.id),
                "thumb_url": IMAGE_PATH.format(id=image.id) + "?size=thumb",
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
            }
        ],
        "cost": credits_text(min(charge, ctx.held)),
    }


def _stopped(
    ctx: RunContext, provider: ImageProvider, handle: Handle | None, steps_done: int, step_price: int
) -> dict[str, Any]:
    if handle is not None and ctx.stop_reason in ("canceled", "time_limit"):
        try:  # by the job's own upstream id: never another job's
            provider.cancel(handle, ctx.services.settings)
        except ImageProviderError as exc:
            log.warning("upstream cancel of job %s (%s) failed: %s", ctx.job_id, handle.request_id, exc)
        records.mark(ctx.services, ctx.job_id, state="canceled", steps_done=steps_done)
    if ctx.stop_reason == "time_limit":
        raise failure(
            "time_limit", "the image was not ready within the job's time limit; nothing was charged"
        )
    charge = steps_done * step_price
    ctx.book(charge)
    return {
        "images": [],
        "canceled": True,
        "steps_done": steps_done,
        "cost": credits_text(min(charge, ctx.held)),
    }


def _download(ctx: RunContext, provider: ImageProvider, handle: Handle, status: Status) -> bytes:
    if status.result is not None:
        return status.result
    if not status.result_url:
        raise failure("provider_error", "the provider reported the image ready without a result")
    settings = ctx.services.settings
    url = str(status.result_url)
    try:
        return _call(ctx, "download", lambda: provider.download(url, settings), tries=DOWNLOAD_TRIES)
    except FinalError as exc:
        # An expired link (403/404/410): a fresh poll may hand out a new one; else it is lost upstream.
        fresh = _call(ctx, "poll", lambda: provider.poll(handle, settings), tries=POLL_FAILURES)
        if fresh.result is not None:
            return fresh.result
        again = str(fresh.result_url or "")
        expired = failure(
            "result_expired", "the provider's result expired before it was saved; nothing was charged"
        )
        if fresh.state != "ready" or not again or again == url:
            raise expired from exc
        try:
            return _call(ctx, "download", lambda: provider.download(again, settings), tries=DOWNLOAD_TRIES)
        except FinalError as second:
            raise expired from second


def _ready(
    ctx: RunContext,
    provider: ImageProvider,
    handle: Handle,
    status: Status,
    *,
    model: str,
    total: int,
    quote: int,
) -> dict[str, Any]:
    data = _download(ctx, provider, handle, status)
    try:
        image = records.keep_image(
            ctx.services, job_id=ctx.job_id, user_id=ctx.user_id, model=model, data=data
        )
    except UnusableImage as exc:
        raise failure("provider_error", f"{exc}; nothing was charged") from exc
    records.mark(ctx.services, ctx.job_id, state="stored", steps_done=total, image_id=image.id)
    ctx.progress("done", total, total, 0.0)
    return _result(ctx, image, quote)


def _ended_badly(ctx: RunContext, status: Status) -> FinalError:
    records.mark(ctx.services, ctx.job_id, state=status.state)
    if status.state == "moderated":
        why = status.error or "flagged"
        return failure("moderated", f"the provider's moderation refused it ({why}); nothing was charged")
    why = status.error or "no detail"
    return failure("provider_error", f"the generation {status.state} upstream ({why}); nothing was charged")


def _steps_seen(status: Status, total: int, before: int) -> int:
    """Steps done in the job's own count (a provider may count its steps otherwise)."""
    if status.step is None:
        return before
    if status.total and status.total != total:
        return min(total, status.step * total // status.total)
    return min(total, status.step)


def generate(
    ctx: RunContext, provider: ImageProvider, request: ImageRequest, *, model: str, step_price: int
) -> Mapping[str, Any]:
    """Submit (or resume) the job's generation and follow it to its end; the result names the image."""
    services, settings = ctx.services, ctx.services.settings
    stored = records.generation_of(services, ctx.job_id)
    if stored is not None and stored.image_id:  # kept by an earlier attempt: only the result was lost
        image = records.image_of(services, user_id=ctx.user_id, image_id=stored.image_id)
        if image is not None:
            return _result(ctx, image, request.steps * step_price)
    if stored is not None:
        return _follow(ctx, provider, records.handle_of(stored), request, model=model, step_price=step_price)
    if ctx.should_stop():
        return _stopped(ctx, provider, None, 0, step_price)
    try:
        handle = _call(ctx, "request", lambda: provider.submit(request, settings), tries=3, then_retry=False)
    except Stopped:
        return _stopped(ctx, provider, None, 0, step_price)
    records.save_handle(services, ctx.job_id, handle)
    return _follow(ctx, provider, handle, request, model=model, step_price=step_price)


def _follow(
    ctx: RunContext,
    provider: ImageProvider,
    handle: Handle,
    request: ImageRequest,
    *,
    model: str,
    step_price: int,
) -> Mapping[str, Any]:
    settings, total = ctx.services.settings, request.steps
    steps_done = 0
    last_position: int | None = -1  # no queued event yet (a provider may give no position: None)
    while not ctx.should_stop():
        try:
            status = _call(ctx, "poll", lambda: provider.poll(handle, settings), tries=POLL_FAILURES)
        except Stopped:
            break
        if status.state == "ready":
            return _ready(ctx, provider, handle, status, model=model, total=total, quote=total * step_price)
        if status.state == "queued":
            if status.queue_position != last_position or status.eta_s is not None:
                ctx.progress("queued", 0, total, status.eta_s, queue_position=status.queue_position)
                last_position = status.queue_position
        elif status.state == "running":
            steps_done = _steps_seen(status, total, steps_done)
            ctx.book(steps_done * step_price)
            preview = _inline(status.preview) if status.preview else None
            ctx.progress("generating", steps_done, total, status.eta_s, **_preview_url(preview))
        else:
            raise _ended_badly(ctx, status)
        _wait(ctx, settings.IMAGE_POLL_INTERVAL_S if status.next_poll_s is None else status.next_poll_s)
    return _stopped(ctx, provider, handle, steps_done, step_price)
