"""Event brokers (Rasa's pika / sql / kafka) against real servers started by these tests.

Every event a turn stores is published once, in order, in Rasa's broker format; a broker that is down
never fails a turn and loses no event: what was stored during the outage arrives after it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import sqlalchemy
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys, metrics
from gateway.app import create_app
from gateway.brokers.publisher import EventPublisher
from gateway.settings import Settings, load_settings
from gateway.storage.event_log import decode
from tests.broker_servers import PostgresServer, RabbitMQServer
from tests.support import (
    GatewayProcess,
    RedisServer,
    builder_request,
    eventually,
    free_port,
    post_json,
    responses,
)

# The event types (and action names) of the conversation below: session start, then per turn the
# user's message, NLU's choices, the bot's action and answer, and the listen that closes the turn.
CONVERSATION = ["hello", "I am feeling great", "goodbye"]
EXPECTED_TYPES = [
    ("slot", "session_started_metadata"),  # Rasa sets the start metadata, then runs the session start
    ("action", "action_session_start"),
    ("session_started", None),
    ("slot", "session_started_metadata"),
    ("action", "action_listen"),
    ("user", None),
    ("user_featurization", None),
    ("action", "utter_greet"),
    ("bot", None),
    ("action", "action_listen"),
    ("user", None),
    ("user_featurization", None),
    ("action", "utter_happy"),
    ("bot", None),
    ("action", "action_listen"),
    ("user", None),
    ("user_featurization", None),
    ("action", "utter_goodbye"),
    ("bot", None),
    ("action", "action_listen"),
]
WAIT = 90.0  # safety net for conditions on a slow, shared machine; never a timing assert


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQServer]:
    server = RabbitMQServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def broker_settings(models_dir: Path, broker: dict[str, Any], **extra: Any) -> Settings:
    return load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "bots.languages.en.event_broker": broker,
            **extra,
        }
    )


@asynccontextmanager
async def english_gateway(settings: Settings, model_paths: dict[str, Path]) -> AsyncIterator[TestClient]:
    """The real app in process, only the English bot loaded; closing it runs the shutdown path."""
    app = create_app(settings, lambda _: {"en": model_paths["en"], "pl": None, "de": None})
    async with TestClient(TestServer(app)) as client:
        await app[appkeys.STARTUP]
        assert app[appkeys.POOL].get("en").ready
        yield client


def publisher(client: TestClient) -> EventPublisher:
    found = client.app[appkeys.EVENT_PUBLISHERS].get("en")
    assert found is not None
    return found


async def say(client: TestClient, text: str, session: str) -> str:
    async with client.post("/webhook/google", json=builder_request(text, "en-US", session)) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return str(body["prompt"]["firstSimple"]["speech"])


async def talk(client: TestClient, session: str, texts: list[str]) -> None:
    """Each turn gets the bot's own answer (never the unavailable prompt)."""
    expected = {"hello": "utter_greet", "I am feeling great": "utter_happy", "goodbye": "utter_goodbye"}
    for text in texts:
        assert await say(client, text, session) in responses("en", expected[text])


async def stored_events(app: web.Application, session: str) -> list[dict[str, Any]]:
    """The conversation as the gateway stored it (whole history), read back through its own store."""
    store = app[appkeys.POOL].get("en").tracker_store
    senders = [s for s in await store.keys() if session in s]
    assert len(senders) == 1, senders
    blob = await store._read(senders[0], "retrieve")
    assert blob is not None
    return [{"sender_id": senders[0], **event} for event in decode(blob)]


def types(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["event"], e.get("name") if e["event"] in ("action", "slot") else None) for e in events]


def counter(metric: Any, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())


async def drained(client: TestClient) -> None:
    await eventually(lambda: publisher(client).queued() == 0, WAIT, "the broker queue to drain")


