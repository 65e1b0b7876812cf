"""Cursor pagination: `limit` (default 50, max 200) and an opaque `cursor`; answers `{items, next_cursor}`."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, NoReturn

import marshmallow as ma
from flask_smorest import abort

from api.fields import QueryInteger

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# What encode_cursor makes: URL-safe base64 without padding.
CURSOR_PATTERN = "^[A-Za-z0-9_-]{1,500}$"


class PageArgsSchema(ma.Schema):
    """Query arguments of every list endpoint."""

    limit = QueryInteger(load_default=DEFAULT_LIMIT, validate=ma.validate.Range(1, MAX_LIMIT))
    cursor = ma.fields.String(
        load_default=None,
        validate=ma.validate.Regexp(CURSOR_PATTERN),
        metadata={
            "description": "The `next_cursor` of the previous page; a cursor this API did not give out "
            "is refused (422, type invalid-cursor)."
        },
    )


def encode_cursor(values: list[Any]) -> str:
    """An opaque cursor for the position after the last item (JSON values, URL-safe base64)."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, size: int) -> list[Any] | None:
    """The values inside a cursor made by `encode_cursor` (None for the first page); 422 if it is not one."""
    if cursor is None:
        return None
    try:
        values: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != size or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in values
    ):
        _invalid_cursor()
    return values


def _invalid_cursor() -> NoReturn:
    abort(422, message="The cursor is not one this API gave out.", kind="invalid-cursor",
          errors={"cursor": ["Invalid cursor."]})
    raise AssertionError("abort returned")


def decode_position_cursor(cursor: str | None) -> int | None:
    """A ledger position (a positive 63-bit integer) from a cursor of `[position]`; 422 if not one of ours."""
    values = decode_cursor(cursor, size=1)
    if values is None:
        return None
    position = values[0]
    if not isinstance(position, int) or not 0 < position < 2**63:
        _invalid_cursor()
    return position


def page_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A `{items: [item], next_cursor}` schema class named `name` (so OpenAPI shows it once)."""
    fields: dict[str, Any] = {
        "items": ma.fields.List(ma.fields.Nested(item), required=True),
        "next_cursor": ma.fields.String(
            allow_none=True, required=True,
            metadata={"description": "Pass as `cursor` for the next page; null at the end."},
        ),
    }
    return type(name, (ma.Schema,), fields)


def page(items: list[Any], *, limit: int, position: Any) -> dict[str, Any]:
    """A page answer from up to `limit + 1` fetched items; `position(item)` gives the cursor values."""
    more = len(items) > limit
    shown = items[:limit]
    return {"items": shown, "next_cursor": encode_cursor(position(shown[-1])) if more and shown else None}


def decode_time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """A (created_at, id) position from a cursor of `[iso time, id]`; 422 if it is not one of ours."""
    values = decode_cursor(cursor, size=2)
    if values is None:
        return None
    try:
        return datetime.fromisoformat(str(values[0])), str(values[1])
    except ValueError:
        _invalid_cursor()


def time_position(row: Any) -> list[Any]:
    """The cursor values after `row`: its creation time and id (newest-first lists)."""
    return [row.created_at.isoformat(), row.id]
