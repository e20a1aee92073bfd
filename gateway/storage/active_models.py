"""The durable "active model" of each language, with a short history for rollback.

In Redis (key `{prefix}:{env}:{lang}:active`, a JSON record) it outlives processes: a restarted or newly
scaled gateway loads it, and subscribers reconcile against it after every reconnect. In embedded mode it
lives in memory (one process; a restart falls back to the newest local model).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.errors import ActiveModelConflict, EventBusError
from gateway.settings import Settings
from gateway.storage import redis_client
from gateway.storage.model_store import ModelRef

logger = logging.getLogger(__name__)

MAX_HISTORY = 10

# Compare-and-set of one record (works on Redis Cluster, where WATCH/MULTI do not). KEYS: record.
# ARGV: the value read ("" = none), the new value. 1: set (or already set by this very call, repeated
# after a dropped connection); 0: someone changed it since it was read.
_CHANGE = """
local current = redis.call('get', KEYS[1])
if current == ARGV[2] then
    return 1
end
if (current or '') ~= ARGV[1] then
    return 0
end
redis.call('set', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class ActiveRecord:
    """The active model of one language and the ones active before it (newest first)."""

    current: ModelRef
    history: tuple[ModelRef, ...] = ()
    changed_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (also the Redis value)."""
        return {
            **self.current.to_json(),
            "changed_at": self.changed_at,
            "history": [ref.to_json() for ref in self.history],
        }

    @classmethod
    def from_json(cls, data: Any) -> ActiveRecord:
        """Parse the stored record; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("active model record must be a JSON object")
        history = data.get("history") or []
        if not isinstance(history, list):
            raise ValueError("active model history must be a list")
        return cls(
            current=ModelRef(str(data.get("model")), data.get("sha256")),
            history=tuple(
                ModelRef(str(h.get("model")), h.get("sha256")) for h in history if isinstance(h, dict)
            ),
            changed_at=float(data.get("changed_at") or 0.0),
        )

    def activated(self, ref: ModelRef) -> ActiveRecord:
        """This record after activating `ref` (the current model moves to the history)."""
        if ref == self.current:
            return self
        history = (self.current, *(h for h in self.history if h != ref))[:MAX_HISTORY]
        return ActiveRecord(ref, history)

    def rolled_back(self) -> ActiveRecord:
        """This record after going back to the model active before the current one."""
        if not self.history:
            raise ActiveModelConflict(f"nothing to roll back to: {self.current.model} has no predecessor")
        return ActiveRecord(self.history[0], self.history[1:])


def first_record(ref: ModelRef, previous: ModelRef | None) -> ActiveRecord:
    """The record of a language's first activation; `previous` is what was answering before."""
    return ActiveRecord(ref, (previous,) if previous is not None and previous != ref else ())


class ActiveModels(Protocol):
    """Read and change the active model per language."""

    async def get(self, lang: str) -> ActiveRecord | None:
        """The active record of `lang`, or None when nothing was activated yet."""

    async def activate(self, lang: str, ref: ModelRef, previous: ModelRef | None = None) -> ActiveRecord:
        """Make `ref` active; `previous` seeds the history when there is no record yet."""

    async def rollback(self, lang: str, expected: ModelRef) -> ActiveRecord:
        """Go back one model, if `expected` is still the active one (else ActiveModelConflict)."""


class InMemoryActiveModels:
    """Per-process active models (embedded mode)."""

    def __init__(self) -> None:
        self._records: dict[str, ActiveRecord] = {}

    async def get(self, lang: str) -> ActiveRecord | None:
        """The active record of `lang`, if any."""
        return self._records.get(lang)

    async def activate(self, lang: str, ref: ModelRef, previous: ModelRef | None = None) -> ActiveRecord:
        """Make `ref` active."""
        record = self._records.get(lang)
        self._records[lang] = record.activated(ref) if record else first_record(ref, previous)
        return self._records[lang]

    async def rollback(self, lang: str, expected: ModelRef) -> ActiveRecord:
        """Go back one model."""
        record = self._records.get(lang)
        if record is None or record.current != expected:
            raise ActiveModelConflict(f"the active {lang} model is no longer {expected.model}")
        self._records[lang] = record.rolled_back()
        return self._records[lang]


class RedisActiveModels:
    """Active models in Redis; changes are optimistic (compare-and-set) so replicas never clash."""

    def __init__(self, client: redis_client.RedisClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._change = client.register_script(_CHANGE)

    def key(self, lang: str) -> str:
        return redis_client.key(self.settings, lang, "active")

    async def get(self, lang: str) -> ActiveRecord | None:
        """The active record of `lang`, if any."""
        try:
            raw = await self.client.get(self.key(lang))
        except (RedisError, *redis_client.TRANSIENT_ERRORS) as exc:
            raise EventBusError(f"cannot read the active {lang} model from Redis: {exc}") from exc
        return self._parse(lang, raw)

    def _parse(self, lang: str, raw: bytes | None) -> ActiveRecord | None:
        if raw is None:
            return None
        try:
            return ActiveRecord.from_json(json.loads(raw))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            logger.error("ignoring the active %s model record in %s: %s", lang, self.key(lang), exc)
            return None

    async def activate(self, lang: str, ref: ModelRef, previous: ModelRef | None = None) -> ActiveRecord:
        """Make `ref` active."""

        def change(record: ActiveRecord | None) -> ActiveRecord:
            return record.activated(ref) if record else first_record(ref, previous)

        return await self._update(lang, change)

    async def rollback(self, lang: str, expected: ModelRef) -> ActiveRecord:
        """Go back one model, if `expected` is still the active one."""

        def change(record: ActiveRecord | None) -> ActiveRecord:
            if record is None or record.current != expected:
                raise ActiveModelConflict(f"the active {lang} model is no longer {expected.model}")
            return record.rolled_back()

        return await self._update(lang, change)

    async def _update(self, lang: str, change: Any) -> ActiveRecord:
        key = self.key(lang)
        # Two attempts: a pooled connection left over from before a Redis restart fails once, then a
        # fresh connection is used.
        for attempt in (1, 2):
            try:
                return await self._transaction(lang, key, change)
            except (RedisError, *redis_client.TRANSIENT_ERRORS) as exc:
                if attempt == 2 or not isinstance(exc, redis_client.TRANSIENT_ERRORS):
                    raise EventBusError(f"cannot change the active {lang} model in Redis: {exc}") from exc
                logger.debug("retrying the active %s model update after: %s", lang, exc)
        raise AssertionError("unreachable")

    async def _transaction(self, lang: str, key: str, change: Any) -> ActiveRecord:
        while True:
            raw = await self.client.get(key)
            record: ActiveRecord = change(self._parse(lang, raw))
            if await self._change(keys=[key], args=[raw or b"", json.dumps(record.to_json())]):
                return record
            # another process changed it meanwhile: re-read and retry
