"""Waiting in tests for what another process does: poll a condition, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30, what: str = "condition", every: float = 0.1
) -> Any:
    """Poll until `predicate()` is truthy (every `every` seconds); return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not met in {timeout}s")
