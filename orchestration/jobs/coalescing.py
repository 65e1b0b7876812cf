"""Coalesced `token` events: text deltas arriving within a short window go out as one stream entry.

A model streams a delta every few milliseconds; one Redis entry and one SSE write per delta cost the
worker, Redis and every reader more than the text itself. A `TokenCoalescer` publishes a delta at once
when the job's last token event is at least a window old (so the first token never waits), and
otherwise keeps it until the window closes, adding what arrives meanwhile. One thread per process
closes the windows of every job, so a pause of the model never holds back text already received.
The concatenation of the events' texts is exactly the text given, in order.

First token first: under load the window widens with the replies streaming in this process (beyond
`streams_at_base` of them, in proportion, up to `max_window_s`), while a reply's first delta still goes
out at once. Replies already streaming then cost fewer Redis entries and SSE writes per token, and the
CPU they leave goes to new replies' first tokens.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable


class _Streaming:
    """How many replies of this process are streaming (sent a first token and not closed)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def change(self, by: int) -> None:
        with self._lock:
            self.count += by


_streaming = _Streaming()


def streaming_replies() -> int:
    """Replies of this process between their first token and their end."""
    return _streaming.count


class TokenCoalescer:
    """Batches one job's text deltas into token events, at most one per window (see the module)."""

    def __init__(
        self,
        publish: Callable[[str], None],
        window_s: float,
        *,
        max_window_s: float | None = None,
        streams_at_base: int = 16,
    ) -> None:
        self._publish = publish
        self._window_s = window_s
        self._max_window_s = max(window_s, max_window_s if max_window_s is not None else window_s)
        self._streams_at_base = max(1, streams_at_base)
        self._pending: list[str] = []
        self._last_sent = float("-inf")
        self._counted = False
        self._lock = threading.Lock()

    def window_s(self) -> float:
        """This instant's window: the base one, widened while more replies stream than `streams_at_base`."""
        load = _streaming.count / self._streams_at_base
        return min(self._max_window_s, self._window_s * max(1.0, load))

    def add(self, text: str) -> None:
        """Take a delta: published now if the window is open, else with the rest of this window's."""
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            if len(self._pending) > 1:
                return  # a flush is already due for this window
            if not self._counted:
                self._counted = True
                _streaming.change(+1)
            due = self._last_sent + self.window_s()
            if time.monotonic() >= due:
                self._send()
                return
        _flusher().schedule(due, self)

    def flush(self) -> None:
        """Publish whatever is pending now (before another event, and when the step ends)."""
        with self._lock:
            if self._pending:
                self._send()

    def close(self) -> None:
        """The reply ended: publish what is pending and stop counting it among the streaming ones."""
        with self._lock:
            if self._pending:
                self._send()
            if self._counted:
                self._counted = False
                _streaming.change(-1)

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
