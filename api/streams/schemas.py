"""OpenAPI of the Server-Sent Event streams: each event, where a stream resumes, how it refuses."""

from __future__ import annotations

import re
from typing import Any

from api.errors import PROBLEM_JSON
from api.money import credits_pattern
from orchestration.jobs.progress import EVENT_TYPES


def _at_most(limit: int) -> str:
    """A regular expression of the decimal numbers from 0 to `limit` (leading zeros allowed)."""
    digits = str(limit)
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"]
    lower = [
        digits[:index]
        + (f"[0-{int(digit) - 1}]" if digit > "1" else "0")
        + f"[0-9]{{{len(digits) - index - 1}}}"
        for index, digit in enumerate(digits[:-1])
        if digit > "0"
    ]
    last = [digits[:-1] + f"[0-{digits[-1]}]"]
    return "(" + "|".join(shorter + lower + last) + ")"


# A Redis stream entry id is two unsigned 64-bit integers; Redis refuses anything larger mid-stream.
U64 = _at_most(2**64 - 1)
ENTRY_ID_PATTERN = f"^{U64}-{U64}$"
ENTRY_ID = re.compile(ENTRY_ID_PATTERN)

PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_CREDITS = {"type": "string", "pattern": credits_pattern()}
_OBJECT_OR_NULL = {"type": ["object", "null"]}
JOB_EVENT = {
    "type": "object",
    "required": ["type", "job_id", "at", "credits_held", "credits_spent"],
    "properties": {
        "type": {"enum": sorted(EVENT_TYPES)},
        "job_id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "credits_held": _CREDITS,
        "credits_spent": _CREDITS,
        "stage": {"type": "string"},
        "step": {"type": "integer"},
        "total": {"type": "integer"},
        "percent": {"type": ["number", "null"]},
        "eta_s": {"type": ["number", "null"]},
        "queue_position": {"type": "integer"},
        "text": {"type": "string", "description": "token: a chat text delta"},
        "status": {"type": "string"},
        "result": _OBJECT_OR_NULL,
        "error": _OBJECT_OR_NULL,
    },
}
USER_EVENT = {
    "type": "object",
    "required": ["type", "at"],
    "properties": {
        "type": {"type": "string", "description": "balance, or a notification (low_balance, payment, ...)"},
        "user_id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "posted": _CREDITS,
        "held": _CREDITS,
        "available": _CREDITS,
    },
}


def stream_content(data: dict[str, Any], events: list[str] | None = None) -> dict[str, Any]:
    """The text/event-stream media type: each event's `event` name, `id` (resume with it) and JSON `data`."""
    event_name: dict[str, Any] = {"type": "string"}
    if events:
        event_name["enum"] = events
    return {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": event_name,
                    "id": {"type": "string", "pattern": ENTRY_ID_PATTERN},
                    "retry": {"type": "integer"},
                    "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
                },
            }
        }
    }


def stream_parameters(*, allow_now: bool) -> list[dict[str, Any]]:
    """Where a stream resumes: the Last-Event-ID header (EventSource sends it) or `last_event_id`."""
    # Empty is the same as not sent (HTTP stacks drop empty headers).
    now = "\\$|" if allow_now else ""
    pattern = f"^(|{now}{U64}-{U64})$"
    described = "an `id:` this stream sent (e.g. 1700000000000-0)" + ("; `$`: from now" if allow_now else "")
    schema = {"type": "string", "pattern": pattern}
    return [
        {"in": "header", "name": "Last-Event-ID", "required": False, "schema": schema,
         "description": f"Resume after this event: {described}. EventSource sends it when it reconnects."},
        {"in": "query", "name": "last_event_id", "required": False, "schema": schema,
         "description": "Like Last-Event-ID, for clients that can't set headers (the header wins)."},
    ]


def stream_doc(description: str, data: dict[str, Any], *, allow_now: bool, events: list[str] | None = None
               ) -> dict[str, Any]:
    """`blp.doc` arguments of an SSE operation: its parameters, the stream, the refusals."""
    return {
        "parameters": stream_parameters(allow_now=allow_now),
        "responses": {
            200: {"description": description, "content": stream_content(data, events)},
            400: {"description": "Last-Event-ID is not an id of this stream", "content": PROBLEM_CONTENT},
            429: {
                "description": "The caller holds SSE_MAX_STREAMS_PER_USER open streams already",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                "content": PROBLEM_CONTENT,
            },
        },
    }
