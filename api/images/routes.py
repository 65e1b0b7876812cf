"""Image generation: start a job (or preview its cost), and serve the images to their owners only."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.auth.context import auth_required, current_auth, current_user_id
from api.errors import SHORT_BALANCE, problem
from api.idempotency import PARAMETER_DOC, current_idempotency_key, idempotent
from api.images.schemas import CostPreviewSchema, DryRunArgsSchema, ImageArgsSchema, ImageGenerationSchema
from api.jobs.schemas import JobAcceptedSchema, accepted_view
from api.ratelimit import rate_limit
from api.services import services
from orchestration.images.generation import InvalidImageRequest, StartImage, quote_image, start_image
from orchestration.images.records import image_of
from orchestration.images.storage import image_store

blp = Blueprint("images", __name__, url_prefix="/api/v1", description="Image generation and the images made")
# An image id names bytes that never change: browsers and proxies may keep it, but only for its owner.
CACHE_CONTROL = "private, max-age=31536000, immutable"


@blp.app_errorhandler(InvalidImageRequest)
def _invalid(exc: InvalidImageRequest) -> Response:
    return problem(422, str(exc), kind="invalid-image-request", errors=exc.errors)


@blp.route("/images/generations")
class ImageGenerations(MethodView):
    """Start an image generation job."""

    @auth_required
    @rate_limit("jobs")
    @idempotent
    @blp.arguments(DryRunArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(ImageGenerationSchema())  # an instance: from a class, webargs builds one per request
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(200, schema=CostPreviewSchema, description="`?dry_run=true`: the cost, nothing held")
    @blp.alt_response(402, description="Not enough credits for the quote", **SHORT_BALANCE)
    @blp.alt_response(422, description="Outside the model's limits, or an unknown or unavailable model")
    @blp.doc(parameters=[PARAMETER_DOC])
    def post(self, body: dict[str, Any], dry_run: bool) -> Any:
        """Hold the image's exact price and start the job (kind `image`); follow it as a job."""
        auth = current_auth()
        command = StartImage(
            user_id=current_user_id(),
            prompt=body["prompt"],
            model=body["model"],
            width=body["width"],
            height=body["height"],
            steps=body.get("steps"),
            seed=body.get("seed"),
            guidance=body.get("guidance"),
            idempotency_key=current_idempotency_key(),
            api_key_id=auth.api_key_id,
            daily_credit_limit=auth.daily_credit_limit,
        )
        if dry_run:
            quote = quote_image(services(), command)
            preview = {
                "cost": {"quoted": quote.amount, "held": 0},
                "price_version": quote.price_version,
                "details": dict(quote.details),
            }
            # A Response of its own: the view's declared schema is the 202's.
            return Response(
                json.dumps(CostPreviewSchema().dump(preview)), status=200, mimetype="application/json"
            )
        return accepted_view(start_image(services(), command))


def _own_image(image_id: str) -> Any:
    """The caller's image row, or 404 (someone else's is as unknown as a missing one)."""
    row = image_of(services(), user_id=current_user_id(), image_id=image_id)
    if row is None:
        abort(404, message="No such image.")
    return row


# Ids are 32 hex characters: `/images/generations` is never read as an image id (its Allow header).
@blp.route("/images/<string(length=32):image_id>")
class ImageById(MethodView):
    """An image made by one of the caller's jobs."""

    @auth_required
    @blp.arguments(ImageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, description="The image (image/png, image/webp or image/jpeg); `?size=thumb`: WebP")
    @blp.alt_response(404, description="No such image of the caller (someone else's is as unknown)")
    def get(self, image_id: str, size: str) -> Response:
        """The image's bytes, owner only, with its content type and cache headers."""
        row = _own_image(image_id)
        thumb = size == "thumb"
        etag = f"{row.id}-{size}"
        if request.if_none_match.contains(etag):
            return Response(status=304, headers={"ETag": f'"{etag}"', "Cache-Control": CACHE_CONTROL})
        data = image_store(services().settings).get(row.thumb_key if thumb else row.storage_key)
        if data is None:
            abort(404, message="The image is no longer stored.")
        answer = Response(data, mimetype="image/webp" if thumb else row.content_type)
        answer.headers["Cache-Control"] = CACHE_CONTROL
        answer.headers["ETag"] = f'"{etag}"'
        answer.headers["X-Content-Type-Options"] = "nosniff"
        answer.headers["Vary"] = "Authorization"
        return answer
