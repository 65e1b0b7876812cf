"""Progress events: one Redis stream per job and one per user, read with XREAD BLOCK."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from ledger.amounts import credits_text

log = logging.getLogger(__name__)
EVENT_TYPES = frozenset({"queued", "started", "progress", "token", "result", "failed", "canceled"})
FINAL_TYPES = frozenset({"result", "failed", "canceled"})
STREAM_MAXLEN = 5000  # approximate trim (MAXLEN ~): long token streams keep their recent part
FINAL_TTL_S = 24 * 3600  # a finished job's stream lives a day, then the job row answers alone
USER_STREAM_MAXLEN = 1000
CANCEL_TTL_S = 7 * 24 * 3600


def job_stream(job_id: str) -> str:
    """The Redis stream key of a job's events."""
    return f"jobs:{job_id}"


def user_stream(user_id: str) -> str:
    """The Redis stream key of a user's balance changes and notifications."""
    return f"users:{user_id}:events"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def job_event(job_id: str, kind: str, *, held: int, spent: int, **fields: Any) -> dict[str, Any]:
    """One event of the common schema; credits as decimal strings."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    return {
        "type": kind,
        "job_id": job_id,
        "at": _now(),
        "credits_held": credits_text(held),
        "credits_spent": credits_text(spent),
        **fields,
    }


def publish_job_event(
    client: redis.Redis,
    job_id: str,
    kind: str,
    *,
    held: int,
    spent: int,
    owner_balance: tuple[str, Mapping[str, str]] | None = None,
    **fields: Any,
) -> str | None:
    """Append an event to the job's stream (a final one starts its expiry); None if Redis failed.

    `owner_balance` (user id, balance fields) also appends a `balance` event to the owner's stream
    in the same round trip, as a final event usually changes it; after a final event it names the job
    and its status (the job completions of /me/events). Events are best effort: the
    database is the record (a reader that misses the final event gets it from the job row), so a
    Redis blip never fails the step that published.
    """
    key = job_stream(job_id)
    event = job_event(job_id, kind, held=held, spent=spent, **fields)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.xadd(
            key, {"data": json.dumps(event, separators=(",", ":"))}, maxlen=STREAM_MAXLEN, approximate=True
        )
        if kind in FINAL_TYPES:
            pipe.expire(key, FINAL_TTL_S)
        if owner_balance is not None:
            balance: Mapping[str, Any] = owner_balance[1]
            if kind in FINAL_TYPES:  # the job's end on /me/events, in the same entry as the balance it left
                balance = {**balance, "job_id": job_id, "job_status": fields.get("status", kind)}
            _append_user_event(pipe, owner_balance[0], "balance", balance)
        entry_id = pipe.execute()[0]
    except redis.RedisError as exc:
        log.warning("could not publish %s event of job %s: %s", kind, job_id, exc)
        return None
    return entry_id if isinstance(entry_id, str) else entry_id.decode()


def _append_user_event(pipe: Any, user_id: str, kind: str, fields: Mapping[str, Any]) -> None:
    event = {"type": kind, "user_id": user_id, "at": _now(), **fields}
    pipe.xadd(
        user_stream(user_id),
        {"data": json.dumps(event, separators=(",", ":"))},
        maxlen=USER_STREAM_MAXLEN,
        approximate=True,
    )


def publish_user_event(client: redis.Redis, user_id: str, kind: str, **fields: Any) -> None:
    """Append a balance change or notification to the user's stream (best effort, like job events)."""
    try:
        _append_user_event(client, user_id, kind, fields)
    except redis.RedisError as exc:
        log.warning("could not publish %s event of user %s: %s", kind, user_id, exc)


def read_events(
    client: redis.Redis, key: str, last_id: str, *, block_ms: int | None, count: int = 500
) -> list[tuple[str, dict[str, Any]]]:
    """Entries after `last_id`, waiting up to `block_ms` (None: not at all) for the first."""
    answer: Any = client.xread({key: last_id}, block=block_ms, count=count)
    events: list[tuple[str, dict[str, Any]]] = []
    for _key, entries in answer or []:
        for entry_id, fields in entries:
            entry = entry_id if isinstance(entry_id, str) else entry_id.decode()
            raw = fields.get("data") or fields.get(b"data")
            events.append((entry, json.loads(raw)))
    return events


def follow(
    client: redis.Redis, key: str, last_id: str, *, block_ms: int, final: frozenset[str] = FINAL_TYPES
) -> Iterator[list[tuple[str, dict[str, Any]]] | None]:
    """Yield what each read brings, as a batch, or None after a silent `block_ms`; stop after a final event.

    A batch goes out to the client as one write: a job's early events usually arrive together."""
    while True:
        events = read_events(client, key, last_id, block_ms=block_ms)
        if not events:
            yield None
            continue
        for index, (entry_id, event) in enumerate(events):
            if event.get("type") in final:
                yield events[: index + 1]
                return
            last_id = entry_id
        yield events


def request_cancel(client: redis.Redis, job_id: str) -> None:
    """Flag a running job for cancellation; its step sees it at the next check."""
    client.set(f"creditflow:cancel:{job_id}", "1", ex=CANCEL_TTL_S)


def cancel_requested(client: redis.Redis, job_id: str) -> bool:
    """Whether the user asked to cancel this job."""
    return bool(client.exists(f"creditflow:cancel:{job_id}"))
