"""Schemathesis, every check on every operation, against the real server: the OpenAPI document is true.

It runs all phases (examples, coverage, fuzzing, stateful) and all of Schemathesis' checks on every
operation of the served document, SSE streams and job-creating POSTs included, over HTTP against
`creditflow api` (gunicorn), bounded in examples and time. The stateful phase follows the document's
OpenAPI links (api/links.py): a created job to its status, events and cancel, a conversation to its
messages, a key to its revocation; the test checks that those links were followed and answered. Jobs it
creates go to a broker of its own (an embedded Redis) where no worker takes them, so no other test sees
them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import StopReason, from_schema
from schemathesis.engine import events as engine_events

from tests.integration.api.conftest import make_token
from tests.support.network_guard import subprocess_env
from tests.support.processes import api_server

pytestmark = pytest.mark.slow

EXAMPLES = 30  # per operation and phase
ADMIN = make_token(sub="schemathesis-admin", roles=["admin"], exp=4102444800)
# Refusals a schema can't foresee, for what a valid request means (the problem `type` names them):
# a model not in the catalog, a message too long for the model's context, analysis data without
# rows, a well-formed but unknown cursor, a grant expiry in the past, a job priced beyond the
# ledger's range, an image that is not one (bytes no image decoder reads, a URL the outbound guard refuses),
# a report whose `from` is not before its `to`,
# a webhook URL the outbound guard refuses.
# Anything else refused as 400/415/422 on valid data means the document promised too much.
MEANINGFUL_REFUSALS = frozenset(
    {
        "model-unavailable",
        "unpriceable",
        "bad-data",
        "invalid-cursor",
        "expiry-in-the-past",
        "invalid-amount",
        "image-refused",
        "invalid-period",
        "invalid-webhook-url",
    }
)
CHECKED_REFUSALS = (400, 415, 422)
# The payment rails answer 503 (fail closed) while their secrets are not configured, as here; their
# operations are exercised with the rails on by tests/integration/payments.
PAYMENT_PATHS = r"^/api/v1/(payments|me/auto-top-up|admin/payments)"


@schemathesis.check
def errors_are_problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is application/problem+json with the RFC 9457 members and its own status."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (response.status_code, content_type)
    body = json.loads(response.content)
    assert body["status"] == response.status_code, body
    assert {"type", "title", "detail"} <= set(body), body
    assert isinstance(body.get("errors", {}), dict), body
    return True


@schemathesis.check
def valid_requests_are_refused_only_for_a_named_reason(ctx: Any, response: Any, case: Any) -> bool | None:
    """Data the document calls valid is never refused as malformed (400/415/422 of validation)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in CHECKED_REFUSALS:
        return None
    kind = json.loads(response.content).get("type", "").rsplit("/", 1)[-1]
    assert kind in MEANINGFUL_REFUSALS, (
        f"schema-valid request refused as {response.status_code} {kind}: {response.content[:300]!r}"
    )
    return True


