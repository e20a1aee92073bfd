"""The embedded tracker store: conversations in this process's memory, forgotten after the TTL."""

from __future__ import annotations

import time
from typing import Any

from gateway.storage.event_log import EventLogTrackerStore, Stored

# Expired conversations are swept out every this many saves, so memory stays bounded without a timer.
_SWEEP_EVERY = 1000


class InMemoryTrackerStore(EventLogTrackerStore):
    """One process's conversations; the same contract as the Redis store, without sharing."""

    backend = "memory"

    def __init__(self, lang: str, ttl_seconds: int = 0, domain: Any = None) -> None:
        super().__init__(lang, domain)
        self.ttl_seconds = ttl_seconds
        # sender -> (monotonic expiry or None, blob); shared by the per-model copies of this store.
        self._blobs: dict[str, tuple[float | None, bytes]] = {}
        self._writes = 0

    async def _read(self, sender_id: str, operation: str) -> bytes | None:
        entry = self._blobs.get(sender_id)
        if entry is None:
            return None
        expires, blob = entry
        if expires is not None and expires <= time.monotonic():
            self._blobs.pop(sender_id, None)
            return None
        return blob

    async def _write(self, sender_id: str, blob: bytes, stored: Stored | None = None) -> None:
        now = time.monotonic()
        self._blobs[sender_id] = (now + self.ttl_seconds if self.ttl_seconds else None, blob)
        if stored is not None:
            stored()
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep(now)

    async def _senders(self) -> list[str]:
        now = time.monotonic()
        return [s for s, (expires, _) in self._blobs.items() if expires is None or expires > now]

    async def _delete(self, sender_id: str) -> bool:
        return self._blobs.pop(sender_id, None) is not None

    def _sweep(self, now: float) -> None:
        expired = [s for s, (expires, _) in self._blobs.items() if expires is not None and expires <= now]
        for sender_id in expired:
            del self._blobs[sender_id]
