"""Where images are kept: an S3-compatible bucket through boto3 (moto's server on 127.0.0.1, the real S3
wire protocol), the same way as the local directory; what is not an image is refused before it is kept;
retention deletes the bytes and the row."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from PIL import Image

from orchestration.bootstrap import bootstrap
from orchestration.images import records, retention
from orchestration.images.records import UnusableImage
from orchestration.images.storage import BucketStore, DirectoryStore, image_store
from orchestration.services import Services
from runtime.settings import load_settings
from tests.support.s3_server import s3_server

BUCKET = "creditflow-images"


@pytest.fixture(scope="module")
def s3_services(image_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services whose images go to a bucket of a moto server."""
    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        credentials = {"IMAGE_S3_ACCESS_KEY_ID": "test", "IMAGE_S3_SECRET_ACCESS_KEY": "test"}
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ).create_bucket(Bucket=BUCKET)
        settings = load_settings(
            DATABASE_URL=image_env["DATABASE_URL"],
            REDIS_URL=image_env["REDIS_URL"],
            IMAGE_STORAGE="s3",
            IMAGE_S3_BUCKET=BUCKET,
            IMAGE_S3_ENDPOINT_URL=endpoint,
            IMAGE_RETENTION_DAYS=1,
            **credentials,
        )
        built = bootstrap(settings)
        yield built
        built.close()


def png(size: tuple[int, int] = (320, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def test_images_kept_in_a_bucket_served_back_and_purged_after_retention(s3_services: Services) -> None:
    store = image_store(s3_services.settings)
    assert isinstance(store, BucketStore)
    job_id, user = uuid.uuid4().hex, f"u-{uuid.uuid4().hex[:8]}"
    data = png()
    row = records.keep_image(s3_services, job_id=job_id, user_id=user, model="sketch-local", data=data)
    assert (row.content_type, row.width, row.height, row.size_bytes) == ("image/png", 320, 200, len(data))
    head = store.client.head_object(Bucket=BUCKET, Key=f"images/{row.storage_key}")
    assert head["ContentType"] == "image/png"
    assert store.get(row.storage_key) == data
    thumb = Image.open(io.BytesIO(store.get(row.thumb_key) or b""))
    assert (thumb.format, max(thumb.size)) == ("WEBP", 256)
    # The same job's result seen again (a redelivery) is the same image, stored once.
    again = records.keep_image(
        s3_services, job_id=job_id, user_id=user, model="sketch-local", data=png((64, 64))
    )
    assert again.id == row.id
    listed = store.client.list_objects_v2(Bucket=BUCKET, Prefix=f"images/{user}/")["KeyCount"]
    assert listed == 2
    assert records.image_of(s3_services, user_id=user, image_id=row.id) is not None
    assert records.image_of(s3_services, user_id="someone-else", image_id=row.id) is None

    assert retention.purge_expired(s3_services, now=datetime.now(UTC) + timedelta(hours=23)) == 0
    assert retention.purge_expired(s3_services, now=datetime.now(UTC) + timedelta(days=1, minutes=1)) >= 1
    assert store.get(row.storage_key) is None
    assert store.get(row.thumb_key) is None
    assert records.image_of(s3_services, user_id=user, image_id=row.id) is None


def test_what_is_not_a_usable_image_is_never_kept(s3_services: Services) -> None:
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # 400 megapixels in a few kilobytes
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    for data in (b"<html>expired</html>", png()[:200], bomb.getvalue(), gif.getvalue()):
        with pytest.raises(UnusableImage):
            records.keep_image(s3_services, job_id=uuid.uuid4().hex, user_id="u", model="m", data=data)


def test_the_directory_store_keeps_keys_inside_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "images")
    store.put("u/a.png", b"x", "image/png")
    assert store.get("u/a.png") == b"x"
    assert store.get("u/missing.png") is None
    with pytest.raises(ValueError, match="leaves"):
        store.put("../escape.png", b"x", "image/png")
    store.delete("u/a.png")
    assert store.get("u/a.png") is None
