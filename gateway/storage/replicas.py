"""Which model each replica answers with: every gateway process publishes a small heartbeat record.

A replica is one gateway process: each of `--workers N` in a host, each pod sharing one Redis. Each
writes `{prefix}:{env}:replicas:{name}:{pid}` (a JSON record: per language the answering model, its
sha256, the bot's state and the phase of its latest swap) with a TTL of three heartbeats, every
`server.heartbeat_seconds` and at once when one of its swaps changes phase, so the console sees each
replica move during an activation. A replica that stops removes its record; one that dies silently
drops off when the TTL runs out. Languages are [a-z]{2,3}, so `replicas` never meets a language's keys.

Publishing runs in its own task and never on the turn path. While Redis is away it logs once, keeps
trying every heartbeat and says when it is back; the list then shows this process alone, with why.
In embedded mode (no Redis) the list is this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys
from gateway.agents.pool import AgentPool
from gateway.settings import Settings
from gateway.storage.redis_client import REDIS_ERRORS, RedisClient

logger = logging.getLogger(__name__)

HEARTBEATS_PER_TTL = 3  # a replica that missed this many heartbeats is gone
_READ_BATCH = 200
_WITHDRAW_TIMEOUT_SECONDS = 2.0
_WITHDRAW_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, asyncio.TimeoutError)


def replica_id(settings: Settings) -> str:
    """`<server.replica_name or host name>:<pid>`: unique per process, readable in the console."""
    return f"{settings.server.replica_name or socket.gethostname()}:{os.getpid()}"


class Replicas:
    """This process's heartbeat record, and the records of every replica sharing its Redis."""

    def __init__(self, settings: Settings, client: RedisClient | None, pool: AgentPool) -> None:
        self.id = replica_id(settings)
        self.client = client
        self.pool = pool
        self.interval = settings.server.heartbeat_seconds
        self.ttl_ms = max(1, round(self.interval * HEARTBEATS_PER_TTL * 1000))
        self.prefix = f"{settings.redis.key_prefix}:{settings.environment}:replicas:"
        self.started = time.time()
        self._wake = asyncio.Event()
        self._published = True  # False while Redis refuses the heartbeat (log once, not every beat)

    def record(self) -> dict[str, Any]:
        """What this process answers with right now."""
        models: dict[str, Any] = {}
        for lang, bot in self.pool.bots.items():
            model, swap = bot.model, self.pool.progress.current(lang)
            models[lang] = {
                "model": model.name if model else None,
                "sha256": model.sha256 if model else None,
                "state": bot.state.value,
                "swap": {"model": swap["model"], "phase": swap["phase"]} if swap else None,
            }
        return {"replica": self.id, "started": self.started, "updated": time.time(), "models": models}

    def changed(self) -> None:
        """Republish now (a swap moved), instead of at the next heartbeat."""
        self._wake.set()

    async def run(self) -> None:
        """Publish every heartbeat and on every change, until cancelled."""
        while True:
            self._wake.clear()
            await self._publish()
            with contextlib.suppress(asyncio.TimeoutError):  # no change: the regular heartbeat
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _publish(self) -> None:
        if self.client is None:
            return
        try:
            await self.client.set(self.prefix + self.id, orjson.dumps(self.record()), px=self.ttl_ms)
        except REDIS_ERRORS as exc:
            if self._published:
                logger.warning("replica %s: cannot publish its heartbeat (will retry): %s", self.id, exc)
            self._published = False
            return
        if not self._published:
            logger.info("replica %s: heartbeat published again", self.id)
        self._published = True

    async def withdraw(self) -> None:
        """Remove this process's record (on shutdown), so the console stops listing it at once."""
        if self.client is None:
            return
        try:
            await asyncio.wait_for(self.client.delete(self.prefix + self.id), _WITHDRAW_TIMEOUT_SECONDS)
        except _WITHDRAW_ERRORS as exc:  # its TTL removes it a little later
            logger.info("replica %s: record left to expire: %s", self.id, exc)

    async def list(self) -> tuple[list[dict[str, Any]], str | None]:
        """Every live replica's record, this one fresh, sorted by id; plus why others are missing."""
        own = self.record()
        if self.client is None:
            return [own], None
        try:
            records = await self._read_all()
        except REDIS_ERRORS as exc:
            return [own], f"Redis is unavailable, showing this replica only: {exc}"
        records[self.id] = own  # fresher than its last heartbeat
        return [records[name] for name in sorted(records)], None

    async def _read_all(self) -> dict[str, dict[str, Any]]:
        assert self.client is not None
        # SCAN, not KEYS: never stalls Redis for the turns (on a cluster, redis-py walks every primary).
        keys = [bytes(k) async for k in self.client.scan_iter(match=self.prefix + "*", count=500)]
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), _READ_BATCH):
            async with self.client.pipeline(transaction=False) as pipe:
                for name in keys[start : start + _READ_BATCH]:
                    pipe.get(name)
                blobs = await pipe.execute()
            for name, blob in zip(keys[start : start + _READ_BATCH], blobs, strict=True):
                if blob is None:  # expired between SCAN and GET
                    continue
                try:
                    record = orjson.loads(blob)
                    out[str(record["replica"])] = record
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    shown = name.decode(errors="replace")
                    logger.warning("ignoring unreadable replica record %s: %s", shown, exc)
        return out


REPLICAS = web.AppKey("replicas", Replicas)


async def replica_heartbeat(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: publish this process's record until shutdown, then withdraw it."""
    replicas = Replicas(app[appkeys.SETTINGS], app[appkeys.REDIS], app[appkeys.POOL])
    app[REPLICAS] = replicas
    app[appkeys.POOL].progress.watch(replicas.changed)
    if replicas.client is None:  # embedded: the list is this process, computed when asked
        yield
        return
    task = asyncio.create_task(replicas.run(), name="replica-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        # Bounded: a cancellation swallowed inside redis-py must not hang shutdown.
        await asyncio.wait({task}, timeout=_WITHDRAW_TIMEOUT_SECONDS)
        await replicas.withdraw()
