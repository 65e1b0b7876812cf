"""Tables of the assistant room: the model catalog, conversations and their messages."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from runtime.db import Base, Timestamp

models = Table(
    "models",
    Base.metadata,
    Column("id", String(100), primary_key=True),
    Column("provider", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("quality", Integer, nullable=False, server_default=text("0")),
    Column("capabilities", JSON, nullable=False),
    # Integer micro-credits; chat: input_per_million, output_per_million. Empty: refused, never free.
    Column("pricing", JSON, nullable=False),
    Column("price_version", String(40), nullable=False),
    Column("options", JSON, nullable=False),
    Column("environments", JSON, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

conversations = Table(
    "conversations",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(100), nullable=False),
    Column("title", String(200)),
    Column("model", String(100)),
    # Positions handed out so far: a turn takes two (its message, and its reply when it settles).
    Column("positions", Integer, nullable=False, server_default=text("0")),
    Column("last_job_id", String(32)),
    # The token bound (assistant/transcript.turn_bound) of all its messages so far, kept by add_message:
    # a new turn is priced without reading the history (NULL: not counted yet, computed on next use).
    Column("prompt_bound", Integer),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_conversations_user_created", "user_id", "created_at"),
)

messages = Table(
    "messages",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("role", String(10), nullable=False),
    Column("content", Text, nullable=False),
    Column("model", String(100)),
    Column("job_id", String(32)),
    Column("usage", JSON),
    Column("cost", BigInteger),
    Column("finish_reason", String(20)),
    Column("embedding", JSON),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("conversation_id", "position", name="uq_messages_conversation_position"),
)

# Each message's vector per embedding model (GET /api/v1/chat/search), computed on the first search that
# needs it; a model's vectors are compared only with that model's query vector.
message_vectors = Table(
    "message_vectors",
    Base.metadata,
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    Column("model", String(100), primary_key=True),
    Column("dimensions", Integer, nullable=False),
    # float32, little-endian: read back with one numpy.frombuffer (JSON lists decoded 8x slower than the scan)
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)
