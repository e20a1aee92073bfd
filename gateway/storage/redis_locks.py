"""Per-conversation locks shared by every gateway process: a Redis key with a lease.

The lock is `SET key token NX PX lease` and is released by a Lua script that deletes the key only while
it still holds our token, so a holder that crashed frees the conversation when its lease runs out, and a
slow holder whose lease ran out cannot delete the next holder's lock. With a TurnBuffer (see
turn_buffer.py) the acquiring script also reads the tracker and the releasing script also writes it,
only while the lock is still ours: two round trips per turn instead of four. Both keys of a script
carry the conversation's hash tag (redis_client.conversation_key), so on Redis Cluster they share a
slot and the script runs on the node that owns it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway import metrics
from gateway.errors import TrackerStoreUnavailable
from gateway.settings import Settings
from gateway.storage.locks import ConversationLocks, InMemoryLocks
from gateway.storage.redis_client import REDIS_ERRORS, RedisClient, conversation_key
from gateway.storage.turn_buffer import HeldTurn, TurnBuffer

logger = logging.getLogger(__name__)

# How often a waiting turn retries the lock of a conversation another process holds.
_POLL_SECONDS = 0.02

# Both scripts are single commands, so redis-py retries them on a dropped connection like any command
# (a pipeline would not be retried), and both are idempotent for that retry: the token decides.
# KEYS: lock, tracker. ARGV: token, lease ms, read the tracker? ("1"/"0").
# {1, blob or nil}: the lock is ours (taken now, or already ours when a retry repeats it); {0}: busy.
_ACQUIRE = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if redis.call('get', KEYS[1]) ~= ARGV[1] then
        return {0}
    end
    redis.call('pexpire', KEYS[1], ARGV[2])
end
if ARGV[3] == '1' then
    return {1, redis.call('get', KEYS[2])}
end
return {1}
"""

# KEYS: lock, tracker. ARGV: token, write? ("1"/"0"), blob, ttl seconds (0 = none).
# 1: released (and written); 0: the lock is no longer ours (its lease ran out): nothing touched.
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '1' then
    if tonumber(ARGV[4]) > 0 then
        redis.call('set', KEYS[2], ARGV[3], 'EX', ARGV[4])
    else
        redis.call('set', KEYS[2], ARGV[3])
    end
end
redis.call('del', KEYS[1])
return 1
"""


class RedisLocks:
    """Turns of one conversation run one after another across processes; others run in parallel."""

    def __init__(self, client: RedisClient, settings: Settings, turns: TurnBuffer | None = None) -> None:
        self.client = client
        self.settings = settings
        self.turns = turns
        self.lease_ms = max(1, int(settings.trackers.lock_lease_seconds * 1000))
        self.ttl_seconds = settings.trackers.ttl_seconds
        # Wait at most half the request deadline for the previous turn; the other half is this turn's.
        self.wait_seconds = settings.server.deadline_seconds / 2
        # Turns queued in this process wait here instead of polling Redis.
        self._local = InMemoryLocks()
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        if settings.trackers.lock_lease_seconds <= settings.server.deadline_seconds:
            logger.warning(
                "trackers.lock_lease_seconds=%s is not above server.deadline_seconds=%s: a slow turn may "
                "lose its lock and overlap the next turn of its conversation",
                settings.trackers.lock_lease_seconds,
                settings.server.deadline_seconds,
            )

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Hold conversation `name` ("{lang}:{sender}") in this process and in Redis."""
        lang, _, sender_id = name.partition(":")
        lock_key = conversation_key(self.settings, lang, "lock", sender_id)
        tracker_key = conversation_key(self.settings, lang, "tracker", sender_id)
        async with self._local.hold(name):
            token = uuid.uuid4().hex.encode()
            await self._acquire(lang, sender_id, lock_key, tracker_key, token)
            failed = True
            try:
                yield
                failed = False
            finally:
                turn = self.turns.end(tracker_key) if self.turns is not None else None
                await self._release(lang, lock_key, tracker_key, token, turn, failed)

    async def _acquire(
        self, lang: str, sender_id: str, lock_key: str, tracker_key: str, token: bytes
    ) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.wait_seconds
        read = b"1" if self.turns is not None else b"0"
        while True:
            try:
                # One round trip: the tracker is read with the lock, and only used when the lock is ours.
                reply = await self._acquire_script(
                    keys=[lock_key, tracker_key], args=[token, self.lease_ms, read]
                )
            except REDIS_ERRORS as exc:
                metrics.TRACKER_ERRORS.labels(lang, "lock").inc()
                raise TrackerStoreUnavailable(
                    f"redis lock of {lock_key} failed: {type(exc).__name__}: {exc}"
                ) from exc
            acquired = bool(reply and reply[0] == 1)
            stored = reply[1] if acquired and len(reply) > 1 else None
            if acquired:
                if self.turns is not None:
                    self.turns.begin(tracker_key, bytes(stored) if stored is not None else None)
                return
            if loop.time() >= give_up:
                metrics.TRACKER_ERRORS.labels(lang, "lock_timeout").inc()
                raise TrackerStoreUnavailable(
                    f"conversation {sender_id} is still busy after {self.wait_seconds:.1f}s ({lock_key})"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def _release(
        self, lang: str, lock_key: str, tracker_key: str, token: bytes, turn: HeldTurn | None, failed: bool
    ) -> None:
        """Release the lock (writing the turn's pending tracker); raises only when a write was lost.

        An unreleased lock frees itself when its lease ends, so a failed release alone never fails the
        turn; a turn whose tracker could not be stored does fail (unless it failed already).
        """
        pending = turn.pending if turn is not None else None
        args = [token, b"1" if pending is not None else b"0", pending or b"", self.ttl_seconds]
        try:
            released = await self._release_script(keys=[lock_key, tracker_key], args=args)
        except REDIS_ERRORS as exc:
            metrics.TRACKER_ERRORS.labels(lang, "save" if pending is not None else "unlock").inc()
            if pending is not None and not failed:
                raise TrackerStoreUnavailable(
                    f"redis tracker store: save of {tracker_key} failed: {type(exc).__name__}: {exc}"
                ) from exc
            logger.warning("could not release lock %s (its lease frees it): %s", lock_key, exc)
            return
        if not released:
            metrics.TRACKER_ERRORS.labels(lang, "unlock").inc()
            if pending is not None and not failed:
                raise TrackerStoreUnavailable(
                    f"lock {lock_key} expired before the turn was stored; {tracker_key} was left as it was"
                )
            logger.warning("lock %s expired before the turn finished", lock_key)
            return
        if pending is not None and turn is not None:
            for stored in turn.on_stored:  # only now are these events stored (and so published, once)
                stored()

    def __len__(self) -> int:
        return len(self._local)


def conversation_locks(
    settings: Settings, client: RedisClient | None, turns: TurnBuffer | None = None
) -> ConversationLocks:
    """Redis locks when Redis is configured (tracker reads and writes ride along via `turns`), else local."""
    if client is None:
        return InMemoryLocks()
    return RedisLocks(client, settings, turns)
