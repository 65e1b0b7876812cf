"""The settings of notifications (user webhooks, email): part of `runtime.settings.Settings`, which inherits
them. Webhooks are off until WEBHOOK_SECRET_KEY is set (their signing secrets are stored encrypted with
it); email is off until SMTP_HOST is set."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

# The Standard Webhooks schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE = "0,5,300,1800,7200,18000,36000,36000"


class NotifySettings(BaseSettings):
    """The settings of orchestration/notify (webhooks, their deliveries, email)."""

    # Fernet keys (urlsafe base64 of 32 bytes), comma-separated: the first encrypts, all decrypt (rotation).
    WEBHOOK_SECRET_KEY: str = ""
    # Seconds before each attempt (the first is at once), with +-WEBHOOK_RETRY_JITTER of each delay.
    WEBHOOK_RETRY_SCHEDULE_S: str = DEFAULT_SCHEDULE
    WEBHOOK_RETRY_JITTER: float = Field(0.1, ge=0, le=0.5)
    WEBHOOK_TIMEOUT_S: float = Field(15.0, gt=0, le=120)
    WEBHOOK_MAX_RESPONSE_BYTES: int = Field(64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # An endpoint whose every delivery failed for this long is disabled and its owner told.
    WEBHOOK_DISABLE_AFTER_S: int = Field(5 * 24 * 3600, ge=1)
    # A rotated secret keeps signing deliveries (beside the new one) for this long.
    WEBHOOK_ROTATION_GRACE_S: int = Field(24 * 3600, ge=0)
    # The longest Retry-After (429, 503) honoured; a longer one waits this long.
    WEBHOOK_MAX_RETRY_AFTER_S: int = Field(24 * 3600, ge=1)
    WEBHOOK_MAX_PER_USER: int = Field(10, ge=1, le=1000)
    # Beat's sweep: due retries and notifications whose fan-out was lost (a broker blip, a killed worker).
    NOTIFY_SWEEP_INTERVAL_S: float = Field(30.0, gt=0)
    # SMTP (email notifications): off while SMTP_HOST is empty.
    SMTP_HOST: str = ""
    SMTP_PORT: int = Field(587, ge=1, le=65535)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_SECURITY: str = Field("starttls", pattern="^(starttls|tls|none)$")
    SMTP_FROM: str = "creditflow <no-reply@localhost>"
    SMTP_TIMEOUT_S: float = Field(10.0, gt=0, le=120)
    # Which notifications are also emailed (to the user's address from their sign-in token).
    NOTIFY_EMAIL_EVENTS: str = "balance.low,balance.recovered,webhook.disabled"

    @field_validator("WEBHOOK_RETRY_SCHEDULE_S")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("comma-separated seconds, e.g. 0,5,300") from None
        if not delays or any(delay < 0 for delay in delays):
            raise ValueError("at least one delay, none negative")
        return value

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        """Seconds to wait before each attempt (the first is usually 0)."""
        return tuple(float(part) for part in self.WEBHOOK_RETRY_SCHEDULE_S.split(","))

    @property
    def email_events(self) -> frozenset[str]:
        """Notification types that are emailed as well."""
        return frozenset(part.strip() for part in self.NOTIFY_EMAIL_EVENTS.split(",") if part.strip())
