"""The OpenAI-compatible API under `/openai/v1`: any OpenAI SDK or chat front-end spends credits.

`POST /chat/completions` is a creditflow `completion` job (orchestration/replies/completions.py) behind
OpenAI's wire format; `GET /models` lists the catalog's chat models. Authentication, rate limits,
holds, API-key daily limits and Idempotency-Key are creditflow's; every error is in OpenAI's shape
(`{"error": {message, type, code, param}}`) with the status codes OpenAI clients handle. A streamed reply
is served by the async front (api/asgi.py) when the API runs on it, else by a generator here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Flask, Response, request
from marshmallow import ValidationError

from api.auth.context import authenticate
from api.dry_run import dry_run_requested
from api.errors import PROBLEM_JSON
from api.openai.format import error
from api.openai.schemas import STREAM_OPTIONS_WITHOUT_STREAM, CompletionRequestSchema, unsupported_parameter
from api.openai.streams import completion_answer
from api.ratelimit import rate_limit
from api.services import services
from api.streams.events import acquire_stream_slot, release_stream_slot
from api.streams.protocol import async_front
from assistant.selection import ModelUnavailable
from orchestration.jobs.models import catalog_models
from orchestration.jobs.stream_slots import Slot
from orchestration.replies.completions import StartCompletion, start_completion
from orchestration.tables import FINAL_STATUSES

blp = Blueprint("openai", __name__, url_prefix="/openai/v1")
JOB_HEADER = "X-Creditflow-Job-Id"
_REQUEST = CompletionRequestSchema()


def openai_error(status: int, message: str, **fields: Any) -> Response:
    """An error answer in OpenAI's shape."""
    return Response(json.dumps(error(status, message, **fields)), status=status, mimetype="application/json")


@blp.get("/models")
def list_models() -> Response:
    """The catalog's chat models that can answer here, as OpenAI's model list."""
    authenticate()
    items = [
        {"id": spec.id, "object": "model", "created": 0, "owned_by": spec.provider}
        for spec in catalog_models(services())
        if spec.kind == "chat" and spec.available and spec.priced
    ]
    return Response(json.dumps({"object": "list", "data": items}), mimetype="application/json")


@blp.post("/chat/completions")
@rate_limit("jobs")
def chat_completions() -> Response:
    """Answer the conversation in `messages`; streamed (`stream: true`) or whole."""
    auth = authenticate()
    body = _request_body()
    if isinstance(body, Response):
        return body
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200 and key.isprintable() and key.isascii()):
        return openai_error(400, "Idempotency-Key must be 1 to 200 printable ASCII characters.")
    command = StartCompletion(
        user_id=auth.user_id,
        model=body["model"],
        messages=body["messages"],
        max_tokens=body.get("max_tokens"),
        options={name: body[name] for name in ("temperature", "top_p", "stop") if body.get(name) is not None},
        end_user=body.get("user"),
        idempotency_key=key,
        api_key_id=auth.api_key_id,
        daily_credit_limit=auth.daily_credit_limit,
        sdk_retry=not body.get("stream") and _retry_count() > 0,
        dry_run=dry_run_requested(),
    )
    # The answer holds a connection on the async front, streamed or not: it counts in the user's cap
    # of open streams (429 and Retry-After when full, which OpenAI SDKs retry), taken before any hold.
    slot = acquire_stream_slot(auth.user_id) if async_front() and not command.dry_run else None
    try:
        row, _created = start_completion(services(), command)
    except ModelUnavailable as exc:
        _give_back(slot)
        return openai_error(404, str(exc), code="model_not_found", param="model")
    except BaseException:
        _give_back(slot)
        raise
    if row.status in FINAL_STATUSES:  # a replay of a finished job is answered from its row at once
        _give_back(slot)
        slot = None
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    answer = completion_answer(
        row, created=int(time.time()), stream=bool(body.get("stream")), include_usage=include_usage, slot=slot
    )
    answer.headers[JOB_HEADER] = row.id
    return answer


def _request_body() -> dict[str, Any] | Response:
    """The validated body, or the 400 that refuses it (OpenAI's shape, and its words where it has them)."""
    raw = _json_body()
    if not isinstance(raw, dict):
        return openai_error(400, "The body must be a JSON object in UTF-8.", code="invalid_json")
    refused = unsupported_parameter(raw)
    if refused is not None:
        return openai_error(400, refused[1], code="unsupported_parameter", param=refused[0])
    try:
        body: dict[str, Any] = _REQUEST.load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"body": exc.messages}
        field = next(iter(messages), None)
        if messages.get("stream_options") == [STREAM_OPTIONS_WITHOUT_STREAM]:
            return openai_error(400, STREAM_OPTIONS_WITHOUT_STREAM, param="stream_options")
        return openai_error(400, f"Invalid request: {messages}", code="invalid_value", param=field)
    return body


def _json_body() -> Any:
    """The body as JSON, None if it isn't: strict UTF-8 (raw surrogate bytes such as ED A0 80 are not
    UTF-8, where Python's json would let them through as lone surrogates that nothing can store)."""
    if not request.is_json:
        return None
    try:
        return json.loads(request.get_data(cache=True).decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        return None


def _retry_count() -> int:
    """Which automatic retry of the SDK this request is (`x-stainless-retry-count`, sent by the OpenAI
    SDKs; 0 for a first attempt or another client)."""
    value = request.headers.get("x-stainless-retry-count", "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def _give_back(slot: Slot | None) -> None:
    if slot is not None:
        release_stream_slot(slot)


def init_openai_api(app: Flask) -> None:
    """Register the blueprint, and answer every error under /openai in OpenAI's shape."""
    app.register_blueprint(blp)

    @app.after_request
    def _openai_errors(response: Response) -> Response:
        if not request.path.startswith("/openai/") or response.mimetype != PROBLEM_JSON:
            return response
        problem = json.loads(response.get_data())
        status = int(problem.get("status") or response.status_code)
        status = 400 if status == 422 else status  # OpenAI clients expect 400 for a bad request
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1] or None
        extra = {name: problem[name] for name in ("available", "required", "limit") if name in problem}
        body = error(status, str(problem.get("detail") or problem.get("title") or ""), code=kind, **extra)
        converted = Response(json.dumps(body), status=status, mimetype="application/json")
        for name in ("Retry-After", "WWW-Authenticate"):
            if name in response.headers:
                converted.headers[name] = response.headers[name]
        return converted
