"""Errors a `run` step raises to tell the saga what to do next."""

from __future__ import annotations


class StepError(Exception):
    """Base of the errors a step raises on purpose; the message is shown to the user."""

    code = "step_failed"


class RetryableError(StepError):
    """A passing failure (provider timeout, 429, 5xx): retry with backoff."""

    code = "retryable"


class FinalError(StepError):
    """A failure that another try won't fix (4xx, content refused): compensate now."""

    code = "final"


class DailyLimitExceeded(Exception):
    """The API key's daily credit limit can't cover this job's hold."""

    def __init__(self, *, limit: int, required: int) -> None:
        super().__init__("the API key's daily credit limit can't cover this job")
        self.limit = limit
        self.required = required


class JobKeyConflict(Exception):
    """An idempotency key already made a job for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the idempotency key {key!r} was used for a different request")
        self.key = key


class JobNotFound(LookupError):
    """No such job for this user."""


class JobAlreadyFinished(RuntimeError):
    """The job already ended; it can't be canceled any more."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job already ended ({status})")
        self.status = status


class PaymentRefused(Exception):
    """A payment request we refuse as asked (unknown pack, wrong state): the API answers `status`."""

    def __init__(self, message: str, *, kind: str, status: int = 422) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
