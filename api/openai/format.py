"""OpenAI's wire format for a creditflow job: chunks of a streamed reply, a whole completion, errors.

Framework-free: the Flask views (api/openai/routes.py) and the async stream front (api/asgi.py) both turn
a `completion` job's events into these bodies. Usage carries the charge in credits as an extension
field, `cost` (a decimal string, like every creditflow amount), as OpenRouter's `usage.cost` does.
"""

from __future__ import annotations

import json
from typing import Any

# OpenAI's finish reasons, and ours in its words: a reply our time limit cut is `length` (a limit cut it,
# as max_tokens would). A canceled reply has no finish reason at OpenAI (a request ends when its client
# goes; the Responses API calls it `cancelled`): it is never made to look finished, and is answered as
# an error instead (see CANCELED).
FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter", "time_limit": "length"}
CANCELED_REASONS = ("canceled", "interrupted", "lost")
CANCELED = "The completion was canceled before it finished; it was charged for the text it delivered."
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def completion_id(job_id: str) -> str:
    """The OpenAI id of a completion: the job's id, so its job, events and ledger entry can be found."""
    return f"chatcmpl-{job_id}"


def finish_reason(reason: str | None) -> str:
    """Our finish reason as OpenAI clients know them (a limit that cut the reply reads as `length`)."""
    return FINISH.get(reason or "stop", "length")


def was_canceled(reason: str | None) -> bool:
    """Whether a reply ended by a cancel (answered as an error, never as a finish reason)."""
    return reason in CANCELED_REASONS


def usage(result: dict[str, Any], charged: str) -> dict[str, Any]:
    """OpenAI's usage block, with the charge in credits."""
    counted = result.get("usage") or {}
    prompt, completion = int(counted.get("input_tokens", 0)), int(counted.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": charged,
    }


def chunk(job_id: str, created: int, model: str, *, delta: dict[str, Any], finish: str | None = None) -> str:
    """One `data:` line of a streamed reply."""
    body = {
        "id": completion_id(job_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"


def usage_chunk(job_id: str, created: int, model: str, block: dict[str, Any]) -> str:
    """The last chunk when the client asked for `stream_options.include_usage`."""
    body = {
        "id": completion_id(job_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": block,
    }
    return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"


DONE = "data: [DONE]\n\n"


def completion(job_id: str, created: int, model: str, result: dict[str, Any], charged: str) -> dict[str, Any]:
    """A whole `chat.completion` body from a finished job's result."""
    message = {"role": "assistant", "content": result.get("reply", "")}
    choice = {"index": 0, "message": message, "finish_reason": finish_reason(result.get("finish_reason"))}
    return {
        "id": completion_id(job_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(result, charged),
    }


def error(
    status: int, message: str, *, code: str | None = None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    """OpenAI's error body `{"error": {message, type, code, param}}` (extra fields beside them)."""
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "api_error"),
            "code": code,
            "param": param,
            **extra,
        }
    }


def stream_error(status: int, message: str, *, code: str | None = None) -> str:
    """A failure after the stream started: an error event, as OpenAI sends one mid-stream."""
    return "data: " + json.dumps(error(status, message, code=code), separators=(",", ":")) + "\n\n"
