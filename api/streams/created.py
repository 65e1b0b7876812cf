"""One request to the first token: a job-creating POST sent with `Accept: text/event-stream` answers
the job's event stream in the same response, its `queued` event carrying the 202 body's fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from flask import current_app, request

from api.auth.context import current_user_id
from api.idempotency import REPLAYED_HEADER
from api.services import services
from api.streams.events import job_event_stream
from orchestration.jobs import create as job_cases

F = TypeVar("F", bound=Callable[..., Any])
EVENT_STREAM = "text/event-stream"


def wants_stream() -> bool:
    """Whether the client asked for the event stream rather than the 202 body."""
    # On a tie (`*/*`, no Accept) JSON wins: the 202 body stays what every existing client gets.
    return request.accept_mimetypes.best_match(["application/json", EVENT_STREAM]) == EVENT_STREAM


def streams_when_asked(func: F) -> F:
    """Answer a created (or replayed) job as its event stream when asked; put it above `idempotent`.

    The idempotency record keeps the ordinary 202 answer: a replay is that answer, turned into the
    same stream again here, so the same key never starts a second job whichever way it is asked."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        response = current_app.make_response(func(*args, **kwargs))
        if response.status_code != 202 or not wants_stream():
            return response
        accepted = json.loads(response.get_data(as_text=True))
        headers = {"X-Creditflow-Job-Id": accepted["job_id"]}
        if REPLAYED_HEADER in response.headers:
            # A replay's job may have ended since: its row says how the stream ends.
            headers[REPLAYED_HEADER] = response.headers[REPLAYED_HEADER]
            job: Any = job_cases.get_job(services(), user_id=current_user_id(), job_id=accepted["job_id"])
        else:
            # Just created by this request, as the 202 body says: no second read of the row (the stream
            # itself follows whatever the job does next).
            job = SimpleNamespace(id=accepted["job_id"], user_id=current_user_id(), status=accepted["status"])
        return job_event_stream(job, queued=accepted, headers=headers)

    return cast(F, wrapper)
