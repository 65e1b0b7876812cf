"""Webhook signing secrets: `whsec_` + base64 of 24 random bytes, shown once, stored encrypted (Fernet,
with WEBHOOK_SECRET_KEY, which is not in the database), and the Standard Webhooks signatures made with
them (the `standardwebhooks` library)."""

from __future__ import annotations

import base64
import functools
import secrets
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from standardwebhooks.webhooks import Webhook

from orchestration.notify.errors import webhooks_off

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of the form, not a secret


def new_secret() -> str:
    """A fresh signing secret in the whsec_ form every Standard Webhooks library reads."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


@functools.lru_cache(maxsize=4)
def _box(keys: str) -> MultiFernet:
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    if not parts:
        raise webhooks_off("WEBHOOK_SECRET_KEY is not set")
    try:
        return MultiFernet([Fernet(part.encode()) for part in parts])
    except ValueError:
        raise webhooks_off("WEBHOOK_SECRET_KEY is not a Fernet key") from None


def check_keys(keys: str) -> None:
    """WebhookRefused (503) unless `keys` (WEBHOOK_SECRET_KEY) can encrypt secrets."""
    _box(keys)


def seal(keys: str, secret: str) -> str:
    """The secret encrypted with the first key."""
    return _box(keys).encrypt(secret.encode()).decode()


def unseal(keys: str, sealed: str) -> str:
    """The secret back; WebhookRefused (503) if none of the keys opens it (a key was dropped too early)."""
    try:
        return _box(keys).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise webhooks_off("a stored webhook secret does not open with WEBHOOK_SECRET_KEY") from None


def signature(secrets_in_use: list[str], *, msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret in use (a rotation signs with both)."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets_in_use)
