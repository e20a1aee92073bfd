"""`gateway migrate-keys` (a real subprocess) against a real redis-server holding old-layout conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.settings import load_settings
from gateway.storage.redis_client import conversation_key, legacy_conversation_key, make_client
from gateway.storage.redis_trackers import RedisTrackerStore
from tests.support import RedisServer
from tests.test_delivery import gateway
from tests.test_redis_storage import DOMAIN, a_tracker

SETTINGS = load_settings()
MANY = 1200  # more than one progress step (migrate_keys.PROGRESS_EVERY)


def old(lang: str, sender: str) -> str:
    return legacy_conversation_key(SETTINGS, lang, "tracker", sender)


def new(lang: str, sender: str) -> str:
    return conversation_key(SETTINGS, lang, "tracker", sender)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    made = make_client(redis_server.url, 2.0)
    assert isinstance(made, aioredis.Redis)
    try:
        yield made
    finally:
        await made.close(close_connection_pool=True)


async def test_migrate_keys_moves_old_layout_conversations_with_their_ttl_and_is_idempotent(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    # A real conversation, stored the way the gateway before hash tags stored it.
    store = RedisTrackerStore(client, SETTINGS, "en", DOMAIN)
    await store.save(a_tracker("en:talking", people="6"))
    await client.rename(new("en", "en:talking"), old("en", "en:talking"))
    await client.expire(old("en", "en:talking"), 500)
    await client.set(old("en", "en:forever"), b'{"name":"en:forever","events":[]}')  # ttl_seconds: 0
    await client.set(old("pl", "pl:cześć"), b'{"name":"pl","events":[]}', ex=900)
    # An interrupted earlier run: copied, not yet deleted.
    await client.set(old("en", "en:half"), b"half", ex=900)
    await client.set(new("en", "en:half"), b"half", ex=900)
    # Restarted under the new layout before the migration: both kept as they are.
    await client.set(old("en", "en:restarted"), b"older", ex=900)
    await client.set(new("en", "en:restarted"), b"newer", ex=900)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(MANY):
            pipe.set(old("de", f"de:{i}"), b"x", ex=900)
        await pipe.execute()
    untouched = {
        "gateway:production:en:lock:en:talking": b"a lease",  # old locks expire by themselves
        legacy_conversation_key(
            load_settings(overrides={"environment": "staging"}), "en", "tracker", "en:s"
        ): b"s",
        "someone-else:key": b"mine",
    }
    for name, value in untouched.items():
        await client.set(name, value)
    env = {"GATEWAY_REDIS_URL": redis_server.url}

    counted = gateway("migrate-keys", "--dry-run", env=env)
    assert counted.returncode == 0, counted.stderr
    assert f"{MANY + 5} keys would move" in counted.stdout
    assert await client.exists(new("en", "en:talking")) == 0

    done = gateway("migrate-keys", env=env)
    assert done.returncode == 0, done.stderr
    assert "1000 keys so far" in done.stdout
    assert (
        f"done: found {MANY + 5}, moved {MANY + 3}, finished 1, expired 0, kept 1, changed 0" in done.stdout
    )
    assert "1 old keys kept" in done.stdout

    # The gateway now finds the conversation under the new key, TTL carried over (not reset, not lost).
    tracker = await RedisTrackerStore(client, SETTINGS, "en", DOMAIN).retrieve("en:talking")
    assert tracker is not None and tracker.get_slot("people") == "6"
    assert 400 < await client.ttl(new("en", "en:talking")) <= 500
    assert await client.ttl(new("en", "en:forever")) == -1
    assert await client.get(new("pl", "pl:cześć")) == b'{"name":"pl","events":[]}'
    assert await client.get(new("de", "de:7")) == b"x" and 0 < await client.ttl(new("de", "de:7")) <= 900
    assert await client.get(new("en", "en:half")) == b"half"
    assert (await client.get(old("en", "en:restarted")), await client.get(new("en", "en:restarted"))) == (
        b"older",
        b"newer",
    )
    left = {bytes(k).decode() async for k in client.scan_iter(match="*:tracker:*")}
    assert left == {old("en", "en:restarted"), *(k for k in untouched if ":tracker:" in k)}
    for name, value in untouched.items():
        assert await client.get(name) == value

    again = gateway("migrate-keys", "en", env=env)
    assert again.returncode == 0, again.stderr
    assert "done: found 1, moved 0, finished 0, expired 0, kept 1, changed 0" in again.stdout


def test_migrate_keys_without_redis_says_what_to_set() -> None:
    done = gateway("migrate-keys", env={})
    assert done.returncode == 2
    assert "migrate-keys needs Redis: set redis.url (GATEWAY_REDIS_URL)" in done.stderr
