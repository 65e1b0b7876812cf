"""Vision analyses: an image (by URL, fetched only through the outbound guard, or base64) and a prompt,
answered by a `vision` job (queue `interactive`, or `local` for the local analyser)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth.context import auth_required, current_auth, current_user_id
from api.dry_run import dry_run_requested, dry_runnable
from api.errors import SHORT_BALANCE, problem
from api.idempotency import PARAMETER_DOC, current_idempotency_key, idempotent
from api.jobs.schemas import JobAcceptedSchema, accepted_view
from api.ratelimit import rate_limit
from api.services import services
from api.streams.created import streams_when_asked
from orchestration.images.intake import ImageInputError
from orchestration.images.vision import StartAnalysis, start_analysis

blp = Blueprint("vision", __name__, url_prefix="/api/v1", description="Vision analyses of images")
MAX_URL = 2048


@blp.app_errorhandler(ImageInputError)
def _image_refused(exc: ImageInputError) -> Response:
    return problem(422, str(exc), kind="image-refused", reason=exc.reason)


class VisionAnalysisSchema(ma.Schema):
    """An image and what to ask about it; exactly one of `image_url` and `image_base64`."""

    prompt = ma.fields.String(required=True, validate=ma.validate.Length(1, 8000))
    image_url = ma.fields.String(
        load_default=None,
        allow_none=False,
        validate=ma.validate.Length(1, MAX_URL),
        metadata={"description": "http(s) URL of a public PNG, JPEG, WebP or GIF image (guarded fetch)"},
    )
    image_base64 = ma.fields.String(
        load_default=None,
        allow_none=False,
        validate=ma.validate.Length(min=4),
        metadata={"description": "the image's bytes in base64 (or a data: URL); bodies are at most 1 MiB"},
    )
    model = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(1, 100))
    max_tokens = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(1, 32_768))

    @ma.validates_schema
    def _one_image(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if (data.get("image_url") is None) == (data.get("image_base64") is None):
            raise ma.ValidationError("give exactly one of image_url and image_base64", "_schema")


def document_one_image(spec: Any) -> None:
    """State in the OpenAPI document what `_one_image` checks (marshmallow has no way to say it)."""
    schema = spec.components.schemas.get("VisionAnalysis")
    if schema is not None:
        schema["oneOf"] = [{"required": ["image_url"]}, {"required": ["image_base64"]}]


@blp.route("/vision/analyses")
class VisionAnalyses(MethodView):
    """Start a vision analysis."""

    @auth_required
    @rate_limit("jobs")
    @dry_runnable
    @streams_when_asked
    @idempotent
    @blp.arguments(VisionAnalysisSchema())  # an instance: from a class, webargs builds one per request
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(402, description="Not enough credits for the hold", **SHORT_BALANCE)
    @blp.alt_response(422, description="Unknown model, or an image refused (URL, format, size)")
    @blp.doc(parameters=[PARAMETER_DOC])
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check and downscale the image, quote its tokens, hold, and start the job (kind `vision`)."""
        command = StartAnalysis(
            user_id=current_user_id(),
            prompt=body["prompt"],
            image_url=body["image_url"],
            image_base64=body["image_base64"],
            model=body.get("model"),
            max_tokens=body.get("max_tokens"),
            idempotency_key=current_idempotency_key(),
            api_key_id=current_auth().api_key_id,
            daily_credit_limit=current_auth().daily_credit_limit,
            dry_run=dry_run_requested(),
        )
        return accepted_view(start_analysis(services(), command))
