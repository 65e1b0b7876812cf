"""The outbox: a notification row written in the transaction that caused it, and the thin JSON body
(`{type, timestamp, data}`) its webhook deliveries carry."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from orchestration.notify.tables import notifications, watches
from orchestration.notify.watch import wrote

MAX_BODY_BYTES = 20 * 1024
# What /me/events calls each notification (API.md "Notifications"); webhooks use the dotted type. A job's
# end is on /me/events already, for every user (the `balance` event it publishes names the job), and a
# payment's (`payment`, orchestration/payments/notices.py).
STREAM_TYPES = {
    "balance.low": "low_balance",
    "balance.recovered": "balance_recovered",
    "webhook.disabled": "webhook_disabled",
}


def new_id(prefix: str) -> str:
    """A fresh opaque id such as msg_3f2a..."""
    return f"{prefix}_{secrets.token_hex(12)}"


def write(
    db: Connection,
    *,
    user_id: str,
    event_type: str,
    data: Mapping[str, Any],
    endpoint_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """Record a notification in the caller's transaction; its unit fans it out once committed."""
    notification_id = new_id("msg")
    body(event_type, data, now or datetime.now(UTC))  # refuses a body over the limit before it is stored
    db.execute(
        insert(notifications).values(
            id=notification_id,
            user_id=user_id,
            type=event_type,
            data=dict(data),
            endpoint_id=endpoint_id,
            created_at=now or datetime.now(UTC),
        )
    )
    wrote(db, notification_id)
    return notification_id


def timestamp_text(moment: datetime) -> str:
    """An ISO 8601 UTC time with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def body(event_type: str, data: Mapping[str, Any], created_at: datetime) -> str:
    """The delivery body: `{type, timestamp, data}` as compact JSON, at most 20 KB."""
    text = json.dumps(
        {"type": event_type, "timestamp": timestamp_text(created_at), "data": dict(data)},
        separators=(",", ":"),
        sort_keys=True,
    )
    if len(text.encode()) > MAX_BODY_BYTES:
        raise ValueError(f"a {event_type} notification of {len(text)} bytes is over {MAX_BODY_BYTES}")
    return text


def upsert_watch(db: Connection, user_id: str, **values: Any) -> None:
    """Create or change the user's watch row (the caller holds the user's account lock: no race)."""
    found = db.execute(select(watches.c.user_id).where(watches.c.user_id == user_id)).first()
    if found is None:
        db.execute(
            insert(watches).values(user_id=user_id, **{"thresholds": [], "told": [], "events": 0, **values})
        )
    else:
        db.execute(update(watches).where(watches.c.user_id == user_id).values(**values))
