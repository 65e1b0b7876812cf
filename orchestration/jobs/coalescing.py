"""Coalesced `token` events: text deltas arriving within a short window go out as one stream entry.

A model streams a delta every few milliseconds; one Redis entry and one SSE write per delta cost the
worker, Redis and every reader more than the text itself. A `TokenCoalescer` publishes a delta at once
when the job's last token event is at least a window old (so the first token never waits), and
otherwise keeps it until the window closes, adding what arrives meanwhile. One thread per process
closes the windows of every job, so a pause of the model never holds back text already received.
The concatenation of the events' texts is exactly the text given, in order.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable


class TokenCoalescer:
    """Batches one job's text deltas into token events, at most one per `window_s`."""

    def __init__(self, publish: Callable[[str], None], window_s: float) -> None:
        self._publish = publish
        self._window_s = window_s
        self._pending: list[str] = []
        self._last_sent = float("-inf")
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        """Take a delta: published now if the window is open, else with the rest of this window's."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            if len(self._pending) > 1:
                return  # a flush is already due for this window
            due = self._last_sent + self._window_s
            if time.monotonic() >= due:
                self._send()
                return
        _flusher().schedule(due, self)

    def flush(self) -> None:
        """Publish whatever is pending now (before another event, and when the step ends)."""
        with self._lock:
            if self._pending:
                self._send()

    def _send(self) -> None:
        text, self._pending = "".join(self._pending), []
        self._last_sent = time.monotonic()
        self._publish(text)  # under the lock: events of one job keep their order


class _Flusher:
    """One daemon thread closing the due windows of every coalescer in this process."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, TokenCoalescer]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        threading.Thread(target=self._loop, name="token-flusher", daemon=True).start()

    def schedule(self, due: float, coalescer: TokenCoalescer) -> None:
        with self._wake:
            heapq.heappush(self._due, (due, next(self._order), coalescer))
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(timeout=self._due[0][0] - time.monotonic() if self._due else None)
                _due, _order, coalescer = heapq.heappop(self._due)
            coalescer.flush()  # a publish that fails is logged by the publisher (events are best effort)


_flushers: dict[int, _Flusher] = {}
_flushers_lock = threading.Lock()


def _flusher() -> _Flusher:
    pid = os.getpid()  # a forked pool child starts its own thread
    with _flushers_lock:
        if pid not in _flushers:
            _flushers.clear()
            _flushers[pid] = _Flusher()
        return _flushers[pid]
