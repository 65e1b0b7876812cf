"""Opaque cursors: round trip, and anything else is a 422."""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.exceptions import HTTPException

from api.pagination import decode_cursor, encode_cursor, page


def test_round_trip() -> None:
    values = ["2030-01-01T00:00:00+00:00", "key_1"]
    assert decode_cursor(encode_cursor(values), size=2) == values
    assert decode_cursor(None, size=2) is None


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "bm90IGpzb24", encode_cursor([1]), encode_cursor([True, 1]), encode_cursor([{"a": 1}, 2])],
)
def test_bad_cursors_are_422(cursor: str) -> None:
    with Flask(__name__).test_request_context(), pytest.raises(HTTPException) as raised:
        decode_cursor(cursor, size=2)
    assert raised.value.code == 422


def test_page_has_a_cursor_only_when_more_exist() -> None:
    assert page([1, 2, 3], limit=2, position=lambda item: [item])["next_cursor"] == encode_cursor([2])
    assert page([1, 2], limit=2, position=lambda item: [item]) == {"items": [1, 2], "next_cursor": None}
