"""Email notifications through the SMTP server of the settings (off while SMTP_HOST is empty)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from runtime.settings import Settings

SUBJECTS = {
    "balance.low": "Your creditflow balance is low",
    "balance.recovered": "Your creditflow balance is back up",
    "webhook.disabled": "A creditflow webhook endpoint was disabled",
}


def enabled(settings: Settings) -> bool:
    """Whether email is configured."""
    return bool(settings.SMTP_HOST)


def message(settings: Settings, *, to: str, event_type: str, data: Mapping[str, Any]) -> EmailMessage:
    """The email telling `to` about one notification (plain text, only the notification's own fields)."""
    mail = EmailMessage()
    mail["From"] = settings.SMTP_FROM
    mail["To"] = to
    mail["Subject"] = SUBJECTS.get(event_type, f"creditflow: {event_type}")
    lines = [SUBJECTS.get(event_type, event_type) + "."] + [
        f"{key}: {value}" for key, value in sorted(data.items())
    ]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def send(settings: Settings, mail: EmailMessage) -> None:
    """Hand one message to the SMTP server (STARTTLS, implicit TLS, or none, as SMTP_SECURITY says)."""
    timeout = settings.SMTP_TIMEOUT_S
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if settings.SMTP_SECURITY == "tls":
        client = smtplib.SMTP_SSL(settings.SMTP_HOST, settings.SMTP_PORT, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=timeout)
    with client:
        if settings.SMTP_SECURITY == "starttls":
            client.starttls(context=context)
        if settings.SMTP_USERNAME:
            client.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD)
        client.send_message(mail)