class Queue:
    """A consumer of the broker's RabbitMQ queue (aio-pika), reading everything published so far."""

    def __init__(self, server: RabbitMQServer, name: str) -> None:
        self.server = server
        self.name = name

    async def take_all(self) -> list[dict[str, Any]]:
        connection = await aio_pika.connect(self.server.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, durable=True)
            out = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                out.append(json.loads(message.body))
                await message.ack()
            return out


def pika_entry(server: RabbitMQServer, queue: str) -> dict[str, Any]:
    # Exactly what a bot's endpoints.yml could hold; aio-pika reads reconnect_interval from the URL.
    return {
        "type": "pika",
        "url": "amqp://127.0.0.1/?reconnect_interval=1",
        "port": server.port,
        "username": "guest",
        "password": "guest",
        "queues": [queue],
        "connection_attempts": 3,
        "retry_delay_in_seconds": 1,
    }


async def test_pika_conversation_across_two_gateways_and_an_outage(
    rabbitmq: RabbitMQServer, redis_url: str, models_dir: Path, model_paths: dict[str, Path]
) -> None:
    queue = Queue(rabbitmq, "gateway-test-events")
    settings = broker_settings(models_dir, pika_entry(rabbitmq, queue.name), **{"redis.url": redis_url})
    session = "pika-session"
    async with english_gateway(settings, model_paths) as one, english_gateway(settings, model_paths) as two:
        # Two processes sharing Redis take turns on one conversation: each publishes what it stored.
        # (Each process keeps its own order; across processes, the test lets one turn's events leave
        # before the next turn, as seconds between a user's turns do.)
        await talk(one, session, CONVERSATION[:1])
        await drained(one)
        await talk(two, session, CONVERSATION[1:2])
        await drained(two)
        first = await queue.take_all()
        stored = await stored_events(one.app, session)
        assert first == stored
        assert types(first) == EXPECTED_TYPES[:15]

        failures = counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish")
        await asyncio.to_thread(rabbitmq.pause)
        await talk(one, session, CONVERSATION[2:])  # answered while the broker is down
        await eventually(
            lambda: counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish") > failures,
            WAIT,
            "a counted publish failure",
        )
        assert publisher(one).queued("en") == len(EXPECTED_TYPES) - 15

        await asyncio.to_thread(rabbitmq.resume)
        await drained(one)
        missed = await queue.take_all()
        assert first + missed == await stored_events(one.app, session)
        assert types(first + missed) == EXPECTED_TYPES


