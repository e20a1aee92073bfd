"""Per-conversation locks shared by every gateway process: a Redis key with a lease.

The lock is `SET key token NX PX lease` and is released by a Lua script that deletes the key only while
it still holds our token (redis-py's `Lock`), so a holder that crashed frees the conversation when its
lease runs out, and a slow holder whose lease ran out cannot delete the next holder's lock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import LockError

from gateway import metrics
from gateway.errors import TrackerStoreUnavailable
from gateway.settings import Settings
from gateway.storage.locks import ConversationLocks, InMemoryLocks
from gateway.storage.redis_client import REDIS_ERRORS, key

logger = logging.getLogger(__name__)

# How often a waiting turn retries the lock of a conversation another process holds.
_POLL_SECONDS = 0.02


class RedisLocks:
    """Turns of one conversation run one after another across processes; others run in parallel."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.lease_seconds = settings.trackers.lock_lease_seconds
        # Wait at most half the request deadline for the previous turn; the other half is this turn's.
        self.wait_seconds = settings.server.deadline_seconds / 2
        # Turns queued in this process wait here instead of polling Redis.
        self._local = InMemoryLocks()
        if self.lease_seconds <= settings.server.deadline_seconds:
            logger.warning(
                "trackers.lock_lease_seconds=%s is not above server.deadline_seconds=%s: a slow turn may "
                "lose its lock and overlap the next turn of its conversation",
                self.lease_seconds,
                settings.server.deadline_seconds,
            )

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold conversation `name` ("{lang}:{sender}") in this process and in Redis."""
        lang, _, sender_id = name.partition(":")
        async with self._local.hold(name):
            lock = self.client.lock(
                key(self.settings, lang, "lock", sender_id),
                timeout=self.lease_seconds,
                sleep=_POLL_SECONDS,
                blocking_timeout=self.wait_seconds,
                thread_local=False,
            )
            try:
                acquired = await lock.acquire()
            except REDIS_ERRORS as exc:
                metrics.TRACKER_ERRORS.labels(lang, "lock").inc()
                raise TrackerStoreUnavailable(
                    f"redis lock of {lock.name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if not acquired:
                metrics.TRACKER_ERRORS.labels(lang, "lock_timeout").inc()
                raise TrackerStoreUnavailable(
                    f"conversation {sender_id} is still busy after {self.wait_seconds:.1f}s ({lock.name})"
                )
            try:
                yield
            finally:
                await self._release(lock, lang)

    async def _release(self, lock: aioredis.lock.Lock, lang: str) -> None:
        # Never fails the turn: it already ran, and an unreleased lock frees itself when its lease ends.
        try:
            await lock.release()
        except LockError as exc:
            metrics.TRACKER_ERRORS.labels(lang, "unlock").inc()
            logger.warning("lock %s expired before the turn finished: %s", lock.name, exc)
        except REDIS_ERRORS as exc:
            metrics.TRACKER_ERRORS.labels(lang, "unlock").inc()
            logger.warning("could not release lock %s (its lease frees it): %s", lock.name, exc)

    def __len__(self) -> int:
        return len(self._local)


def conversation_locks(settings: Settings, client: aioredis.Redis | None) -> ConversationLocks:
    """Redis locks when Redis is configured, else process-local ones."""
    if client is None:
        return InMemoryLocks()
    return RedisLocks(client, settings)
