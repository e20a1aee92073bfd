"""Model events and the durable active model, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway import metrics
from gateway.errors import ActiveModelConflict, EventBusError
from gateway.settings import Settings, load_settings
from gateway.storage.active_models import InMemoryActiveModels, RedisActiveModels
from gateway.storage.events import (
    EventBus,
    InProcessEventBus,
    RedisEventBus,
    announce,
    encode_message,
    parse_message,
)
from gateway.storage.model_store import ModelRef
from gateway.storage.redis_client import make_client
from tests.support import RedisServer, eventually

SHA_A = "a" * 64
SHA_B = "b" * 64
A = ModelRef("20260101T000000Z-aaaaaaaaaaaa.tar.gz", SHA_A)
B = ModelRef("20260102T000000Z-bbbbbbbbbbbb.tar.gz", SHA_B)
C = ModelRef("20260103T000000Z-cccccccccccc.tar.gz")


class Received:
    """A listener that queues what it is told."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, ModelRef]] = asyncio.Queue()

    def __call__(self, lang: str, ref: ModelRef) -> None:
        self.queue.put_nowait((lang, ref))

    async def next(self, timeout: float = 20.0) -> tuple[str, ModelRef]:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def stop(bus: EventBus, task: asyncio.Task[None]) -> None:
    """Stop a bus like the app does: close, then cancel."""
    await bus.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def connected_gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("gateway_event_bus_connected")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"20260101T000000Z-aaaaaaaaaaaa.tar.gz", ModelRef("20260101T000000Z-aaaaaaaaaaaa.tar.gz")),
        (b"  model.tar.gz\n", ModelRef("model.tar.gz")),
        (json.dumps({"model": "m.tar.gz", "sha256": SHA_A.upper()}).encode(), ModelRef("m.tar.gz", SHA_A)),
        ('{"model": "m.tar.gz"}', ModelRef("m.tar.gz")),
    ],
)
def test_messages_are_plain_names_or_json(message: bytes | str, expected: ModelRef) -> None:
    assert parse_message(message) == expected
    assert parse_message(encode_message(expected)) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"../../etc/passwd.tar.gz",
        b"/tmp/model.tar.gz",
        b"models/en/model.tar.gz",
        b"model.zip",
        b"",
        b"\xff\xfe",
        b"x" * 10_000 + b".tar.gz",
        b'{"model": "../m.tar.gz"}',
        b'{"model": "m.tar.gz", "sha256": "not-hex"}',
        b'{"sha256": "' + SHA_A.encode() + b'"}',
        b'{"model": ',
        b'["m.tar.gz"]',
        b'{"model": 5}',
    ],
)
def test_bad_messages_are_refused(message: bytes) -> None:
    with pytest.raises(ValueError):
        parse_message(message)


@pytest.fixture
def redis_settings(redis_server: RedisServer) -> Settings:
    return load_settings(overrides={"redis.url": redis_server.url, "project": f"p{uuid.uuid4().hex[:8]}"})


