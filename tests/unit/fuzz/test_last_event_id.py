"""Last-Event-ID under generated input: the id pattern accepts exactly the decimal pairs Redis can hold
(two unsigned 64-bit numbers), every id Redis hands out matches it and resumes after itself on a real Redis,
and any header or query value is taken as an id or refused with a 400 (never a 500, never a stream that Redis
ends without its final event)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from api.streams.events import _last_event_id
from api.streams.schemas import ENTRY_ID
from orchestration.jobs.progress import read_events
from tests.unit.fuzz import FUZZ, FUZZ_REQUESTS

U64 = 2**64 - 1
APP = Flask(__name__)
numbers = st.integers(0, U64) | st.integers(U64 + 1, 10**30) | st.sampled_from([U64, U64 + 1, 0])


@FUZZ
@given(ms=numbers, seq=numbers, zeros=st.integers(0, 3), sep=st.sampled_from(["-", "-", "_", " -", "--", ""]))
def test_the_pattern_accepts_exactly_the_ids_redis_can_hold(ms: int, seq: int, zeros: int, sep: str) -> None:
    ms_text = "0" * zeros + str(ms)
    text = f"{ms_text}{sep}{seq}"
    fits = ms <= U64 and seq <= U64 and sep == "-"
    if len(ms_text) <= 20:  # leading zeros beyond 20 digits are refused, though Redis would read them
        assert bool(ENTRY_ID.fullmatch(text)) == fits, text
    elif ENTRY_ID.fullmatch(text):
        assert fits, text


@FUZZ
@given(st.text(max_size=45))
def test_anything_the_pattern_accepts_is_two_u64(text: str) -> None:
    if ENTRY_ID.fullmatch(text):
        ms, _, seq = text.partition("-")
        assert ms.isascii()
        assert seq.isascii()
        assert int(ms) <= U64
        assert int(seq) <= U64


@FUZZ
@given(
    header=st.none() | st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=30),
    query=st.none() | st.text(max_size=30) | st.builds("{}-{}".format, numbers, numbers),
    live=st.booleans(),
)
def test_any_header_or_query_is_an_id_or_a_400(header: str | None, query: str | None, live: bool) -> None:
    allowed = ("0-0", "$") if live else ("0-0",)
    default = "$" if live else "0-0"
    with APP.test_request_context(
        "/events",
        headers={"Last-Event-ID": header} if header is not None else {},
        query_string={"last_event_id": query} if query is not None else {},
    ):
        try:
            chosen: str | None = _last_event_id(default, allowed=allowed)
        except HTTPException as exc:
            chosen, status = None, exc.code
    if chosen is None:
        assert status == 400
        sent = [value for value in (header, query) if value]
        assert any(value not in allowed and not ENTRY_ID.fullmatch(value) for value in sent)
        return
    assert chosen == (header or query or default)
    assert chosen in allowed or ENTRY_ID.fullmatch(chosen)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@FUZZ_REQUESTS
@given(ids=st.lists(st.tuples(st.integers(0, U64), st.integers(0, U64)), min_size=1, max_size=6, unique=True))
def test_ids_redis_hands_out_match_and_resume_after_themselves(
    client: redis.Redis, ids: list[tuple[int, int]]
) -> None:
    key = f"fuzz:last-event-id:{uuid.uuid4().hex}"
    try:
        ordered = sorted(ids)
        given_ids = []
        for ms, seq in ordered:
            if (ms, seq) == (0, 0):
                continue  # Redis refuses 0-0 as an entry id (it is "before everything")
            given_ids.append(client.xadd(key, {"data": json.dumps({"n": len(given_ids)})}, id=f"{ms}-{seq}"))
        given_ids.append(client.xadd(key, {"data": json.dumps({"n": len(given_ids)})}))  # "*" when possible
    except redis.ResponseError:
        pass  # the last id was already the largest: no "*" id exists beyond it
    try:
        stored = [entry for entry, _fields in client.xrange(key)]
        for index, entry in enumerate(["0-0", *stored]):
            assert entry == "0-0" or ENTRY_ID.fullmatch(entry), entry
            after = read_events(client, key, entry, block_ms=None)
            assert [got for got, _event in after] == stored[index:]
    finally:
        client.delete(key)
