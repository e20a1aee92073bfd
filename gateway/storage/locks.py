"""Per-conversation locks: turns of one conversation run one after another, others in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class ConversationLocks(Protocol):
    """Serialises turns per conversation key."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Async context manager held while one turn of `key` ("{lang}:{sender}") runs."""
        ...


class InMemoryLocks:
    """Process-local locks; entries are dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
