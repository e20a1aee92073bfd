"""Event brokers without a broker server: which events leave (only stored ones), config, bounds.

Real Redis and Rasa's own endpoints reader; the sink here is the in-memory implementation of the
tracker stores' EventSink interface (what a publisher receives), not a stand-in for a broker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from rasa.shared.core.events import ActionExecuted, UserUttered

from gateway import metrics
from gateway.brokers.config import broker_endpoint
from gateway.brokers.publisher import EventPublisher, build_publishers
from gateway.brokers.sinks import open_sink
from gateway.errors import ConfigError, TrackerStoreUnavailable
from gateway.settings import Settings, load_settings
from gateway.storage.event_log import decode
from gateway.storage.redis_client import conversation_key, make_client
from gateway.storage.redis_locks import RedisLocks
from gateway.storage.trackers import tracker_stores_for
from gateway.storage.turn_buffer import TurnBuffer
from tests.support import RedisServer, eventually, free_port


class Collected:
    """An EventSink that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def publish(self, lang: str, sender_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        self.got.extend({"lang": lang, "sender_id": sender_id, **event} for event in events)


def settings_with(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    if tmp_path is not None:
        overrides["bots.dir"] = str(tmp_path)
    return load_settings(overrides={"monitor.interval_seconds": 0, **overrides})


@pytest.fixture
async def plain(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = make_client(redis_server.url, 2.0)
    yield client
    await client.close(close_connection_pool=True)


def without_lang(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "lang"} for e in events]


async def test_redis_turn_events_leave_only_after_the_release_stored_them(plain: aioredis.Redis) -> None:
    settings = settings_with()
    turns = TurnBuffer()
    locks = RedisLocks(plain, settings, turns)
    store = tracker_stores_for(settings, plain, turns)["en"]
    sink = store.event_sink = Collected()
    sender = f"en:{uuid.uuid4().hex}"
    async with locks.hold(f"en:{sender}"):
        tracker = await store.get_or_create_tracker(sender)
        tracker.update(UserUttered("hello", {"name": "greet", "confidence": 1.0}))
        tracker.update(ActionExecuted("utter_greet"))
        await store.save(tracker)
        assert sink.got == []  # saved for the release, not stored yet
    stored = decode(await plain.get(store.key(sender)))
    assert without_lang(sink.got) == [{"sender_id": sender, **e} for e in stored]
    assert {e["lang"] for e in sink.got} == {"en"}

    # The next turn publishes only its own events.
    async with locks.hold(f"en:{sender}"):
        tracker = await store.get_or_create_tracker(sender)
        tracker.update(ActionExecuted("action_listen"))
        await store.save(tracker)
    stored = decode(await plain.get(store.key(sender)))
    assert without_lang(sink.got) == [{"sender_id": sender, **e} for e in stored]


async def test_a_turn_that_lost_its_lock_publishes_nothing(plain: aioredis.Redis) -> None:
    settings = settings_with()
    turns = TurnBuffer()
    locks = RedisLocks(plain, settings, turns)
    store = tracker_stores_for(settings, plain, turns)["en"]
    sink = store.event_sink = Collected()
    sender = f"en:{uuid.uuid4().hex}"
    with pytest.raises(TrackerStoreUnavailable, match="expired before the turn was stored"):
        async with locks.hold(f"en:{sender}"):
            await store.get_or_create_tracker(sender)
            # As if the lease ran out and another process took the conversation.
            await plain.set(conversation_key(settings, "en", "lock", sender), "next-holder")
    assert sink.got == []
    assert await plain.get(store.key(sender)) is None


async def test_redis_gone_at_the_release_publishes_nothing(redis_server: RedisServer) -> None:
    client = make_client(redis_server.url, 0.5)
    try:
        settings = settings_with()
        turns = TurnBuffer()
        store = tracker_stores_for(settings, client, turns)["en"]
        sink = store.event_sink = Collected()
        sender = f"en:{uuid.uuid4().hex}"
        with pytest.raises(TrackerStoreUnavailable):
            async with RedisLocks(client, settings, turns).hold(f"en:{sender}"):
                await store.get_or_create_tracker(sender)
                redis_server.stop()
        assert sink.got == []
    finally:
        redis_server.start()
        await client.close(close_connection_pool=True)


async def test_in_memory_saves_publish_each_new_event_once() -> None:
    store = tracker_stores_for(settings_with())["en"]
    sink = store.event_sink = Collected()
    sender = "en:memory"
    tracker = await store.get_or_create_tracker(sender)
    first = len(sink.got)
    assert first > 0
    await store.save(tracker)  # nothing new: nothing published
    assert len(sink.got) == first
    tracker.update(UserUttered("hi", {"name": "greet", "confidence": 1.0}))
    await store.save(tracker)
    full = await store.retrieve_full_tracker(sender)
    assert full is not None
    assert without_lang(sink.got) == [{"sender_id": sender, **e.as_dict()} for e in full.events]


def write_endpoints(tmp_path: Path, lang: str, text: str) -> None:
    (tmp_path / lang).mkdir(exist_ok=True)
    (tmp_path / lang / "endpoints.yml").write_text(text, encoding="utf-8")


def test_endpoints_yml_is_read_by_rasa_with_env_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_TEST_HOST", "rabbit.internal")
    write_endpoints(
        tmp_path,
        "en",
        "event_broker:\n  type: pika\n  url: ${BROKER_TEST_HOST}\n  username: u\n  password: secret\n"
        "  queues: [q]\naction_endpoint:\n  url: http://localhost:5055/webhook\n",
    )
    settings = settings_with(tmp_path)
    endpoint = broker_endpoint(settings.bots["en"])
    assert endpoint is not None
    assert endpoint.config.url == "rabbit.internal"
    assert endpoint.config.kwargs == {"username": "u", "password": "secret", "queues": ["q"]}
    assert endpoint.source == str(tmp_path / "en" / "endpoints.yml")
    assert "secret" not in endpoint.describe() and "rabbit.internal" in endpoint.describe()
    assert broker_endpoint(settings.bots["pl"]) is None  # no endpoints.yml: no broker


def test_config_overrides_endpoints_yml_and_identical_brokers_are_shared(tmp_path: Path) -> None:
    write_endpoints(tmp_path, "en", "event_broker:\n  type: sql\n  db: from-file.db\n")
    same = {"type": "sql", "db": "shared.db"}
    settings = settings_with(
        tmp_path,
        **{
            "bots.languages.en.event_broker": same,
            "bots.languages.pl.event_broker": dict(same),
            "bots.languages.de.event_broker": {},  # {} = no broker, whatever endpoints.yml says
        },
    )
    publishers = build_publishers(settings)
    assert set(publishers.by_lang) == {"en", "pl"}
    assert publishers.get("en") is publishers.get("pl")
    assert len(publishers.unique()) == 1
    en = publishers.get("en")
    assert en is not None and en.endpoint.config.kwargs == {"db": "shared.db"}
    assert en.endpoint.source == "bots.languages.en.event_broker"


def test_a_broken_endpoints_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    write_endpoints(tmp_path, "en", "event_broker:\n  type: pika\n  url: ${BROKER_TEST_UNSET_VARIABLE}\n")
    with pytest.raises(ConfigError, match=r"en/endpoints\.yml.*BROKER_TEST_UNSET_VARIABLE"):
        broker_endpoint(settings_with(tmp_path).bots["en"])
    with pytest.raises(ConfigError, match=r"bots\.languages\.en\.event_broker='amqp://x'"):
        settings_with(**{"bots.languages.en.event_broker": "amqp://x"})


async def test_a_refused_broker_configuration_names_its_source(tmp_path: Path) -> None:
    settings = settings_with(**{"bots.languages.en.event_broker": {"type": "sql", "dialect": "nosuch"}})
    endpoint = broker_endpoint(settings.bots["en"])
    assert endpoint is not None
    with pytest.raises(ConfigError, match=r"bots\.languages\.en\.event_broker: event_broker refused"):
        await open_sink(endpoint, "en")
    # As a running publisher: logged once, its events dropped and counted, never queued for ever.
    dropped = metrics.EVENT_BROKER_ERRORS.labels("en", "config")._value.get()
    publisher = EventPublisher(endpoint, ["en"])
    publisher.start()
    await eventually(lambda: publisher._broken, 30, "the configuration to be refused")
    publisher.publish("en", "s", [{"event": "action", "name": "action_listen"}])
    assert publisher.queued() == 0
    assert metrics.EVENT_BROKER_ERRORS.labels("en", "config")._value.get() == dropped + 1
    await publisher.close(1.0)


async def test_the_queue_is_bounded_and_keeps_the_oldest_events_in_order() -> None:
    settings = settings_with(**{"bots.languages.en.event_broker": {"type": "sql", "db": "unused.db"}})
    endpoint = broker_endpoint(settings.bots["en"])
    assert endpoint is not None
    publisher = EventPublisher(endpoint, ["en"], max_queued=3)  # not started: nothing drains it
    overflow = metrics.EVENT_BROKER_ERRORS.labels("en", "overflow")._value.get()
    events = [{"event": "action", "name": f"a{i}", "timestamp": i} for i in range(5)]
    publisher.publish("en", "s", events)
    assert publisher.queued("en") == 3
    assert [body for _, body in publisher._queue] == [
        b'{"sender_id":"s","event":"action","name":"a%d","timestamp":%d}' % (i, i) for i in range(3)
    ]
    assert metrics.EVENT_BROKER_ERRORS.labels("en", "overflow")._value.get() == overflow + 2
    lost = metrics.EVENT_BROKER_ERRORS.labels("en", "shutdown")._value.get()
    await publisher.close(0.0)
    assert metrics.EVENT_BROKER_ERRORS.labels("en", "shutdown")._value.get() == lost + 3


async def test_a_broker_unreachable_at_start_up_keeps_events_and_retries_the_connection() -> None:
    closed_port = free_port()  # nobody listens: RabbitMQ down when the gateway starts
    entry = {
        "type": "pika",
        "url": "127.0.0.1",
        "port": closed_port,
        "username": "guest",
        "password": "guest",
        "queues": ["q"],
        "connection_attempts": 1,
        "retry_delay_in_seconds": 0,
    }
    endpoint = broker_endpoint(settings_with(**{"bots.languages.en.event_broker": entry}).bots["en"])
    assert endpoint is not None
    connects = metrics.EVENT_BROKER_ERRORS.labels("en", "connect")._value.get()
    publisher = EventPublisher(endpoint, ["en"])
    publisher.start()
    publisher.publish("en", "s", [{"event": "action", "name": "action_listen", "timestamp": 1.0}])
    await eventually(
        lambda: metrics.EVENT_BROKER_ERRORS.labels("en", "connect")._value.get() >= connects + 2,
        30,
        "two counted connection attempts",
    )
    assert publisher.queued("en") == 1  # kept for when the broker comes
    lost = metrics.EVENT_BROKER_ERRORS.labels("en", "shutdown")._value.get()
    await publisher.close(0.0)
    assert metrics.EVENT_BROKER_ERRORS.labels("en", "shutdown")._value.get() == lost + 1
