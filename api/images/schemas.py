"""Marshmallow schemas of image generation: the request, the cost preview, the image query."""

from __future__ import annotations

import marshmallow as ma

from api.fields import JsonInteger
from api.money import Credits


class ImageGenerationSchema(ma.Schema):
    """One image from a prompt; the model's limits (GET /api/v1/models) are checked whole."""

    prompt = ma.fields.String(required=True, validate=ma.validate.Length(1, 4000))
    model = ma.fields.String(
        required=True,
        validate=ma.validate.Length(1, 100),
        metadata={"description": "flux-schnell, flux-dev, or sketch-local (offline, not FLUX)"},
    )
    width = JsonInteger(required=True, validate=ma.validate.Range(1, 100_000))
    height = JsonInteger(required=True, validate=ma.validate.Range(1, 100_000))
    steps = JsonInteger(load_default=None, allow_none=True, validate=ma.validate.Range(0, 10_000))
    seed = JsonInteger(load_default=None, allow_none=True, metadata={"description": "0 to 2^32-1"})
    guidance = ma.fields.Float(load_default=None, allow_none=True, allow_nan=False)


class DryRunArgsSchema(ma.Schema):
    """`?dry_run=true`: the same checks and quote, nothing held or created."""

    dry_run = ma.fields.Boolean(load_default=False)


class ImageArgsSchema(ma.Schema):
    """`?size=thumb` for a small WebP of the image."""

    size = ma.fields.String(load_default="full", validate=ma.validate.OneOf(("full", "thumb")))


class PreviewCostSchema(ma.Schema):
    """What the job would be quoted and hold (nothing is held by a preview)."""

    quoted = Credits(required=True)
    held = Credits(required=True)


class CostPreviewSchema(ma.Schema):
    """The answer of a dry run."""

    cost = ma.fields.Nested(PreviewCostSchema, required=True)
    price_version = ma.fields.String(required=True)
    details = ma.fields.Dict(required=True)
