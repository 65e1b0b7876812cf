"""Job kinds: which queue runs them, how they are priced, and the step that does the work.

The registry imports no kind: the composition root (orchestration/bootstrap.py) registers them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row

from orchestration.context import RunContext


@dataclass(frozen=True)
class Quote:
    """A frozen price for one job: `amount` (micro-credits) is the most it can cost."""

    amount: int
    price_version: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The quote as stored on the job (integers only)."""
        return {"amount": self.amount, "price_version": self.price_version, **self.details}


class DryRunQuoted(Exception):
    """A dry run reached the point where the hold would be placed: `quote` is what the job would cost."""

    def __init__(self, quote: Quote) -> None:
        super().__init__(f"dry run quoted {quote.amount}")
        self.quote = quote


class QuoteError(ValueError):
    """The request can't be priced (unknown model, missing price, bad parameters)."""


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its queue, pricing function and `run` step, and how it may be run again."""

    name: str
    queue: str
    price: Callable[[Mapping[str, Any]], Quote]
    run: Callable[[RunContext], Mapping[str, Any]]
    model: Callable[[Mapping[str, Any]], str | None] = lambda _params: None
    route: Callable[[Mapping[str, Any]], str] | None = None
    # The time limit the job asks for (None: its queue's); never more than its queue's (limits.py).
    limit: Callable[[Mapping[str, Any]], int | None] | None = None
    # Whether `run` may start over when its worker died mid-step and the message came back: true for
    # steps whose effects are private until they return (a diagnostic, an agent task); false where
    # the user already saw part of the output (a streamed chat reply), which then ends failed instead.
    restartable: bool = True
    # Whether a job whose worker was lost (its heartbeat stale, no message coming back) is queued again
    # by the reaper to resume, rather than failed: for steps that left their work running elsewhere and
    # can find it again (an image job's stored provider id), so the work done upstream is not lost.
    resumable: bool = False
    # Called inside settle's transaction once the job ended `succeeded` or `canceled` (e.g. to
    # append a chat reply), so the domain change commits with the charge or not at all.
    on_settled: Callable[[Connection, Row[Any]], None] | None = None

    def queue_for(self, params: Mapping[str, Any]) -> str:
        """The queue this job runs on (a kind may route by its parameters)."""
        return self.route(params) if self.route else self.queue

    def requested_limit_s(self, params: Mapping[str, Any]) -> int | None:
        """Seconds this job asks to run at most (None: its queue's limit)."""
        return self.limit(params) if self.limit else None


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Make a kind available to job creation and to the workers."""
    _KINDS[kind.name] = kind
    return kind


def kind_names() -> list[str]:
    """The registered kinds' names, sorted."""
    return sorted(_KINDS)


def get_kind(name: str) -> JobKind:
    """The kind named `name`; KeyError naming the known kinds otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(sorted(_KINDS)) or "none (bootstrap() registers them)"
        raise KeyError(f"unknown job kind {name!r}; known: {known}") from None
