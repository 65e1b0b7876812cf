"""Posting a chat message as a job: one transaction, and Idempotency-Key replays of the same request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

import ledger
from orchestration.accounts.users import get_or_create_user
from orchestration.errors import JobKeyConflict
from orchestration.jobs import create as job_cases
from orchestration.replies import conversations as chat
from orchestration.services import Services


def _user(services: Services) -> str:
    with services.uow() as db:
        return get_or_create_user(db, external_id=f"chat-jobs-{uuid.uuid4().hex}").id


def _post(services: Services, user: str, conversation: str, content: str, key: str | None) -> str:
    command = chat.PostMessage(
        user_id=user, conversation_id=conversation, content=content, model="echo", idempotency_key=key
    )
    return str(chat.post_message(services, command).id)


def test_the_same_key_and_message_replays_the_first_turn(services: Services) -> None:
    user = _user(services)
    conversation = chat.create_conversation(services, user_id=user, title=None, model="echo").id
    # The API's own Idempotency-Key record is gone (it expired, or the first request crashed after
    # the job committed): the job's key still answers, because it compares the request.
    first = _post(services, user, conversation, "hello", key="turn-1")
    assert _post(services, user, conversation, "hello", key="turn-1") == first
    with pytest.raises(JobKeyConflict):
        _post(services, user, conversation, "something else", key="turn-1")
    _row, messages = chat.get_conversation(services, user_id=user, conversation_id=conversation)
    assert [(m.role, m.content, m.job_id) for m in messages] == [("user", "hello", first)]
    job_cases.cancel_job(services, user_id=user, job_id=first)


def test_a_refused_hold_leaves_no_message_behind(services: Services) -> None:
    user = _user(services)
    conversation = chat.create_conversation(services, user_id=user, title=None, model="echo").id
    with services.uow(account_of=user) as db:  # spend the welcome credits on a hold that stays
        available = ledger.balance(db, user_id=user).available
        later = datetime.now(UTC) + timedelta(hours=1)
        ledger.hold(db, user_id=user, amount=available, expires_at=later, reference="t", idempotency_key=user)
    with pytest.raises(ledger.InsufficientCredits):
        _post(services, user, conversation, "hello", key=None)
    row, messages = chat.get_conversation(services, user_id=user, conversation_id=conversation)
    assert messages == []
    assert row.positions == 0  # the turn's reserved positions went back with it
