"""The image generation settings (providers, storage, retention): part of `runtime.settings.Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

IMAGE_PROVIDER_NAMES = ("sketch", "bfl", "fal", "replicate", "openai")


class ImageSettings(BaseSettings):
    """Image providers (assistant/providers/images), storage and polling (orchestration/images)."""

    # Which provider serves a catalog image model, over the catalog's own choice: "flux-dev=fal,...".
    IMAGE_PROVIDERS: str = ""
    IMAGE_POLL_INTERVAL_S: float = Field(1.0, gt=0, le=60)
    IMAGE_HTTP_TIMEOUT_S: float = Field(30.0, gt=0, le=600)
    # Where generated images are kept: a directory (default VAR_DIR/images) or an S3-compatible bucket.
    IMAGE_STORAGE: Literal["local", "s3"] = "local"
    IMAGE_STORAGE_DIR: str = ""
    IMAGE_S3_BUCKET: str = ""
    IMAGE_S3_PREFIX: str = "images/"
    IMAGE_S3_ENDPOINT_URL: str = ""
    IMAGE_S3_REGION: str = "us-east-1"
    IMAGE_S3_ACCESS_KEY_ID: str = ""
    IMAGE_S3_SECRET_ACCESS_KEY: str = ""
    # Images older than this are deleted by the maintenance sweep; 0 keeps them for ever.
    IMAGE_RETENTION_DAYS: int = Field(30, ge=0, le=36_500)
    # Remote providers: each is off until its key is set.
    BFL_API_KEY: str = ""
    BFL_API_BASE: str = "https://api.bfl.ai"
    FAL_KEY: str = ""
    FAL_QUEUE_BASE: str = "https://queue.fal.run"
    REPLICATE_API_TOKEN: str = ""
    REPLICATE_API_BASE: str = "https://api.replicate.com"
    IMAGES_OPENAI_BASE_URL: str = ""
    IMAGES_OPENAI_API_KEY: str = ""
    # Partial images per OpenAI generation (streamed, shown as previews); 0: one unstreamed call.
    IMAGES_OPENAI_PARTIAL_IMAGES: int = Field(0, ge=0, le=3)

    @field_validator("IMAGE_PROVIDERS")
    @classmethod
    def _provider_map(cls, value: str) -> str:
        for pair in filter(None, (part.strip() for part in value.split(","))):
            model, _, provider = pair.partition("=")
            if not model.strip() or provider.strip() not in IMAGE_PROVIDER_NAMES:
                raise ValueError(f"expected model=provider pairs, provider one of {IMAGE_PROVIDER_NAMES}")
        return value

    def image_provider_of(self, model: str, default: str) -> str:
        """The provider serving `model`: IMAGE_PROVIDERS' choice, else the catalog's (`default`)."""
        for pair in filter(None, (part.strip() for part in self.IMAGE_PROVIDERS.split(","))):
            name, _, provider = pair.partition("=")
            if name.strip() == model:
                return provider.strip()
        return default
