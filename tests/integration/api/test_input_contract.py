"""Bad input is refused at the door with a clear problem and changes nothing; what the document allows
passes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.pagination import encode_cursor
from tests.integration.api.conftest import AppFactory, assert_problem, bearer, make_token, new_user

JSON = {"Content-Type": "application/json"}
U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def jobs_app(make_app: AppFactory, private_broker: str) -> Flask:
    """An app whose sagas go to a broker of this module's own: jobs can be created, none runs."""
    app, _ = make_app(BROKER_URL=private_broker, SSE_HEARTBEAT_S=0.1)
    return app


@pytest.fixture
def jobs_client(jobs_app: Flask) -> FlaskClient:
    """A client of that app."""
    return jobs_app.test_client()


def _post_raw(client: FlaskClient, path: str, headers: dict[str, str], body: bytes) -> Any:
    return client.post(path, headers=headers | JSON, data=body)


def _first_chunk(client: FlaskClient, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """Status, content type and the first chunk of a streamed answer, then close it (as a client leaving)."""
    answer = client.get(path, headers=headers, buffered=False)
    try:
        chunk = next(iter(answer.response), b"") if answer.status_code == 200 else answer.get_data()
    finally:
        answer.close()
    return answer.status_code, answer.content_type, chunk


def test_lone_surrogates_are_refused_before_anything_is_stored(client: FlaskClient) -> None:
    headers, me = new_user(client)
    admin = bearer(make_token(roles=["admin"]))
    for path, body, who in (
        ("/api/v1/chat/conversations", b'{"title": "a\\ud800b"}', headers),
        ("/api/v1/api-keys", b'{"name": "key \\udc00"}', headers),
        ("/api/v1/agent-tasks", b'{"kind": "code", "prompt": "\\udfff\\ud800", "max_credits": "1"}', headers),
        (
            "/api/v1/admin/grants",
            b'{"user_id": "%s", "credits": "1", "reason": "\\ud83d"}' % me["id"].encode(),
            admin,
        ),
        ("/api/v1/chat/conversations", b'{"\\ud800": 1}', headers),  # a key, not only a value
    ):
        problem = assert_problem(_post_raw(client, path, who, body), 422)
        assert problem["type"].endswith("/lone-surrogate"), (path, problem)
    assert client.get("/api/v1/chat/conversations", headers=headers).json["items"] == []
    assert client.get("/api/v1/api-keys", headers=headers).json["items"] == []
    assert client.get("/api/v1/credits/balance", headers=headers).json["posted"] == "1000"


def test_text_that_only_looks_like_a_bad_escape_is_kept(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    # A surrogate pair is one character; an escaped backslash makes `\u0000` and `\ud800` plain text.
    made = _post_raw(
        client, "/api/v1/chat/conversations", headers, b'{"title": "\\ud83d\\ude00 C:\\\\ud800 \\\\u0000"}'
    )
    assert made.status_code == 201, made.json
    assert made.json["title"] == "\U0001f600 C:\\ud800 \\u0000"
    # Brackets inside strings are text, not nesting.
    deep_text = _post_raw(client, "/api/v1/chat/conversations", headers, b'{"title": "' + b"[" * 150 + b'"}')
    assert deep_text.status_code == 201, deep_text.json


def test_query_strings_and_paths_cannot_carry_a_surrogate(client: FlaskClient) -> None:
    # Percent-escapes of surrogates are invalid UTF-8: werkzeug decodes them as U+FFFD, never a surrogate.
    headers, _ = new_user(client)
    assert client.get("/api/v1/jobs?kind=%ED%A0%80", headers=headers).status_code == 200
    assert_problem(client.get("/api/v1/jobs/%ED%A0%80", headers=headers), 404)


def test_json_nested_too_deep_is_refused(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    body = b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}"
    problem = assert_problem(_post_raw(client, "/api/v1/api-keys", headers, body), 422)
    assert problem["type"].endswith("/json-too-deep")


@pytest.mark.parametrize(
    "cost",
    [
        "-1",
        "\u0661\u0662",
        " 12",
        "12 ",
        "+1",
        "007",
        "1e3",
        "",
        "1.",
        "0.0000001",
        "1000000000000",
        12,
        None,
    ],
)
def test_credits_are_plain_ascii_decimal_strings(jobs_client: FlaskClient, cost: object) -> None:
    headers, _ = new_user(jobs_client)
    refused = jobs_client.post(
        "/api/v1/diagnostics/jobs", headers=headers, json={"steps": 1, "cost_per_step": cost}
    )
    assert "cost_per_step" in assert_problem(refused, 422)["errors"]
    assert jobs_client.get("/api/v1/jobs", headers=headers).json["items"] == []


def test_credits_in_the_documented_form_are_taken(jobs_client: FlaskClient) -> None:
    headers, _ = new_user(jobs_client)
    for cost, held in (
        ("0", "0.000001"),
        ("0.5", "1"),
        ("12", "24"),
        ("0.000001", "0.000002"),
    ):  # holds >= 1e-6
        made = jobs_client.post(
            "/api/v1/diagnostics/jobs", headers=headers, json={"steps": 2, "cost_per_step": cost}
        )
        assert made.status_code == 202, made.json
        assert made.json["cost"]["held"] == held
    for max_credits in ("0", "0.000000", "-5"):
        body = {"kind": "code", "prompt": "x", "max_credits": max_credits}
        assert (
            "max_credits"
            in assert_problem(jobs_client.post("/api/v1/agent-tasks", headers=headers, json=body), 422)[
                "errors"
            ]
        )


@pytest.mark.parametrize(
    "body",
    [
        {"steps": 2.5},
        {"steps": "2"},
        {"steps": "2.5"},
        {"steps": True},
        {"priority": 1.5},
        {"tokens": "yes"},
        {"tokens": 1},
        {"fail_at_step": 20_000},
    ],
)
def test_body_numbers_and_booleans_are_json_ones(jobs_client: FlaskClient, body: dict[str, Any]) -> None:
    headers, _ = new_user(jobs_client)
    assert set(body) <= set(
        assert_problem(jobs_client.post("/api/v1/diagnostics/jobs", headers=headers, json=body), 422)[
            "errors"
        ]
    )


def test_an_integral_json_number_is_an_integer(jobs_client: FlaskClient) -> None:
    # JSON Schema's integer includes 2.0; 2 steps at 3 credits hold 6.
    headers, _ = new_user(jobs_client)
    made = jobs_client.post(
        "/api/v1/diagnostics/jobs", headers=headers, json={"steps": 2.0, "cost_per_step": "3"}
    )
    assert made.status_code == 202, made.json
    assert made.json["cost"]["held"] == "6"


def test_max_tokens_is_a_json_integer(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    conversation = client.post("/api/v1/chat/conversations", headers=headers, json={}).json["id"]
    path = f"/api/v1/chat/conversations/{conversation}/messages"
    assert (
        "max_tokens"
        in assert_problem(client.post(path, headers=headers, json={"content": "hi", "max_tokens": 2.5}), 422)[
            "errors"
        ]
    )


@pytest.mark.parametrize("limit", [" 5", "\u0665", "1_0", "5.0", "+5"])
def test_query_integers_are_ascii_digits(client: FlaskClient, limit: str) -> None:
    headers, _ = new_user(client)
    assert_problem(
        client.get("/api/v1/credits/transactions", headers=headers, query_string={"limit": limit}), 422
    )


def test_default_chat_model_must_be_a_chat_model_of_the_catalog(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    problem = assert_problem(
        client.patch("/api/v1/me/preferences", headers=headers, json={"default_chat_model": "no-such-model"}),
        422,
    )
    assert problem["type"].endswith("/model-unavailable")
    assert "echo" in problem["available"]
    assert client.get("/api/v1/me", headers=headers).json["preferences"]["default_chat_model"] is None
    chosen = client.patch("/api/v1/me/preferences", headers=headers, json={"default_chat_model": "echo"})
    assert chosen.status_code == 200
    assert chosen.json["default_chat_model"] == "echo"
    cleared = client.patch("/api/v1/me/preferences", headers=headers, json={"default_chat_model": None})
    assert cleared.status_code == 200
    assert cleared.json["default_chat_model"] is None


@pytest.mark.parametrize(
    "bad", [f"{U64_MAX + 1}-0", f"0-{U64_MAX + 1}", "99999999999999999999-0", "1-1-1", "\u0661-0", "1"]
)
def test_an_event_id_beyond_redis_range_is_refused_before_streaming(
    jobs_client: FlaskClient, bad: str
) -> None:
    headers, _ = new_user(jobs_client)
    job_id = jobs_client.post("/api/v1/diagnostics/jobs", headers=headers, json={"steps": 1}).json["job_id"]
    for path in ("/api/v1/me/events", f"/api/v1/jobs/{job_id}/events"):
        problem = assert_problem(jobs_client.get(path, headers=headers | {"Last-Event-ID": bad}), 400)
        assert problem["type"].endswith("/bad-last-event-id")
        assert_problem(jobs_client.get(path, headers=headers, query_string={"last_event_id": bad}), 400)
        # A good header does not cover for a bad query parameter.
        assert_problem(
            jobs_client.get(
                path, headers=headers | {"Last-Event-ID": "0-0"}, query_string={"last_event_id": bad}
            ),
            400,
        )


def test_the_largest_event_ids_still_stream(jobs_client: FlaskClient) -> None:
    headers, _ = new_user(jobs_client)
    job_id = jobs_client.post("/api/v1/diagnostics/jobs", headers=headers, json={"steps": 1}).json["job_id"]
    largest = f"{U64_MAX}-{U64_MAX}"
    for path in ("/api/v1/me/events", f"/api/v1/jobs/{job_id}/events"):
        for extra in ({"Last-Event-ID": largest}, {"Last-Event-ID": ""}):
            status, content_type, first = _first_chunk(jobs_client, path, headers | extra)
            assert status == 200, (path, extra, first)
            assert content_type.startswith("text/event-stream")
            assert first.startswith(b"retry:")


def test_errors_are_always_an_object(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    broken = assert_problem(_post_raw(client, "/api/v1/api-keys", headers, b"{not json"), 400)
    assert broken["errors"] == {"_schema": ["Invalid JSON body."]}
    assert broken["detail"] == "The request body is not valid JSON."
    listed = assert_problem(client.post("/api/v1/api-keys", headers=headers, json=["a"]), 422)
    assert listed["errors"] == {"_schema": ["Invalid input type."]}
    query = assert_problem(
        client.get("/api/v1/credits/transactions", headers=headers, query_string={"limit": 0}), 422
    )
    assert query["errors"] == {
        "query": {"limit": ["Must be greater than or equal to 1 and less than or equal to 200."]}
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/chat/conversations"),
        ("patch", "/api/v1/me/preferences"),
        ("post", "/api/v1/diagnostics/jobs"),
    ],
)
def test_a_documented_body_is_required(jobs_client: FlaskClient, method: str, path: str) -> None:
    headers, _ = new_user(jobs_client)
    call = getattr(jobs_client, method)
    missing = assert_problem(call(path, headers=headers), 422)
    assert missing["type"].endswith("/body-required")
    not_json = assert_problem(call(path, headers=headers | {"Content-Type": "text/plain"}, data=b"{}"), 415)
    assert not_json["type"].endswith("/unsupported-media-type")
    assert jobs_client.get("/api/v1/jobs", headers=headers).json["items"] == []
    assert jobs_client.get("/api/v1/chat/conversations", headers=headers).json["items"] == []
    assert call(path, headers=headers, json={}).status_code in (200, 201, 202)


def test_transactions_name_the_bare_job_id(jobs_client: FlaskClient) -> None:
    headers, _ = new_user(jobs_client)
    job_id = jobs_client.post("/api/v1/diagnostics/jobs", headers=headers, json={"steps": 1}).json["job_id"]
    items = jobs_client.get("/api/v1/credits/transactions", headers=headers).json["items"]
    assert [(item["kind"], item["job_id"]) for item in items] == [("hold", job_id), ("grant", None)]


@pytest.mark.parametrize("values", [[2**63], [2**70], [0], [-1], ["12"], [1.5]])
def test_transaction_cursors_outside_the_ledger_are_refused(client: FlaskClient, values: list[Any]) -> None:
    headers, _ = new_user(client)
    answer = client.get(
        "/api/v1/credits/transactions", headers=headers, query_string={"cursor": encode_cursor(values)}
    )
    assert assert_problem(answer, 422)["type"].endswith("/invalid-cursor")


def test_proof_ids_are_ascii_digits(client: FlaskClient) -> None:
    headers, _ = new_user(client)
    for entry_id in ("\u00b9", "\u0661", "1" * 19):
        assert_problem(client.get(f"/api/v1/credits/transactions/{entry_id}/proof", headers=headers), 404)


@pytest.fixture
def admin_and_user(client: FlaskClient) -> tuple[dict[str, str], str]:
    """An admin's headers and another user's id."""
    _, me = new_user(client)
    return bearer(make_token(roles=["admin"])), me["id"]


def test_grant_expiry_in_the_past_names_its_reason(
    client: FlaskClient, admin_and_user: tuple[dict[str, str], str]
) -> None:
    admin, user_id = admin_and_user
    body = {"user_id": user_id, "credits": "5", "reason": "x", "expires_at": "2001-01-01T00:00:00Z"}
    problem = assert_problem(client.post("/api/v1/admin/grants", headers=admin, json=body), 422)
    assert problem["type"].endswith("/expiry-in-the-past")
    assert problem["errors"] == {"expires_at": ["Must be in the future."]}
    too_much = {"user_id": user_id, "credits": "1000000000", "reason": "x"}
    assert (
        "credits"
        in assert_problem(client.post("/api/v1/admin/grants", headers=admin, json=too_much), 422)["errors"]
    )


def test_timestamps_carry_their_offset_on_every_backend(jobs_client: FlaskClient) -> None:
    # SQLite hands stored times back without an offset; the document promises RFC 3339 date-times.
    headers, _ = new_user(jobs_client)
    conversation = jobs_client.post("/api/v1/chat/conversations", headers=headers, json={}).json
    job = jobs_client.post("/api/v1/diagnostics/jobs", headers=headers, json={"steps": 1}).json
    listed = jobs_client.get("/api/v1/chat/conversations", headers=headers).json["items"][0]
    detail = jobs_client.get(f"/api/v1/chat/conversations/{conversation['id']}", headers=headers).json
    polled = jobs_client.get(job["status_url"], headers=headers).json
    jobs = jobs_client.get("/api/v1/jobs", headers=headers).json["items"][0]
    for stamp in (
        listed["created_at"],
        listed["updated_at"],
        detail["created_at"],
        polled["created_at"],
        jobs["created_at"],
    ):
        assert stamp.endswith("+00:00"), stamp
