"""A vision job's image from what the user sent: base64 bytes, or a URL fetched only through the outbound
guard (runtime/outbound.py); then decoded, checked and downscaled (assistant/imaging.py)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from assistant.imaging import MEDIA_TYPES, ImageRefused, PreparedImage, prepare
from runtime.outbound import OutboundPolicy, OutboundRefused, guarded_request
from runtime.settings import Settings


class ImageInputError(ValueError):
    """The image can't be used: `reason` is a machine code (a guard refusal, a format, a size)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def fetch_policy(settings: Settings) -> OutboundPolicy:
    """What an image URL may answer: an image type, VISION_MAX_BYTES, within VISION_FETCH_TIMEOUT_S."""
    return OutboundPolicy(
        max_bytes=settings.VISION_MAX_BYTES,
        timeout_s=settings.VISION_FETCH_TIMEOUT_S,
        max_redirects=3,
        content_types=MEDIA_TYPES,
        allow_loopback=settings.OUTBOUND_ALLOW_LOOPBACK,
    )


def image_bytes(settings: Settings, *, image_url: str | None, image_base64: str | None) -> bytes:
    """The raw bytes the user pointed at; ImageInputError for a refused URL, bad base64 or size."""
    if image_base64 is not None:
        text = image_base64.split(",", 1)[1] if image_base64.startswith("data:") else image_base64
        if len(text) > settings.VISION_MAX_BYTES * 4 // 3 + 4:
            raise ImageInputError("too_large", f"the image is larger than {settings.VISION_MAX_BYTES} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageInputError("base64", "image_base64 is not valid base64") from None
        if len(data) > settings.VISION_MAX_BYTES:
            raise ImageInputError("too_large", f"the image is larger than {settings.VISION_MAX_BYTES} bytes")
        return data
    if image_url is None:
        raise ImageInputError("missing", "give image_url or image_base64")
    try:
        answer = guarded_request(
            "GET", image_url, policy=fetch_policy(settings), headers={"Accept": "image/*"}
        )
    except OutboundRefused as exc:
        raise ImageInputError(f"url_{exc.reason}", f"image_url refused: {exc.message}") from None
    if answer.status != 200:
        raise ImageInputError("url_status", f"image_url answered HTTP {answer.status}")
    return answer.body


def checked_image(
    settings: Settings, rule: Mapping[str, Any], *, image_url: str | None, image_base64: str | None
) -> PreparedImage:
    """The image decoded, checked and downscaled to the model's `rule`; ImageInputError otherwise."""
    data = image_bytes(settings, image_url=image_url, image_base64=image_base64)
    try:
        return prepare(data, rule, max_pixels=settings.VISION_MAX_PIXELS)
    except ImageRefused as exc:
        raise ImageInputError(exc.reason, str(exc)) from None
