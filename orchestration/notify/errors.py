"""Refusals of the notification use cases; the API answers each as problem+json with its status."""

from __future__ import annotations


class WebhookRefused(Exception):
    """A webhook request refused as asked (webhooks off, a bad URL, too many endpoints, not found)."""

    def __init__(self, message: str, *, kind: str, status: int = 422) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def webhooks_off(reason: str) -> WebhookRefused:
    """Webhooks are not configured here (503, failing closed)."""
    return WebhookRefused(f"Webhooks are not available here: {reason}.", kind="webhooks-disabled", status=503)
