"""An open stream's lease: its slot in its user's cap and its API key, re-checked every half heartbeat."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from orchestration.jobs.stream_slots import Slot

log = logging.getLogger(__name__)


class LeaseKeeper(Protocol):
    """What refreshes a slot and checks a key (the stream server)."""

    async def refresh_slot(self, slot: Slot) -> bool: ...

    async def key_live(self, key_id: str) -> bool: ...


class KeyRevoked(Exception):
    """The API key a stream was opened with was revoked: the stream ends."""


class Lease:
    """An open stream's slot in its user's cap and its credential, both checked once `every_s` passed."""

    def __init__(
        self, streams: LeaseKeeper, slot: Slot | None, key_id: str | None, *, every_s: float
    ) -> None:
        self._streams, self._slot, self._key_id, self._every_s = streams, slot, key_id, every_s
        self._refreshed = time.monotonic()
        self.revoked = False

    async def kept(self) -> bool:
        """False once the lease was lost or the stream's API key revoked (the stream should end)."""
        nothing_held = self._slot is None and self._key_id is None
        if nothing_held or time.monotonic() - self._refreshed < self._every_s:
            return True
        self._refreshed = time.monotonic()
        if self._key_id is not None and not await self._streams.key_live(self._key_id):
            self.revoked = True
            return False
        if self._slot is None or await self._streams.refresh_slot(self._slot):
            return True
        log.warning("stream lease lost (its slot ran out and was taken, or Redis failed): the stream ends")
        return False
