"""Conversations in Redis: one key per conversation, shared by every gateway process.

Rasa's own RedisTrackerStore calls the blocking client inside `async def` methods; this one uses the
process's pooled `redis.asyncio` client, so the event loop never waits on a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from gateway import metrics
from gateway.errors import TrackerStoreUnavailable
from gateway.settings import Settings
from gateway.storage.event_log import EventLogTrackerStore, Stored
from gateway.storage.redis_client import REDIS_ERRORS, RedisClient, conversation_key
from gateway.storage.turn_buffer import TurnBuffer

logger = logging.getLogger(__name__)

_READ_BATCH = 200  # conversations read per round trip when listing


class RedisTrackerStore(EventLogTrackerStore):
    """Key `{prefix}:{env}:{lang}:{{sender}}:tracker` holds a conversation; idle keys expire (TTL).

    With a TurnBuffer shared with the conversation locks, a turn's read and write ride on the lock's
    round trips (see turn_buffer.py); outside a held turn the store reads and writes Redis itself.
    """

    backend = "redis"

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        lang: str,
        domain: Any = None,
        turns: TurnBuffer | None = None,
    ) -> None:
        super().__init__(lang, domain)
        self.client = client
        self.turns = turns
        self.ttl_seconds = settings.trackers.ttl_seconds
        self.settings = settings
        # Every tracker key of this language is head + sender + tail (see conversation_key).
        self.head, self.tail = conversation_key(settings, lang, "tracker", "").split("{}")
        self.head += "{"
        self.tail = "}" + self.tail

    def key(self, sender_id: str) -> str:
        """The Redis key holding `sender_id`'s conversation."""
        return conversation_key(self.settings, self.lang, "tracker", sender_id)

    def _unavailable(self, operation: str, sender_id: str, exc: BaseException) -> TrackerStoreUnavailable:
        metrics.TRACKER_ERRORS.labels(self.lang, operation).inc()
        return TrackerStoreUnavailable(
            f"redis tracker store: {operation} of {self.key(sender_id)} failed: {type(exc).__name__}: {exc}"
        )

    async def _read(self, sender_id: str, operation: str) -> bytes | None:
        if self.turns is not None:
            known, blob = self.turns.read(self.key(sender_id))
            if known:
                return blob
        try:
            blob = await self.client.get(self.key(sender_id))
        except REDIS_ERRORS as exc:
            raise self._unavailable(operation, sender_id, exc) from exc
        return bytes(blob) if blob is not None else None

    async def _write(self, sender_id: str, blob: bytes, stored: Stored | None = None) -> None:
        # One SET replaces the whole conversation and refreshes its TTL: readers see old or new, never half.
        if self.turns is not None and self.turns.write(self.key(sender_id), blob, stored):
            return  # written by the lock's release, together with it (which then calls `stored`)
        try:
            await self.client.set(self.key(sender_id), blob, ex=self.ttl_seconds or None)
        except REDIS_ERRORS as exc:
            raise self._unavailable("save", sender_id, exc) from exc
        if stored is not None:
            stored()

    async def _delete(self, sender_id: str) -> bool:
        # A turn running right now on this conversation writes it again when it ends: erasure applies to
        # what is stored, and the console deletes conversations that are over.
        try:
            return bool(await self.client.delete(self.key(sender_id)))
        except REDIS_ERRORS as exc:
            raise self._unavailable("delete", sender_id, exc) from exc

    async def _read_many(self, sender_ids: Sequence[str]) -> list[bytes | None]:
        # One round trip per batch, not per conversation (a cluster pipeline splits it per node).
        out: list[bytes | None] = []
        try:
            for start in range(0, len(sender_ids), _READ_BATCH):
                async with self.client.pipeline(transaction=False) as pipe:
                    for sender_id in sender_ids[start : start + _READ_BATCH]:
                        pipe.get(self.key(sender_id))
                    out.extend(bytes(blob) if blob is not None else None for blob in await pipe.execute())
        except REDIS_ERRORS as exc:
            raise self._unavailable("list", "*", exc) from exc
        return out

    async def _senders(self) -> list[str]:
        # SCAN, not KEYS: it does not stall Redis for other clients while walking a large keyspace
        # (on a cluster, redis-py walks every primary in turn).
        head, tail = len(self.head), len(self.tail)
        try:
            return [
                bytes(found)[head:-tail].decode()
                async for found in self.client.scan_iter(match=f"{self.head}*{self.tail}", count=500)
            ]
        except REDIS_ERRORS as exc:
            raise self._unavailable("keys", "*", exc) from exc
