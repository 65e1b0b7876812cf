"""Credits as decimal strings outside, micro-credit ints inside: exact, no floats."""

from __future__ import annotations

import re

from ledger.models import MICRO

_DECIMAL = re.compile(r"^([+-]?)(\d+)(?:\.(\d{1,6}))?$")


def credits_text(micro: int) -> str:
    """Micro-credits as a decimal string of credits: 999_250_000 -> "999.25", 1 -> "0.000001"."""
    if isinstance(micro, bool) or not isinstance(micro, int):
        raise TypeError("micro-credits are an int")
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), MICRO)
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def parse_credits(text: str) -> int:
    """A decimal string of credits (at most 6 decimals) as micro-credits; ValueError otherwise."""
    match = _DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a decimal amount of credits: {text!r} (at most 6 decimals)")
    sign, whole, fraction = match.groups()
    micro = int(whole) * MICRO + int((fraction or "").ljust(6, "0"))
    return -micro if sign == "-" else micro
