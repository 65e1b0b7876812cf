"""Credits on the wire: decimal strings of credits, micro-credit integers inside."""

from __future__ import annotations

import re
from typing import Any, Literal

import marshmallow as ma

from ledger.amounts import credits_text, parse_credits

__all__ = ["Credits", "credits_pattern", "credits_text", "parse_credits"]

Sign = Literal["any", "non-negative", "positive"]
# 12 digits of credits stay far below the ledger's BIGINT of micro-credits (9.2e12 credits).
MAX_WHOLE_DIGITS = 12
FRACTION = r"(\.[0-9]{1,6})?"


def _nonzero_fraction() -> str:
    # One to six decimals, not all zero: "0.5", "0.000001", but never "0.000".
    return "|".join(
        "0" * zeros + "[1-9]" + (f"[0-9]{{0,{5 - zeros}}}" if zeros < 5 else "") for zeros in range(6)
    )


def credits_pattern(sign: Sign = "any", *, whole_digits: int = MAX_WHOLE_DIGITS) -> str:
    """The exact syntax a credits field accepts, as the regular expression its OpenAPI `pattern` shows.

    ASCII digits only, no spaces, no `+`, no leading zeros, at most six decimals; `sign` says whether
    a `-` may lead and whether zero is allowed."""
    more = f"[0-9]{{0,{whole_digits - 1}}}"
    if sign == "positive":
        return rf"^([1-9]{more}{FRACTION}|0\.({_nonzero_fraction()}))$"
    minus = "-?" if sign == "any" else ""
    return rf"^{minus}(0|[1-9]{more}){FRACTION}$"


class Credits(ma.fields.Field):  # type: ignore[type-arg]
    """A marshmallow field: decimal string of credits <-> int micro-credits, refusing all else."""

    def __init__(self, *, sign: Sign = "any", whole_digits: int = MAX_WHOLE_DIGITS, **kwargs: Any) -> None:
        self.pattern = credits_pattern(sign, whole_digits=whole_digits)
        self._syntax = re.compile(self.pattern)
        self._sign = sign
        self._whole_digits = whole_digits
        metadata = {"pattern": self.pattern, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else credits_text(int(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        # `str.isdigit` and `\d` accept "١٢" and int() accepts " 12 ": only the documented ASCII form passes.
        if not isinstance(value, str):
            raise ma.ValidationError('Credits are a decimal string, e.g. "12.5".')
        if self._syntax.fullmatch(value) is None:
            raise ma.ValidationError(self._explain())
        return parse_credits(value)

    def _explain(self) -> str:
        kind = {"any": "", "non-negative": " not negative,", "positive": " more than 0,"}[self._sign]
        return (
            f"Credits are a decimal string of ASCII digits,{kind} at most {self._whole_digits} digits "
            f'before the point and 6 after, no spaces or leading zeros, e.g. "12.5".'
        )