@pytest.fixture
async def client(redis_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert redis_settings.redis.url is not None
    made = make_client(redis_settings.redis.url, 2.0)
    try:
        yield made
    finally:
        await made.close(close_connection_pool=True)


async def test_active_record_keeps_a_history_for_rollback(
    client: aioredis.Redis, redis_settings: Settings
) -> None:
    for active in (RedisActiveModels(client, redis_settings), InMemoryActiveModels()):
        assert await active.get("en") is None
        first = await active.activate("en", B, previous=A)  # A answered before anything was recorded
        assert (first.current, first.history) == (B, (A,))
        second = await active.activate("en", C)
        assert (second.current, second.history) == (C, (B, A))
        assert (await active.activate("en", C)).history == (B, A)  # idempotent
        back = await active.rollback("en", expected=C)
        assert (back.current, back.history) == (B, (A,))
        with pytest.raises(ActiveModelConflict):
            await active.rollback("en", expected=C)  # someone else already rolled back
        assert (await active.rollback("en", expected=B)).current == A
        with pytest.raises(ActiveModelConflict):
            await active.rollback("en", expected=A)  # nothing older
        assert await active.get("pl") is None
    raw = await client.get("gateway:production:en:active")
    assert raw is not None and json.loads(raw)["model"] == A.model


async def test_concurrent_activations_from_many_processes_lose_no_update(
    redis_settings: Settings, redis_server: RedisServer
) -> None:
    clients = [make_client(redis_server.url, 2.0) for _ in range(4)]
    try:
        refs = [ModelRef(f"2026010{i}T000000Z-model.tar.gz") for i in range(1, 9)]
        await asyncio.gather(
            *(
                RedisActiveModels(clients[i % 4], redis_settings).activate("de", ref)
                for i, ref in enumerate(refs)
            )
        )
        record = await RedisActiveModels(clients[0], redis_settings).get("de")
        assert record is not None
        assert sorted([record.current, *record.history], key=lambda r: r.model) == refs
    finally:
        for made in clients:
            await made.close(close_connection_pool=True)


async def test_a_corrupt_active_record_is_ignored(client: aioredis.Redis, redis_settings: Settings) -> None:
    active = RedisActiveModels(client, redis_settings)
    await client.set(active.key("en"), b'{"model": "../../x.tar.gz"}')
    assert await active.get("en") is None
    await client.set(active.key("en"), b"not json")
    assert await active.get("en") is None


async def test_redis_subscriber_receives_plain_and_json_messages(
    client: aioredis.Redis, redis_settings: Settings
) -> None:
    active = RedisActiveModels(client, redis_settings)
    bus = RedisEventBus(client, redis_settings, active, ["en", "pl"])
    got = Received()
    task = asyncio.create_task(bus.run(got))
    try:
        await eventually(lambda: bus.connected)
        assert connected_gauge() == 1.0
        project = redis_settings.project
        # Exactly what the original pipeline publishes: the bare file name on "{project}-{lang}".
        assert await client.publish(f"{project}-pl", A.model) == 1
        assert await got.next() == ("pl", ModelRef(A.model))
        await client.publish(f"{project}-en", "../../etc/passwd")  # refused, logged, skipped
        await client.publish(f"{project}-en", json.dumps({"model": B.model, "sha256": SHA_B}))
        assert await got.next() == ("en", B)
        await bus.publish("en", C)
        assert await got.next() == ("en", C)
        assert got.queue.empty()
    finally:
        await stop(bus, task)
    assert connected_gauge() == 0.0


async def test_subscriber_replays_the_active_models_after_connecting_and_reconnecting(
    client: aioredis.Redis, redis_settings: Settings, redis_server: RedisServer
) -> None:
    active = RedisActiveModels(client, redis_settings)
    await active.activate("de", A)
    # The record below may be written just before or just after the bus resubscribes: the replay on
    # reconnect covers the first case, the periodic reconcile the second.
    bus = RedisEventBus(
        client, redis_settings, active, ["en", "de"], backoff_seconds=(0.05, 0.5), reconcile_seconds=0.5
    )
    got = Received()
    task = asyncio.create_task(bus.run(got))
    try:
        assert await got.next() == ("de", A)  # announced before we subscribed: replayed on connect
        redis_server.stop()
        await eventually(lambda: not bus.connected)
        assert connected_gauge() == 0.0
        redis_server.start()  # a fresh, empty Redis on the same port
        # While the subscriber is still away, a publisher records a new model; its message is lost.
        await announce(InProcessEventBus(), active, "en", B)
        received = await got.next()
        while received == ("de", A):  # a periodic replay from before the outage
            received = await got.next()
        assert received == ("en", B)
        await eventually(lambda: bus.connected)
        assert connected_gauge() == 1.0
    finally:
        await stop(bus, task)


async def test_active_models_report_redis_outages_as_event_bus_errors(
    client: aioredis.Redis, redis_settings: Settings, redis_server: RedisServer
) -> None:
    active = RedisActiveModels(client, redis_settings)
    bus = RedisEventBus(client, redis_settings, active, ["en"])
    redis_server.stop()
    with pytest.raises(EventBusError):
        await active.get("en")
    with pytest.raises(EventBusError):
        await announce(bus, active, "en", A)
    with pytest.raises(EventBusError):
        await bus.publish("en", A)


async def test_in_process_bus_delivers_to_its_listener() -> None:
    bus, active = InProcessEventBus(), InMemoryActiveModels()
    got = Received()
    task = asyncio.create_task(bus.run(got))
    try:
        record = await announce(bus, active, "pl", A)
        assert record.current == A
        assert await got.next() == ("pl", A)
        assert bus.connected
    finally:
        await stop(bus, task)
    assert not bus.connected


async def test_a_frozen_redis_is_noticed_by_ping_and_the_subscriber_recovers(
    client: aioredis.Redis, redis_settings: Settings, redis_server: RedisServer
) -> None:
    """A server that stops answering without closing the socket (a hung host, a dropped network path)."""
    active = RedisActiveModels(client, redis_settings)
    bus = RedisEventBus(client, redis_settings, active, ["en"], backoff_seconds=(0.05, 0.2), ping_seconds=0.3)
    got = Received()
    task = asyncio.create_task(bus.run(got))
    assert redis_server.proc is not None
    try:
        await eventually(lambda: bus.connected, what="first connection")
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            await eventually(lambda: not bus.connected, what="noticing the frozen server")
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: bus.connected, what="reconnecting")
        await client.publish(f"{redis_settings.project}-en", A.model)
        assert await got.next() == ("en", ModelRef(A.model))
    finally:
        await stop(bus, task)
