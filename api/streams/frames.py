"""SSE frames of progress events, shared by the generators (api/streams/events.py) and the async front."""

from __future__ import annotations

import json
from typing import Any

from orchestration.jobs import progress

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
RETRY = "retry: 2000\n\n"  # a stream's first line: a client reconnects 2 s after a cut
FINAL_OF_STATUS = {"succeeded": "result", "failed": "failed", "canceled": "canceled"}


def frame(entry_id: str | None, event: dict[str, Any]) -> str:
    """One SSE frame; an event made from the job row has no stream id (Last-Event-ID stays as it was)."""
    data = json.dumps(event, separators=(",", ":"))
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event['type']}\ndata: {data}\n\n"


def with_queued(entries: list[tuple[str, dict[str, Any]]], queued: dict[str, Any] | None) -> list[Any]:
    """The entries with the answer of the POST that created the job merged into its `queued` event."""
    if not queued:
        return entries
    return [(entry, {**event, **queued}) if event.get("type") == "queued" else (entry, event)
            for entry, event in entries]


def final_event(job: Any) -> dict[str, Any] | None:
    """The final event of a finished job, made from its row (None while it is open)."""
    kind = FINAL_OF_STATUS.get(job.status)
    if kind is None:
        return None
    return progress.job_event(
        job.id,
        kind,
        held=job.cost_held,
        spent=job.cost_charged or 0,
        status=job.status,
        result=job.result,
        error=job.error,
    )
