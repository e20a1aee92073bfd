"""A Redis-backed turn costs two round trips: the tracker read rides on the lock, the write on its release.

Real redis-server, real trained bots. Round trips are counted on the connections themselves (each
`send_packed_command` is one request on the wire, a pipeline included).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from gateway.agents.pool import AgentPool
from gateway.errors import TrackerStoreUnavailable
from gateway.settings import Settings, load_settings
from gateway.storage.redis_client import make_client
from gateway.storage.redis_locks import RedisLocks
from gateway.storage.redis_trackers import RedisTrackerStore
from gateway.storage.trackers import tracker_stores_for
from gateway.storage.turn_buffer import TurnBuffer
from tests.support import RedisServer, responses

SENT: list[int] = [0]


class CountingConnection(Connection):  # type: ignore[misc]
    """A real connection that counts the requests it puts on the wire."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SENT[0] += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    pool = aioredis.ConnectionPool.from_url(redis_server.url, connection_class=CountingConnection)
    client = aioredis.Redis(connection_pool=pool)
    yield client
    await client.close(close_connection_pool=True)


@pytest.fixture
async def plain(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = make_client(redis_server.url, 2.0)
    yield client
    await client.close(close_connection_pool=True)


def redis_settings(models_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0, **overrides}
    )


async def pool_over(
    client: aioredis.Redis, settings: Settings, model_paths: dict[str, Path], turns: TurnBuffer | None
) -> AgentPool:
    pool = AgentPool(
        settings.bots, tracker_stores_for(settings, client, turns), RedisLocks(client, settings, turns)
    )
    await pool.load("en", model_paths["en"])
    return pool


async def round_trips(turn: Coroutine[Any, Any, Any]) -> int:
    """Requests sent while `turn` runs (nothing else talks to Redis meanwhile)."""
    before = SENT[0]
    await turn
    return SENT[0] - before


def said(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m["text"]) for m in messages if m.get("text"))


async def test_a_turn_costs_two_round_trips_with_the_buffer_and_four_without(
    counted: aioredis.Redis, models_dir: Path, model_paths: dict[str, Path]
) -> None:
    settings = redis_settings(models_dir)
    buffered = await pool_over(counted, settings, model_paths, TurnBuffer())
    unbuffered = await pool_over(counted, settings, model_paths, None)
    for pool, expected in ((buffered, 2), (unbuffered, 4)):
        # The very first release also loads the release script into Redis (EVALSHA, SCRIPT LOAD, EVALSHA).
        await pool.respond("en", f"en:warm-up-{uuid.uuid4().hex}", "hello")
        sender = f"en:{uuid.uuid4().hex}"
        script = ("hello", "I would like to book a table", "4", "bye")
        trips = []
        for text in script:
            trips.append(await round_trips(pool.respond("en", sender, text)))
        assert trips[1:] == [expected] * (len(script) - 1), trips
        # A conversation's first turn also saves its session start: one read and write more unbuffered.
        assert trips[0] == (2 if expected == 2 else 6), trips


async def test_buffered_turns_store_the_same_conversation_with_its_ttl(
    counted: aioredis.Redis, plain: aioredis.Redis, models_dir: Path, model_paths: dict[str, Path]
) -> None:
    settings = redis_settings(models_dir, **{"trackers.ttl_seconds": 600})
    pool = await pool_over(counted, settings, model_paths, TurnBuffer())
    sender = f"en:{uuid.uuid4().hex}"
    assert said(await pool.respond("en", sender, "I would like to book a table")) in responses(
        "en", "utter_ask_people"
    )
    assert said(await pool.respond("en", sender, "4")) in [
        t.replace("{people}", "4") for t in responses("en", "utter_booked")
    ]
    # What another process reads without any buffer: the whole conversation, slot filled, TTL refreshed.
    outsider = RedisTrackerStore(plain, settings, "en", pool.get("en").require_model().agent.domain)
    tracker = await outsider.retrieve(sender)
    assert tracker is not None and tracker.get_slot("people") == "4"
    assert 0 < await plain.ttl(outsider.key(sender)) <= 600
    assert await plain.keys("*}:lock") == []  # released
    assert len(pool.locks) == 0 and len(outsider.turns or []) == 0


async def test_a_turn_that_lost_its_lock_does_not_overwrite_the_next_holder(
    plain: aioredis.Redis, models_dir: Path, model_paths: dict[str, Path]
) -> None:
    settings = redis_settings(
        models_dir, **{"server.deadline_seconds": 0.1, "trackers.lock_lease_seconds": 0.2}
    )
    turns = TurnBuffer()
    locks = RedisLocks(plain, settings, turns)
    store = tracker_stores_for(settings, plain, turns)["en"]
    sender = f"en:{uuid.uuid4().hex}"
    lock_key, tracker_key = (
        f"gateway:production:en:{{{sender}}}:lock",
        f"gateway:production:en:{{{sender}}}:tracker",
    )
    with pytest.raises(TrackerStoreUnavailable, match="expired before the turn was stored"):
        async with locks.hold(f"en:{sender}"):
            tracker = await store.get_or_create_tracker(sender)
            await asyncio.sleep(0.4)  # the lease ran out; another process took the conversation and wrote
            assert await plain.set(lock_key, "next-holder", nx=True, px=60_000)
            await plain.set(tracker_key, b"the next holder's conversation")
            await store.save(tracker)  # kept for the release, which finds the lock gone
    assert await plain.get(tracker_key) == b"the next holder's conversation"
    assert await plain.get(lock_key) == b"next-holder"
    assert len(turns) == 0


async def test_a_failing_turn_still_stores_what_it_saved_and_releases(
    plain: aioredis.Redis, models_dir: Path
) -> None:
    settings = redis_settings(models_dir)
    turns = TurnBuffer()
    locks = RedisLocks(plain, settings, turns)
    store = tracker_stores_for(settings, plain, turns)["en"]
    sender = f"en:{uuid.uuid4().hex}"
    with pytest.raises(RuntimeError, match="after the save"):
        async with locks.hold(f"en:{sender}"):
            await store.save(await store.get_or_create_tracker(sender))
            raise RuntimeError("the turn failed after the save")
    outsider = tracker_stores_for(settings, plain)["en"]
    assert await outsider.retrieve(sender) is not None  # stored, as an immediate write would have been
    assert await plain.keys("*}:lock") == []


async def test_redis_gone_before_the_release_fails_the_turn_politely(
    models_dir: Path, redis_server: RedisServer
) -> None:
    client = make_client(redis_server.url, 0.5)
    try:
        settings = redis_settings(models_dir)
        turns = TurnBuffer()
        locks = RedisLocks(client, settings, turns)
        store = tracker_stores_for(settings, client, turns)["en"]
        sender = f"en:{uuid.uuid4().hex}"
        with pytest.raises(TrackerStoreUnavailable, match=r"save of \S+\}:tracker"):
            async with locks.hold(f"en:{sender}"):
                await store.save(await store.get_or_create_tracker(sender))
                redis_server.stop()
        assert len(turns) == 0 and len(locks) == 0
        redis_server.start()
        async with locks.hold(f"en:{sender}"):  # and the next turn works again
            assert await store.retrieve(sender) is None  # the failed turn stored nothing
    finally:
        await client.close(close_connection_pool=True)
