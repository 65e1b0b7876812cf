"""`/api/v1/webhooks` (thin: the use cases are orchestration/notify). A user's token only: the credential
policy (api/auth/policy.py) closes these routes to API keys."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_smorest import Api, Blueprint
from werkzeug.routing import BaseConverter

from api.auth import auth_required, current_auth
from api.errors import problem
from api.notify.schemas import (
    CreatedWebhookSchema,
    DeliveryArgsSchema,
    DeliveryPageSchema,
    DeliverySchema,
    NewWebhookSchema,
    RotatedSchema,
    TestSentSchema,
    WebhookListSchema,
    WebhookSchema,
)
from api.pagination import decode_time_cursor, page, time_position
from api.services import services
from orchestration.notify import endpoints, history
from orchestration.notify.errors import WebhookRefused

ENDPOINT_ID = "whe_[0-9a-f]{24}"  # orchestration/notify/outbox.new_id("whe")
blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks", description="Webhooks")


class EndpointId(BaseConverter):
    """A webhook endpoint id in a path (so `/webhooks/deliveries` is never taken for one)."""

    regex = ENDPOINT_ID


def register_webhooks(app: Flask, api: Api) -> None:
    """The endpoint-id converter (before the blueprint is registered) and webhook refusals as problem+json
    (503 while WEBHOOK_SECRET_KEY is not set)."""
    app.url_map.converters["endpoint_id"] = EndpointId
    api.register_converter(EndpointId, lambda _converter: {"type": "string", "pattern": f"^{ENDPOINT_ID}$"})

    @app.errorhandler(WebhookRefused)
    def _refused(exc: WebhookRefused) -> Response:
        return problem(exc.status, str(exc), kind=exc.kind)


@blp.route("", methods=["POST"])
@auth_required
@blp.arguments(NewWebhookSchema)
@blp.response(201, CreatedWebhookSchema)
def create(args: dict[str, Any]) -> dict[str, Any]:
    """Register an endpoint; the answer holds its signing secret, which cannot be shown again."""
    row, secret = endpoints.create(services(), user_id=current_auth().user_id, **args)
    return {**row._asdict(), "secret": secret}


@blp.route("", methods=["GET"])
@auth_required
@blp.response(200, WebhookListSchema)
def list_() -> dict[str, Any]:
    """The caller's endpoints."""
    return {"items": endpoints.list_endpoints(services(), user_id=current_auth().user_id)}


@blp.route("/<endpoint_id:endpoint_id>", methods=["DELETE"])
@auth_required
@blp.response(204)
def delete(endpoint_id: str) -> None:
    """Remove an endpoint; its pending deliveries are canceled. Someone else's is a 404."""
    endpoints.delete(services(), user_id=current_auth().user_id, endpoint_id=endpoint_id)


@blp.route("/<endpoint_id:endpoint_id>/rotate", methods=["POST"])
@auth_required
@blp.response(200, RotatedSchema)
def rotate(endpoint_id: str) -> dict[str, Any]:
    """A new signing secret (shown once); the old one keeps signing beside it for a day."""
    row, secret = endpoints.rotate(services(), user_id=current_auth().user_id, endpoint_id=endpoint_id)
    return {"id": row.id, "secret": secret, "previous_valid_until": row.previous_until}


@blp.route("/<endpoint_id:endpoint_id>/enable", methods=["POST"])
@auth_required
@blp.response(200, WebhookSchema)
def enable(endpoint_id: str) -> Any:
    """Turn a disabled endpoint back on."""
    return endpoints.enable(services(), user_id=current_auth().user_id, endpoint_id=endpoint_id)


@blp.route("/<endpoint_id:endpoint_id>/test", methods=["POST"])
@auth_required
@blp.response(202, TestSentSchema)
def test(endpoint_id: str) -> dict[str, Any]:
    """Queue a `webhook.test` delivery to this endpoint."""
    sent = endpoints.send_test(services(), user_id=current_auth().user_id, endpoint_id=endpoint_id)
    return {"notification_id": sent}


@blp.route("/deliveries", methods=["GET"])
@auth_required
@blp.arguments(DeliveryArgsSchema, location="query")
@blp.response(200, DeliveryPageSchema)
def deliveries(args: dict[str, Any]) -> dict[str, Any]:
    """The delivery log: the caller's deliveries, newest first (filter by endpoint or status)."""
    rows = history.list_deliveries(
        services(),
        user_id=current_auth().user_id,
        limit=args["limit"] + 1,
        before=decode_time_cursor(args["cursor"]),
        endpoint_id=args["endpoint_id"],
        status=args["status"],
    )
    return page(rows, limit=args["limit"], position=time_position)


@blp.route("/deliveries/<delivery_id>/replay", methods=["POST"])
@auth_required
@blp.response(202, DeliverySchema)
def replay(delivery_id: str) -> Any:
    """Send a delivery's notification again (same webhook-id, a new delivery in the log)."""
    return history.replay(services(), user_id=current_auth().user_id, delivery_id=delivery_id)
