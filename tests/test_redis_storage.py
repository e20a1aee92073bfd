"""Redis specifics against a real redis-server: key layout, TTL, one-SET saves, faults, conversation locks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import metrics
from gateway.errors import TrackerStoreUnavailable
from gateway.settings import ROOT, Settings, load_settings
from gateway.storage.redis_client import make_client
from gateway.storage.redis_locks import RedisLocks
from gateway.storage.redis_trackers import RedisTrackerStore
from tests.support import RedisServer

DOMAIN = Domain.load(str(ROOT / "bots" / "en" / "domain.yml"))

ClientFactory = Callable[..., aioredis.Redis]


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[ClientFactory]:
    """Independent pooled clients of the test's redis-server, like separate gateway processes have."""
    made: list[aioredis.Redis] = []

    def factory(socket_timeout: float = 2.0) -> aioredis.Redis:
        made.append(make_client(redis_server.url, socket_timeout))
        return made[-1]

    yield factory
    for client in made:
        await client.close(close_connection_pool=True)


def settings_with(**overrides: Any) -> Settings:
    return load_settings(overrides=overrides)


def store_for(
    client: aioredis.Redis, settings: Settings | None = None, lang: str = "en"
) -> RedisTrackerStore:
    return RedisTrackerStore(client, settings or settings_with(), lang, DOMAIN)


def a_tracker(sender: str, people: str = "4") -> DialogueStateTracker:
    events = [
        ActionExecuted("action_listen", timestamp=1.0),
        UserUttered(people, timestamp=2.0),
        SlotSet("people", people, timestamp=3.0),
    ]
    return DialogueStateTracker.from_events(sender, events, DOMAIN.slots)


def counter(name: Any, **labels: str) -> float:
    return float(name.labels(**labels)._value.get())


async def test_keys_follow_prefix_environment_language_layout(clients: ClientFactory) -> None:
    client = clients()
    settings = settings_with(**{"redis.key_prefix": "acme-bot", "environment": "staging"})
    await store_for(client, settings, "pl").save(a_tracker("pl:session-1"))
    assert await client.keys("*") == [b"acme-bot:staging:pl:{pl:session-1}:tracker"]


async def test_every_save_sets_and_refreshes_the_ttl(clients: ClientFactory) -> None:
    client = clients()
    store = store_for(client, settings_with(**{"trackers.ttl_seconds": 600}))
    await store.save(a_tracker("en:ttl"))
    key = store.key("en:ttl")
    assert 0 < await client.pttl(key) <= 600_000
    await client.expire(key, 5)
    await store.save(a_tracker("en:ttl"))
    assert 5_000 < await client.pttl(key) <= 600_000


async def test_ttl_zero_stores_without_expiry(clients: ClientFactory) -> None:
    client = clients()
    store = store_for(client, settings_with(**{"trackers.ttl_seconds": 0}))
    await store.save(a_tracker("en:forever"))
    assert await client.ttl(store.key("en:forever")) == -1


async def test_a_save_writes_the_conversation_with_one_set(clients: ClientFactory) -> None:
    client = clients()
    store = store_for(client)
    await store.save(a_tracker("en:one-set"))
    tracker = await store.retrieve("en:one-set")
    assert tracker is not None
    tracker.update(UserUttered("more", timestamp=4.0))
    await client.config_resetstat()
    await store.save(tracker)
    stats = await client.info("commandstats")
    writes = {name: s["calls"] for name, s in stats.items() if name != "cmdstat_get"}
    # Nothing but one SET changes the key (the INFO call itself is counted too).
    assert writes.pop("cmdstat_set") == 1
    assert set(writes) <= {"cmdstat_info", "cmdstat_config|resetstat"}


async def test_an_outage_is_reported_and_the_client_reconnects(
    clients: ClientFactory, redis_server: RedisServer
) -> None:
    store = store_for(clients(socket_timeout=0.5))
    await store.save(a_tracker("en:outage"))
    before = counter(metrics.TRACKER_ERRORS, lang="en", operation="retrieve")

    redis_server.stop()
    with pytest.raises(TrackerStoreUnavailable) as failed:
        await store.retrieve("en:outage")
    assert isinstance(failed.value.__cause__, RedisConnectionError | ConnectionError | OSError)
    with pytest.raises(TrackerStoreUnavailable):
        await store.save(a_tracker("en:outage"))
    with pytest.raises(TrackerStoreUnavailable):
        await store.keys()
    assert counter(metrics.TRACKER_ERRORS, lang="en", operation="retrieve") == before + 1

    redis_server.start()  # same port, empty data (the test server does not persist)
    assert await store.retrieve("en:outage") is None
    await store.save(a_tracker("en:outage", people="6"))
    back = await store.retrieve("en:outage")
    assert back is not None and back.get_slot("people") == "6"


