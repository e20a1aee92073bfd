"""Fixtures for model swaps: a second, distinguishable English model and gateways wired to Redis + S3."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway import appkeys, metrics
from gateway.app import create_app
from gateway.settings import Settings, load_settings
from gateway.storage.active_models import RedisActiveModels
from gateway.storage.model_store import ModelRef, sha256_file
from gateway.storage.redis_client import make_client
from gateway.storage.s3_model_store import S3ModelStore
from tests.conftest import model_cache
from tests.support import RedisServer, S3Server, builder_request, eventually, responses, train_variant

ADMIN_TOKEN = "swap-tests-admin-token-0123456789"
NEW_GREETING = "Welcome back! You are now talking to the new English model."


@dataclass(frozen=True)
class EnModels:
    """The current English model (v1), a retrained copy that greets differently (v2), a corrupt archive."""

    v1: Path
    v2: Path
    corrupt: Path

    def ref(self, path: Path) -> ModelRef:
        return ModelRef(path.name, sha256_file(path))


@pytest.fixture(scope="session")
def en_models(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> EnModels:
    """v2 is trained once per content hash into the model cache (like every other test model)."""
    print("[models] en v2 (new greeting): training unless cached ...", file=sys.stderr)
    v2 = train_variant("en", "utter_greet", NEW_GREETING, model_cache())
    corrupt_dir = tmp_path_factory.mktemp("corrupt")
    corrupt = corrupt_dir / "20991231T000000Z-corrupt0000.tar.gz"
    data = v2.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])  # a truncated upload
    assert v2.name != model_paths["en"].name
    return EnModels(model_paths["en"], v2, corrupt)


def swaps(lang: str, result: str) -> float:
    """gateway_model_swaps_total{lang, result} in this process."""
    value = metrics.REGISTRY.get_sample_value("gateway_model_swaps_total", {"lang": lang, "result": result})
    return value or 0.0


def speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


OLD_GREETINGS = frozenset(responses("en", "utter_greet"))


async def say(client: TestClient, text: str, locale: str = "en-US", session: str | None = None) -> str:
    """POST one webhook turn in-process and return the spoken answer (asserting a 200)."""
    resp = await client.post("/webhook/google", json=builder_request(text, locale, session))
    assert resp.status == 200, await resp.text()
    return speech(await resp.json())


async def bots(client: TestClient) -> dict[str, dict[str, Any]]:
    resp = await client.get("/bots")
    return {bot["lang"]: bot for bot in (await resp.json())["bots"]}


async def answering(client: TestClient, lang: str) -> str | None:
    return (await bots(client))[lang]["model"]  # type: ignore[no-any-return]


async def ready(client: TestClient) -> None:
    async def check() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(check, 120, "gateway ready")


@dataclass
class SwapWorld:
    """Redis, S3 (holding en v1, v2 and a corrupt archive) and settings for a gateway using both."""

    settings: Settings
    redis: aioredis.Redis
    redis_server: RedisServer
    store: S3ModelStore
    models: EnModels

    @property
    def channel(self) -> str:
        return self.settings.channel_for("en")

    async def publish(self, message: str) -> None:
        """What the original pipeline does: PUBLISH the model file name on `{project}-en`."""
        await self.redis.publish(self.channel, message)

    def active(self) -> RedisActiveModels:
        return RedisActiveModels(self.redis, self.settings)


@pytest.fixture
async def world(
    redis_server: RedisServer, s3_server: S3Server, en_models: EnModels, models_dir: Path
) -> AsyncIterator[SwapWorld]:
    overrides = {
        "project": f"swap{uuid.uuid4().hex[:8]}",  # fresh buckets and channels per test
        "redis.url": redis_server.url,
        "admin.token": ADMIN_TOKEN,
        "bots.models_dir": str(models_dir),  # pl and de come from here (not in the store)
        "bots.train_missing": False,
        "monitor.interval_seconds": 0,
        **s3_server.overrides(),
    }
    settings = load_settings(overrides=overrides)
    store = S3ModelStore(settings)
    for path in (en_models.v1, en_models.v2, en_models.corrupt):
        await store.put("en", path)
    client = make_client(redis_server.url, 2.0)
    # Published earlier: v1 is the active model although v2 is the newest archive in the bucket.
    await RedisActiveModels(client, settings).activate("en", en_models.ref(en_models.v1))
    try:
        yield SwapWorld(settings, client, redis_server, store, en_models)
    finally:
        await client.close(close_connection_pool=True)
        await store.close()


@pytest.fixture
async def gateway_client(world: SwapWorld, aiohttp_client: Any) -> TestClient:
    """An in-process gateway on `world`, ready (its cleanup contexts run at teardown)."""
    client: TestClient = await aiohttp_client(create_app(world.settings))
    await ready(client)
    bus = client.app[appkeys.EVENTS]
    # Pub/sub keeps nothing for absent subscribers: publish only once the subscription is live.
    await eventually(lambda: bus.connected, what="event bus subscribed")
    return client


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
