"""Tables of notifications: what each user watches, the outbox of notifications, webhook endpoints and
their deliveries."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, String, Table, Text, text

from runtime.db import Base, partial_index

Timestamp = DateTime(timezone=True)

# One row per user who chose a low-balance threshold or has a webhook endpoint: the money units read it
# with their account lock (orchestration/uow.py), so a money move that crosses nothing costs a compare.
watches = Table(
    "notify_watches",
    Base.metadata,
    Column("user_id", String(40), primary_key=True),
    # The balance must fall below `floor` (the highest threshold not told yet) for a `low_balance`, and
    # a credit lift it to `ceiling` (the lowest threshold told) for a `balance_recovered`.
    Column("floor", BigInteger),
    Column("ceiling", BigInteger),
    Column("thresholds", JSON, nullable=False),  # micro-credits, ascending
    Column("told", JSON, nullable=False),  # the thresholds whose low_balance was told, not yet recovered
    Column("events", Integer, nullable=False, server_default=text("0")),  # webhook events subscribed (bits)
)

# The outbox: a notification is written in the transaction that caused it, fanned out after the commit
# (to /me/events, webhook deliveries, email); a sweep re-sends the fan-out of any the broker lost.
notifications = Table(
    "notifications",
    Base.metadata,
    Column("id", String(40), primary_key=True),  # msg_...: the webhook-id of its deliveries
    Column("user_id", String(40), nullable=False),
    Column("type", String(40), nullable=False),  # webhook event type: balance.low, job.succeeded, ...
    Column("data", JSON, nullable=False),
    Column("endpoint_id", String(40)),  # a test send: to this endpoint only
    Column("created_at", Timestamp, nullable=False),
    Column("fanned_out_at", Timestamp),
    Column("emailed_at", Timestamp),
    Index("ix_notifications_user", "user_id", "created_at"),
    partial_index("ix_notifications_unsent", "created_at", where="fanned_out_at IS NULL"),
)

endpoints = Table(
    "webhook_endpoints",
    Base.metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("events", JSON, nullable=False),
    Column("secret", Text, nullable=False),  # Fernet token of the whsec_ secret (WEBHOOK_SECRET_KEY)
    Column("previous_secret", Text),  # the rotated-out secret, still signing until previous_until
    Column("previous_until", Timestamp),
    Column("status", String(10), nullable=False),  # enabled | disabled
    Column("disabled_reason", String(200)),
    Column("failing_since", Timestamp),  # the first failure since the last success
    Column("created_at", Timestamp, nullable=False),
)

deliveries = Table(
    "webhook_deliveries",
    Base.metadata,
    Column("id", String(40), primary_key=True),
    Column("notification_id", String(40), nullable=False),
    Column("endpoint_id", String(40), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("status", String(10), nullable=False),  # pending | succeeded | failed | canceled
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # When the next attempt is due; while one runs, when it is presumed lost (a killed worker).
    Column("next_attempt_at", Timestamp),
    Column("last_attempt_at", Timestamp),
    Column("response_status", Integer),
    Column("error", String(300)),
    Column("replay_of", String(40)),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_webhook_deliveries_user", "user_id", "created_at"),
    partial_index("ix_webhook_deliveries_due", "next_attempt_at", where="status = 'pending'"),
)