async def test_a_stalled_redis_times_out_into_unavailable(clients: ClientFactory) -> None:
    admin, client = clients(), clients(socket_timeout=0.2)
    store = store_for(client)
    await store.save(a_tracker("en:slow"))
    await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
    try:
        with pytest.raises(TrackerStoreUnavailable) as failed:
            await store.retrieve("en:slow")
        assert isinstance(failed.value.__cause__, RedisTimeoutError | TimeoutError)
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
    assert await store.retrieve("en:slow") is not None


def locks_for(client: aioredis.Redis, deadline: float = 2.0, lease: float = 5.0) -> RedisLocks:
    settings = settings_with(**{"server.deadline_seconds": deadline, "trackers.lock_lease_seconds": lease})
    return RedisLocks(client, settings)


async def test_turns_of_one_conversation_never_overlap_across_processes(clients: ClientFactory) -> None:
    # Two lock sets over two clients stand for two gateway processes racing on one conversation.
    data = clients()
    process_a, process_b = locks_for(clients(), deadline=30), locks_for(clients(), deadline=30)
    active: list[int] = []
    overlaps = 0

    async def turn(locks: RedisLocks) -> None:
        nonlocal overlaps
        async with locks.hold("en:en:shared"):
            active.append(1)
            overlaps += len(active) > 1
            value = int(await data.get("counter") or 0)
            await asyncio.sleep(0.002)
            await data.set("counter", value + 1)
            active.pop()

    await asyncio.gather(*(turn(process_a if i % 2 else process_b) for i in range(60)))
    assert overlaps == 0
    assert int(await data.get("counter")) == 60
    assert await data.keys("*}:lock") == []  # every lock released
    assert len(process_a) == len(process_b) == 0


async def test_other_conversations_run_in_parallel(clients: ClientFactory) -> None:
    locks = locks_for(clients())
    inside = asyncio.Event()

    async def first() -> None:
        async with locks.hold("en:en:one"):
            await asyncio.wait_for(inside.wait(), 5)

    async def second() -> None:
        async with locks.hold("en:en:two"):
            inside.set()

    await asyncio.gather(first(), second())


async def test_a_crashed_holder_frees_the_conversation_when_its_lease_ends(clients: ClientFactory) -> None:
    client = clients()
    # A process took the lock with a short lease and died without releasing it.
    await client.set("gateway:production:en:{en:crashed}:lock", "dead-token", px=300)
    async with locks_for(client, deadline=4.0).hold("en:en:crashed"):
        assert await client.get("gateway:production:en:{en:crashed}:lock") != b"dead-token"


async def test_a_conversation_busy_past_the_wait_is_refused(clients: ClientFactory) -> None:
    client = clients()
    await client.set("gateway:production:en:{en:busy}:lock", "other-process", px=60_000)
    before = counter(metrics.TRACKER_ERRORS, lang="en", operation="lock_timeout")
    with pytest.raises(TrackerStoreUnavailable, match="busy"):
        async with locks_for(client, deadline=0.2).hold("en:en:busy"):
            pytest.fail("entered a conversation another process holds")
    assert counter(metrics.TRACKER_ERRORS, lang="en", operation="lock_timeout") == before + 1
    assert await client.get("gateway:production:en:{en:busy}:lock") == b"other-process"


async def test_an_expired_holder_does_not_release_the_next_holders_lock(clients: ClientFactory) -> None:
    client = clients()
    key = "gateway:production:en:{en:slow-turn}:lock"
    async with locks_for(client, deadline=0.1, lease=0.2).hold("en:en:slow-turn"):
        await asyncio.sleep(0.4)  # the lease ran out; another process takes the conversation
        assert await client.set(key, "next-holder", nx=True, px=60_000)
    assert await client.get(key) == b"next-holder"


async def test_locks_fail_fast_when_redis_is_down(clients: ClientFactory, redis_server: RedisServer) -> None:
    locks = locks_for(clients(socket_timeout=0.5))
    redis_server.stop()
    with pytest.raises(TrackerStoreUnavailable, match="lock"):
        async with locks.hold(f"en:en:{uuid.uuid4().hex}"):
            pytest.fail("held a lock without Redis")
    assert len(locks) == 0
    redis_server.start()
    async with locks.hold("en:en:after"):
        pass
