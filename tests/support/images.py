"""Test images made on the spot: plain pictures with optional EXIF, and a decompression bomb."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

# GPT-4o's published image rule, as a catalog entry states it (capabilities.image).
GPT_4O_TILES = {
    "formula": "tiles",
    "max_side": 2048,
    "short_side": 768,
    "tile": 512,
    "base_tokens": 85,
    "tokens_per_tile": 170,
}


def picture(
    width: int,
    height: int,
    fmt: str = "PNG",
    *,
    colour: tuple[int, int, int] = (200, 30, 30),
    exif: dict[int, str] | None = None,
    alpha: bool = False,
) -> bytes:
    """An image of two colours (left: `colour`, right: blue) in `fmt`, with EXIF tags if given."""
    image = Image.new("RGBA" if alpha else "RGB", (width, height), colour)
    image.paste((20, 40, 220), (width // 2, 0, width, height))
    out = io.BytesIO()
    options = {}
    if exif:
        tags = Image.Exif()
        for tag, value in exif.items():
            tags[tag] = value
        options["exif"] = tags.tobytes()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header declaring `width` x `height` pixels around a tiny compressed body: decoding it
    would take gigabytes; its file is a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )
