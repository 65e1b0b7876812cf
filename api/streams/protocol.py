"""How a Flask view hands a long-lived answer to the async front (api/asgi.py).

Flask decides everything about a request (authentication, ownership, validation, limits, errors) and,
for an answer that streams, returns a *stream descriptor*: an empty 200 whose internal header says
what to stream. The front takes the header off (a client never sees it; a client's own header of that
name is a request header and means nothing) and serves the stream as a coroutine, so an open stream
holds no thread. Without the front (WSGI only, test clients) views stream with generators instead.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g, request

STREAM_HEADER = "X-Creditflow-Stream"
FRONT_ENVIRON_KEY = "creditflow.async_front"


def async_front() -> bool:
    """Whether this request came through the async front (which serves stream descriptors)."""
    return bool(request.environ.get(FRONT_ENVIRON_KEY))


def stream_descriptor(kind: str, **fields: Any) -> Response:
    """An answer the front replaces with the stream `kind` (fields: what that stream needs).

    A stream opened with an API key names the key: the front ends the stream once it is revoked."""
    auth = g.get("auth")
    if auth is not None and auth.api_key_id:
        fields["api_key"] = auth.api_key_id
    response = Response(status=200)
    response.headers[STREAM_HEADER] = json.dumps({"kind": kind, **fields}, separators=(",", ":"))
    return response
