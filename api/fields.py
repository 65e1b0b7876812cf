"""Integer fields taking exactly what their OpenAPI type `integer` allows, nothing marshmallow coerces."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma

_QUERY_INTEGER = re.compile(r"-?[0-9]{1,18}")


class JsonInteger(ma.fields.Integer):
    """A JSON body's integer: a JSON number without a fraction (8 or 8.0, as JSON Schema counts them).

    marshmallow would make 2.5 into 2 and take "2" too; neither is an integer of the document."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class JsonBoolean(ma.fields.Boolean):
    """A JSON body's boolean: true or false (marshmallow would take "yes", 1 and "on" too)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryInteger(ma.fields.Integer):
    """A query string's integer, in ASCII digits only (int() takes " 5", "1_0", Arabic-Indic digits)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and _QUERY_INTEGER.fullmatch(value) is None:
            raise self.make_error("invalid")
        return int(super()._deserialize(value, attr, data, **kwargs))


class UtcDateTime(ma.fields.AwareDateTime):
    """An RFC 3339 timestamp; a stored time without an offset (SQLite hands them back so) is UTC.

    AwareDateTime's `default_timezone` only applies to input: naive times went out without an offset."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(default_timezone=UTC, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | float | None:
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)
