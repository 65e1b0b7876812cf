"""The `diagnostic` job kind: exercises the whole pipeline (sleep, progress, tokens, failures).

Operators use it to smoke-test a deployment; tests and benchmarks drive the machinery with it.
It is refused in production unless DIAGNOSTIC_JOBS_ENABLED says otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestration.context import RunContext
from orchestration.errors import FinalError, RetryableError
from orchestration.jobs.kinds import JobKind, Quote

PRICE_VERSION = "diagnostic-1"


def price(params: Mapping[str, Any]) -> Quote:
    """Steps x cost per step (at least one micro-credit, so there is always a hold)."""
    amount = max(1, int(params.get("steps", 3)) * int(params.get("cost_per_step", 1000)))
    return Quote(amount=amount, price_version=PRICE_VERSION, details={"steps": int(params.get("steps", 3))})


def run(ctx: RunContext) -> Mapping[str, Any]:
    """Do `steps` steps of `sleep_ms`, each charged, reporting progress; fail or retry on demand."""
    steps = int(ctx.params.get("steps", 3))
    sleep_s = int(ctx.params.get("sleep_ms", 0)) / 1000
    fail_at = ctx.params.get("fail_at_step")
    retryable_failures = int(ctx.params.get("retryable_failures", 0))
    cost = int(ctx.params.get("cost_per_step", 1000))
    if ctx.attempt <= retryable_failures:
        raise RetryableError(f"injected retryable failure on attempt {ctx.attempt}")
    done = 0
    for step in range(1, steps + 1):
        if ctx.should_stop():
            break
        if sleep_s:
            time.sleep(sleep_s)
        if fail_at is not None and step == int(fail_at):
            raise FinalError(f"injected failure at step {step}")
        ctx.charge(cost)
        if ctx.params.get("tokens"):
            ctx.token(f"step {step} ")
        ctx.progress("work", step, steps)
        done = step
    return {"steps_done": done, "attempt": ctx.attempt}


DIAGNOSTIC = JobKind(
    name="diagnostic",
    queue="interactive",
    price=price,
    run=run,
    route=lambda params: str(params.get("queue", "interactive")),
    limit=lambda params: int(params["time_limit_s"]) if params.get("time_limit_s") else None,
)
