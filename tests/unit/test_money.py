"""Credits as decimal strings, micro-credits as integers: no floats, exact round trips."""

from __future__ import annotations

import marshmallow as ma
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.money import Credits, credits_text, parse_credits


@pytest.mark.parametrize(
    ("micro", "text"),
    [(0, "0"), (1_000_000_000, "1000"), (999_250_000, "999.25"), (1, "0.000001"), (-1_500_000, "-1.5")],
)
def test_format(micro: int, text: str) -> None:
    assert credits_text(micro) == text
    assert parse_credits(text) == micro


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_round_trip(micro: int) -> None:
    assert parse_credits(credits_text(micro)) == micro


@pytest.mark.parametrize("bad", ["", "abc", "1.0000001", "NaN", "Infinity", "1e"])
def test_bad_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"credits|decimal"):
        parse_credits(bad)


def test_field_refuses_floats() -> None:
    class Body(ma.Schema):
        amount = Credits(required=True)

    assert Body().load({"amount": "2.5"}) == {"amount": 2_500_000}
    with pytest.raises(ma.ValidationError):
        Body().load({"amount": 2.5})
