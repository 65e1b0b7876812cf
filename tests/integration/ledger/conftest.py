"""Ledger test helpers: sessions on the fresh `engine`, a signing key, threads that start together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import ledger

T = TypeVar("T")
M = ledger.MICRO


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory on the fresh database."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture(scope="session")
def signing_key() -> str:
    """A PEM Ed25519 private key, like development settings generate."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def signer(signing_key: str) -> ledger.Signer:
    """The checkpoint signer."""
    return ledger.signer_from_key(signing_key)


def later(minutes: int = 10) -> datetime:
    """A moment in the future (hold expiry)."""
    return datetime.now(UTC) + timedelta(minutes=minutes)


def place_hold(session: Any, user: str, amount: int, key: str, **extra: Any) -> ledger.Hold:
    """A hold under `key`, expiring in ten minutes and referring to job-<key> unless told otherwise."""
    return ledger.hold(
        session,
        user_id=user,
        amount=amount,
        expires_at=extra.pop("expires_at", later()),
        reference=extra.pop("reference", f"job-{key}"),
        idempotency_key=key,
    )


def new_user(sessions: sessionmaker[Session], user_id: str, *, paid: int = 0) -> None:
    """Create the user's account (welcome grant) and optionally buy `paid` micro-credits."""
    with sessions.begin() as session:
        ledger.ensure_user_account(session, user_id=user_id)
        if paid:
            ledger.purchase(
                session,
                user_id=user_id,
                amount=paid,
                rail="stripe",
                reference=f"seed-{user_id}",
                idempotency_key=f"seed-{user_id}",
            )


def in_threads(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run work(i) on `count` threads released at the same moment; results or raised exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def check_ledger(sessions: sessionmaker[Session], signer: ledger.Signer) -> ledger.VerifyReport:
    """Seal everything, verify, and fail the test with the problems if anything is wrong."""
    with sessions.begin() as session:
        while ledger.seal(session, signer=signer):
            pass
    with sessions() as session:
        report = ledger.verify(session, verifier=signer.verifier)
    assert report.ok, report.problems
    return report
