"""The webhook with conversations in Redis, in process: state lands in Redis, faults become polite prompts."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import appkeys, metrics
from gateway.app import create_app
from gateway.settings import Settings, load_settings
from tests.support import RedisServer, builder_request, responses

UNAVAILABLE = "Sorry, I am temporarily unavailable. Please try again in a moment."

AiohttpClient = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
def redis_settings(models_dir: Path, redis_server: RedisServer) -> Settings:
    return load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": redis_server.url,
            "redis.socket_timeout_seconds": 0.5,
        }
    )


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, redis_settings: Settings, model_paths: dict[str, Path]
) -> TestClient:
    """The gateway app with only the English bot loaded (the others are not needed here)."""
    app = create_app(redis_settings, lambda _: {"en": model_paths["en"], "pl": None, "de": None})
    test_client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    assert app[appkeys.POOL].get("en").ready
    return test_client


async def say(client: TestClient, text: str, session: str) -> str:
    async with client.post("/webhook/google", json=builder_request(text, "en-US", session)) as resp:
        assert resp.status == 200
        body = await resp.json()
    return str(body["prompt"]["firstSimple"]["speech"])


def counter(metric: Any, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())


async def test_a_booking_is_kept_in_redis_under_the_language_key(
    client: TestClient, redis_server: RedisServer
) -> None:
    session = f"s-{uuid.uuid4().hex}"
    assert await say(client, "book a table", session) in responses("en", "utter_ask_people")
    assert await say(client, "4", session) in [
        t.replace("{people}", "4") for t in responses("en", "utter_booked")
    ]

    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        stored = await redis.get(f"gateway:production:en:{{en:{session}}}:tracker")
        assert await redis.keys("*}:lock") == []
    finally:
        await redis.close(close_connection_pool=True)
    events = orjson.loads(stored)["events"]
    assert [e["text"] for e in events if e["event"] == "user"] == ["book a table", "4"]
    assert {"event": "slot", "name": "people", "value": "4"}.items() <= next(
        e for e in events if e["event"] == "slot" and e["name"] == "people"
    ).items()


async def test_redis_down_gives_the_unavailable_prompt_then_service_resumes(
    client: TestClient, redis_server: RedisServer
) -> None:
    session = f"s-{uuid.uuid4().hex}"
    assert await say(client, "hello", session) in responses("en", "utter_greet")
    unavailable = counter(metrics.UNAVAILABLE, lang="en", reason="storage")
    lock_errors = counter(metrics.TRACKER_ERRORS, lang="en", operation="lock")

    redis_server.stop()
    assert await say(client, "hello", session) == UNAVAILABLE
    assert await say(client, "book a table", f"s-{uuid.uuid4().hex}") == UNAVAILABLE
    assert counter(metrics.UNAVAILABLE, lang="en", reason="storage") == unavailable + 2
    assert counter(metrics.TRACKER_ERRORS, lang="en", operation="lock") == lock_errors + 2

    redis_server.start()
    assert await say(client, "book a table", session) in responses("en", "utter_ask_people")
    assert await say(client, "2", session) in [
        t.replace("{people}", "2") for t in responses("en", "utter_booked")
    ]


async def test_a_stalled_redis_gives_a_polite_prompt_not_an_error(
    client: TestClient, redis_server: RedisServer
) -> None:
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "2500", "ALL")
        assert await say(client, "hello", f"s-{uuid.uuid4().hex}") == UNAVAILABLE
        await admin.execute_command("CLIENT", "UNPAUSE")
    finally:
        await admin.close(close_connection_pool=True)
    assert await say(client, "hello", f"s-{uuid.uuid4().hex}") in responses("en", "utter_greet")


async def test_the_gateway_starts_without_redis_and_connects_when_it_comes(
    aiohttp_client: AiohttpClient,
    redis_settings: Settings,
    model_paths: dict[str, Path],
    redis_server: RedisServer,
) -> None:
    redis_server.stop()
    app = create_app(redis_settings, lambda _: {"en": model_paths["en"], "pl": None, "de": None})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    assert await say(client, "hello", f"s-{uuid.uuid4().hex}") == UNAVAILABLE
    redis_server.start()
    assert await say(client, "hello", f"s-{uuid.uuid4().hex}") in responses("en", "utter_greet")
