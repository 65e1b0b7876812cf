"""Job kinds: which queue runs them, how they are priced, and the step that does the work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

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


class QuoteError(ValueError):
    """The request can't be priced (unknown model, missing price, bad parameters)."""


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its queue, time limit, pricing function and `run` step."""

    name: str
    queue: str
    time_limit_s: int
    price: Callable[[Mapping[str, Any]], Quote]
    run: Callable[[RunContext], Mapping[str, Any]]
    model: Callable[[Mapping[str, Any]], str | None] = lambda _params: None
    route: Callable[[Mapping[str, Any]], str] | None = None
    limit: Callable[[Mapping[str, Any]], int] | None = None
    # Called inside settle's transaction once the job ended `succeeded` or `canceled` (e.g. to
    # append a chat reply), so the domain change commits with the charge or not at all.
    on_settled: Callable[[Session | Connection, Row[Any]], None] | None = None

    def queue_for(self, params: Mapping[str, Any]) -> str:
        """The queue this job runs on (a kind may route by its parameters)."""
        return self.route(params) if self.route else self.queue

    def time_limit_for(self, params: Mapping[str, Any]) -> int:
        """Seconds this job may run before the reaper fails it."""
        return self.limit(params) if self.limit else self.time_limit_s


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Make a kind available to job creation and to the workers."""
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    """The kind named `name`; KeyError naming the known kinds otherwise."""
    load_kinds()
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}") from None


def load_kinds() -> None:
    """Import every module that registers kinds (idempotent)."""
    import orchestration.agents  # registers the `agent` kind
    import orchestration.chat  # registers the `chat` kind
    import orchestration.diagnostic  # noqa: F401  (registers the `diagnostic` kind)
