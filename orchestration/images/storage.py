"""Where images are kept: a local directory by default, an S3-compatible bucket through settings.

Keys are opaque (`<user>/<image id>.<ext>`); the database row (orchestration/images/records.py) says
which key holds an image and its thumbnail, so a reader never lists the store."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

from runtime.settings import Settings


class ImageStore(Protocol):
    """A place for image bytes."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key` (replacing what was there)."""

    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, None when there are none."""

    def delete(self, key: str) -> None:
        """Remove `key` (nothing if it is absent)."""


class DirectoryStore:
    """Files under a directory; a write lands whole or not at all (written aside, then renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} leaves the image directory")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write the file beside its place, then rename it there."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        aside.write_bytes(data)
        aside.replace(path)

    def get(self, key: str) -> bytes | None:
        """The file's bytes, None if it is gone."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        self._path(key).unlink(missing_ok=True)


class BucketStore:
    """Objects in an S3-compatible bucket (AWS, MinIO, R2, ...) through boto3."""

    def __init__(self, settings: Settings) -> None:
        import boto3

        self.bucket = settings.IMAGE_S3_BUCKET
        self.prefix = settings.IMAGE_S3_PREFIX
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.IMAGE_S3_ENDPOINT_URL or None,
            region_name=settings.IMAGE_S3_REGION,
            aws_access_key_id=settings.IMAGE_S3_ACCESS_KEY_ID or None,
            aws_secret_access_key=settings.IMAGE_S3_SECRET_ACCESS_KEY or None,
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload the object."""
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes | None:
        """Download the object, None if there is none."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            return None
        body: bytes = answer["Body"].read()
        return body

    def delete(self, key: str) -> None:
        """Delete the object (S3 answers the same whether it existed)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


_stores: dict[tuple[int, int], ImageStore] = {}
_lock = threading.Lock()


def image_store(settings: Settings) -> ImageStore:
    """The store the settings name, one per process and settings (boto3 clients are not fork-safe)."""
    key = (os.getpid(), id(settings))
    with _lock:
        if key not in _stores:
            if settings.IMAGE_STORAGE == "s3":
                _stores[key] = BucketStore(settings)
            else:
                root = (
                    Path(settings.IMAGE_STORAGE_DIR)
                    if settings.IMAGE_STORAGE_DIR
                    else settings.VAR_DIR / "images"
                )
                _stores[key] = DirectoryStore(root)
        return _stores[key]
