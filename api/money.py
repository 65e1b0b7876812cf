"""Credits on the wire: decimal strings of credits, micro-credit integers inside."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from ledger.amounts import credits_text, parse_credits

__all__ = ["Credits", "credits_text", "parse_credits"]

class Credits(ma.fields.Field):  # type: ignore[type-arg]
    """A marshmallow field: decimal string of credits <-> int micro-credits."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else credits_text(int(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ma.ValidationError("Credits are a decimal string, e.g. \"12.5\".")
        try:
            return parse_credits(str(value))
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from None