@pytest.fixture(scope="module")
def api(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API on a fresh database, short heartbeats, no stream cap in the way; the image URLs it is sent
    resolve nowhere and connect nowhere beyond 127.0.0.1 (a guard in the API process logs any attempt)."""
    logs = tmp_path_factory.mktemp("schemathesis")
    refused = logs / "refused.log"
    env = {
        **server_env,
        "SSE_HEARTBEAT_S": "0.2",
        "SSE_MAX_STREAMS_PER_USER": "1000",
        **subprocess_env({}, str(refused)),
    }
    with api_server(env=env, log=logs / "api.log") as base:
        yield base
    assert not refused.exists() or refused.read_text() == "", refused.read_text()


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261128,
            "headers": {"Authorization": f"Bearer {ADMIN}"},  # auth attacks have their own tests
            "workers": 1,  # CPython 3.11.7 miscounts AST recursion across threads (gh-106905)
            "request-timeout": 10,
            "max-stream-events": 3,
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "allow-x00": False,  # refused everywhere with 422, as the document's description says
            },
            "checks": {
                # 402: the hold; 422: of a named reason (valid_requests_are_refused_only_for_a_named_reason)
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "401", "402", "403", "404", "409", "422", "429"]
                },
            },
            "phases": {"stateful": {"max-steps": 8, "generation": {"max-examples": 80}}},
            "operations": [
                # A user's stream never ends by itself: each case reads what a second brings.
                {"include-path-regex": "/events$", "request-timeout": 1},
            ],
        }
    )


def _failures(event: Any) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            interaction = event.recorder.interactions.get(case_id)
            answer = interaction.response if interaction and interaction.response else None
            found.append(
                f"[{event.phase.name}] {check.name}: {check.failure_info.failure.title}\n"
                f"{check.failure_info.failure.message[:400]}\n{check.failure_info.code_sample[:700]}\n"
                + (f"-> {answer.status_code} {answer.content[:300]!r}" if answer else "")
            )
    return found


# What the stateful phase must have followed, each answered as for a real resource: (a link's target, status),
# from any operation whose answer names it (the links of api/links.py; Schemathesis infers a few more).
LINKS_FOLLOWED = (
    ("GET /api/v1/jobs/{job_id}", 200),
    ("POST /api/v1/jobs/{job_id}/cancel", 202),
    ("GET /api/v1/chat/conversations/{conversation_id}", 200),
    ("POST /api/v1/chat/conversations/{conversation_id}/messages", 202),
    ("DELETE /api/v1/api-keys/{key_id}", 204),
)


def _record_links(event: Any, followed: dict[str, set[int]]) -> None:
    """Each link the stateful phase followed ("POST a -> GET b") with the statuses its step was answered."""
    for case_id, node in event.recorder.cases.items():
        if node.parent_id is None or not node.is_transition_applied:
            continue
        parent = event.recorder.cases[node.parent_id].value
        answer = event.recorder.interactions.get(case_id)
        if answer is not None and answer.response is not None:
            link = f"{parent.operation.label} -> {node.value.operation.label}"
            followed.setdefault(link, set()).add(answer.response.status_code)


def test_the_document_is_true(api: str, tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/api/v1/openapi.json", config=_config())
    schema = schema.exclude(path_regex=PAYMENT_PATHS)
    operations = {result.ok().label for result in schema.get_all_operations()}
    assert len(operations) >= 20
    tested: dict[str, set[str]] = {}
    failures: list[str] = []
    errors: list[str] = []
    stop = None
    followed: dict[str, set[int]] = {}
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            failures += _failures(event)
            if event.phase.name == "STATEFUL_TESTING":
                _record_links(event, followed)
            if event.skip_reason is None and event.phase.name in ("COVERAGE", "FUZZING"):
                tested.setdefault(event.label, set()).add(event.phase.name)
        elif isinstance(event, engine_events.NonFatalError):
            errors.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, engine_events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, engine_events.EngineFinished):
            stop = event.stop_reason
            failures += [f"after run: {failure.title}: {failure.message[:400]}" for failure in event.failures]
    (tmp_path / "failures.txt").write_text("\n\n".join(failures + errors))
    unique = sorted(set(failures))
    assert not errors, errors[:5]
    assert not unique, f"{len(unique)} failures (all in {tmp_path}):\n\n" + "\n\n".join(unique[:8])
    assert stop == StopReason.COMPLETED, stop
    untested = {label for label in operations if tested.get(label) != {"COVERAGE", "FUZZING"}}
    assert not untested, untested
    # Each link was followed with the value the first answer gave, and answered as for a real resource.
    print("links followed:", {link: sorted(codes) for link, codes in sorted(followed.items())})
    reached = {
        (target, status)
        for target, status in LINKS_FOLLOWED
        for link, codes in followed.items()
        if link.endswith(f" -> {target}") and status in codes
    }
    # Which links a seeded run walks shifts with the document: a created job reached through one of its
    # links (its status or its cancel) and a created conversation read back are always among them, and
    # all but one of the rest.
    assert set(LINKS_FOLLOWED[:2]) & reached, (reached, followed)
    assert LINKS_FOLLOWED[2] in reached, (reached, followed)
    assert len(reached) >= len(LINKS_FOLLOWED) - 1, (reached, followed)
    print(f"schemathesis: {stop} in {time.monotonic() - started:.0f}s")