def metric_value(gateway: GatewayProcess, line_start: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def english_loaded(gateway: GatewayProcess) -> bool:
    if gateway.proc.poll() is not None:
        raise AssertionError(f"gateway exited with {gateway.proc.returncode}:\n{gateway.log.read_text()}")
    try:
        with urllib.request.urlopen(f"{gateway.url}/bots", timeout=5) as resp:
            bots = json.loads(resp.read())["bots"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return any(bot["lang"] == "en" and bot["model"] for bot in bots)


async def test_sigterm_flushes_the_backlog_of_a_broker_that_came_back(
    rabbitmq: RabbitMQServer, model_paths: dict[str, Path], tmp_path: Path
) -> None:
    """A real gateway process (uvloop, in-memory trackers): RabbitMQ is down for the last two turns and
    comes back after SIGTERM; the shutdown waits for it and every event leaves, once, in order."""
    queue = Queue(rabbitmq, "gateway-test-sigterm")
    (tmp_path / "models" / "en").mkdir(parents=True)
    (tmp_path / "models" / "en" / model_paths["en"].name).symlink_to(model_paths["en"])  # only en loads
    config = tmp_path / "gateway.yml"
    overrides = {
        "bots": {"languages": {"en": {"event_broker": pika_entry(rabbitmq, queue.name)}}},
        "server": {"shutdown_timeout_seconds": 120},
    }
    config.write_text(json.dumps(overrides), encoding="utf-8")  # JSON is YAML
    env = {
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_BOTS_MODELS_DIR": str(tmp_path / "models"),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
    }
    session = "sigterm-session"
    published = 'gateway_event_broker_published_total{lang="en"}'
    with GatewayProcess.start(free_port(), env, wait_ready=False) as gateway:
        await eventually(lambda: english_loaded(gateway), 300, "the English bot to load")
        for text, response in (("hello", "utter_greet"), ("I am feeling great", "utter_happy")):
            if text != "hello":
                await asyncio.to_thread(rabbitmq.pause)
            status, body = await asyncio.to_thread(
                post_json, f"{gateway.url}/webhook/google", builder_request(text, "en-US", session)
            )
            assert status == 200 and body["prompt"]["firstSimple"]["speech"] in responses("en", response)
            if text == "hello":
                await eventually(lambda: metric_value(gateway, published) == 10, WAIT, "the first turn out")
        queued = 'gateway_event_broker_queued_events{lang="en"}'
        assert metric_value(gateway, queued) == len(EXPECTED_TYPES[:15]) - 10
        gateway.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(rabbitmq.resume)
        assert await asyncio.to_thread(gateway.proc.wait, 180) == 0
    events = await queue.take_all()
    assert types(events) == EXPECTED_TYPES[:15]
    assert {e["sender_id"] for e in events} == {f"en:{session}"}
    assert len({(e["event"], e["timestamp"]) for e in events}) == len(events)  # none twice


async def test_sql_broker_writes_every_event_and_survives_a_database_outage(
    postgres: PostgresServer, models_dir: Path, model_paths: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine = sqlalchemy.create_engine(postgres.url, poolclass=sqlalchemy.pool.NullPool)

    def rows() -> list[dict[str, Any]]:
        with engine.connect() as db:
            found = db.execute(sqlalchemy.text("SELECT sender_id, data FROM events ORDER BY id"))
            out = []
            for sender_id, data in found:
                event = json.loads(data)
                assert event["sender_id"] == sender_id
                out.append(event)
            return out

    settings = broker_settings(models_dir, postgres.endpoint())
    session = "sql-session"
    try:
        async with english_gateway(settings, model_paths) as client:
            await talk(client, session, CONVERSATION[:2])
            await drained(client)
            assert await asyncio.to_thread(rows) == await stored_events(client.app, session)

            failures = counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish")
            await asyncio.to_thread(postgres.stop)
            await talk(client, session, CONVERSATION[2:])
            await eventually(
                lambda: counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish") > failures + 1,
                WAIT,
                "two counted publish failures",
            )
            await asyncio.to_thread(postgres.start)
            await drained(client)
            published = await asyncio.to_thread(rows)
            assert published == await stored_events(client.app, session)
            assert types(published) == EXPECTED_TYPES
        # Several failed attempts, one outage: logged once when it began and once when it ended.
        said = [r.getMessage() for r in caplog.records if r.name == "gateway.brokers.publisher"]
        assert len([m for m in said if "unavailable" in m]) == 1, said
        assert len([m for m in said if "available again" in m]) == 1, said
    finally:
        engine.dispose()


async def test_unreachable_kafka_never_fails_a_turn(models_dir: Path, model_paths: dict[str, Path]) -> None:
    """No Kafka server here: a bootstrap server nobody listens on. Turns answer; events wait, counted."""
    entry = {
        "type": "kafka",
        "url": f"127.0.0.1:{free_port()}",
        "topic": "t",
        "security_protocol": "PLAINTEXT",
    }
    settings = broker_settings(models_dir, entry, **{"server.shutdown_timeout_seconds": 0.5})
    lost_before = counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="shutdown")
    failures = counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish")
    async with english_gateway(settings, model_paths) as client:
        await talk(client, "kafka-session", CONVERSATION)
        await eventually(
            lambda: counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="publish") > failures,
            WAIT,
            "a counted publish failure",
        )
        assert publisher(client).queued() == len(EXPECTED_TYPES)
    # Still down at shutdown: after the shutdown timeout the events are counted as lost, not hung on.
    assert counter(metrics.EVENT_BROKER_ERRORS, lang="en", reason="shutdown") - lost_before == len(
        EXPECTED_TYPES
    )
