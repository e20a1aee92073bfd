"""Two real gateway processes on a real Redis Cluster (redis.cluster: true), over real HTTP with real models.

The cluster (3 primaries, each with a replica) is the session's; the gateways are this module's. The
failover test kills a primary and restarts it before it ends, so the tests can run in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from gateway.errors import ConfigError, EventBusError
from gateway.settings import Settings, load_settings
from gateway.storage.active_models import RedisActiveModels
from gateway.storage.events import RedisEventBus, announce
from gateway.storage.model_store import ModelRef, sha256_file
from gateway.storage.redis_client import close_client, conversation_key, make_client
from tests.conftest import model_cache
from tests.redis_cluster import RedisClusterNodes, command
from tests.support import (
    GatewayProcess,
    RedisServer,
    builder_request,
    eventually,
    free_port,
    responses,
    train_variant,
)
from tests.test_delivery import gateway as gateway_command
from tests.test_shared_conversations import assert_stored_once_in_order

ADMIN_TOKEN = "cluster-tests-admin-token-0123456789"
NEW_GREETING = "Welcome back! You are now talking to the new English model."
GREETINGS = frozenset(responses("en", "utter_greet"))
ASK_PEOPLE = frozenset(responses("en", "utter_ask_people"))
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=load_settings().server.deadline_seconds + 5)


def booked(people: str) -> frozenset[str]:
    return frozenset(t.replace("{people}", people) for t in responses("en", "utter_booked"))


@dataclass
class Gateways:
    """Gateways A and B on the cluster, and the settings they run with (for keys and channels)."""

    a: GatewayProcess
    b: GatewayProcess
    settings: Settings
    v1: Path  # the English model they start with
    v2: Path  # in the model store, greets with NEW_GREETING

    def tracker_key(self, session: str) -> str:
        return conversation_key(self.settings, "en", "tracker", f"en:{session}")


@pytest.fixture(scope="module")
def gateways(
    redis_cluster: RedisClusterNodes, models_dir: Path, model_paths: dict[str, Path], tmp_path_factory: Any
) -> Iterator[Gateways]:
    store = tmp_path_factory.mktemp("cluster-store")
    v2 = train_variant("en", "utter_greet", NEW_GREETING, model_cache())
    for model in (model_paths["en"], v2):
        (store / "en").mkdir(exist_ok=True)
        shutil.copy2(model, store / "en" / model.name)
        (store / "en" / f"{model.name}.sha256").write_text(f"{sha256_file(model)}  {model.name}\n")
    env = {
        "GATEWAY_PROJECT": f"cluster{uuid.uuid4().hex[:8]}",  # channels of its own
        "GATEWAY_REDIS_URL": redis_cluster.url,
        "GATEWAY_REDIS_CLUSTER": "true",
        "GATEWAY_MODELS_PATH": str(store),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
    }
    overrides = {"project": env["GATEWAY_PROJECT"], "redis.url": redis_cluster.url, "redis.cluster": True}
    settings = load_settings(overrides={**overrides, "models.path": str(store)})
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
        b = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
        a.wait_ready(180)
        b.wait_ready(180)
        yield Gateways(a, b, settings, model_paths["en"], v2)


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    client = make_client(redis_cluster.url, 2.0, cluster=True)
    assert isinstance(client, RedisCluster)
    try:
        yield client
    finally:
        await close_client(client)


async def say(http: aiohttp.ClientSession, gw: GatewayProcess, text: str, session: str) -> tuple[int, str]:
    async with http.post(gw.url + "/webhook/google", json=builder_request(text, "en-US", session)) as resp:
        if resp.status != 200:
            return resp.status, await resp.text()
        answer = await resp.json()
    return resp.status, str(answer["prompt"]["firstSimple"]["speech"])


async def stored_events(client: RedisCluster, key: str) -> list[dict[str, Any]]:
    blob = await client.get(key)
    assert blob is not None, f"no tracker stored at {key}"
    return list(orjson.loads(blob)["events"])


async def test_conversations_alternate_between_two_gateways_across_the_cluster_nodes(
    gateways: Gateways, redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    sessions = {f"cl-{i}-{uuid.uuid4().hex[:8]}": str(2 + i % 8) for i in range(12)}

    async def conversation(http: aiohttp.ClientSession, index: int, session: str, people: str) -> list[str]:
        first, second = (gateways.a, gateways.b) if index % 2 else (gateways.b, gateways.a)
        answers = []
        for gw, text in ((first, "book a table"), (second, people)):
            status, speech = await say(http, gw, text, session)
            assert status == 200, speech
            answers.append(speech)
        return answers

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        results = await asyncio.gather(
            *(conversation(http, i, s, p) for i, (s, p) in enumerate(sessions.items()))
        )
    for (session, people), (ask, done) in zip(sessions.items(), results, strict=True):
        assert ask in ASK_PEOPLE and done in booked(people), (session, ask, done)
        events = await stored_events(cluster_client, gateways.tracker_key(session))
        assert [e["text"] for e in events if e["event"] == "user"] == ["book a table", people]
        assert_stored_once_in_order(events)
    # The conversations really are spread over the cluster: more than one primary holds them.
    owners = {redis_cluster.master_of(gateways.tracker_key(s)) for s in sessions}
    assert len(owners) > 1, owners
    assert await cluster_client.keys("*}:lock", target_nodes=RedisCluster.PRIMARIES) == []
    # The console's listing walks every primary (SCAN) and reads them in per-node batches.
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = gateways.a.url + "/admin/conversations/en?limit=200"
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        listed = {c["sender_id"]: c for c in (await resp.json())["conversations"]}
    for session, people in sessions.items():
        assert listed[f"en:{session}"]["last_text"] == people


async def following_events(http: aiohttp.ClientSession, gw: GatewayProcess) -> bool:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with http.get(gw.url + "/admin/models", headers=headers) as resp:
            return resp.status == 200 and bool((await resp.json())["events"]["connected"])
    except aiohttp.ClientError:
        return False


async def greets(http: aiohttp.ClientSession, gw: GatewayProcess, expected: frozenset[str]) -> bool:
    status, speech = await say(http, gw, "hello", f"greet-{uuid.uuid4().hex}")
    assert status == 200, speech
    return speech in expected


async def activate_everywhere(http: aiohttp.ClientSession, gateways: Gateways, model: Path) -> None:
    """Announce `model` through the cluster (durable record + PUBLISH) and wait for both gateways."""
    client = make_client(gateways.settings.redis.url or "", 2.0, cluster=True)
    try:
        active = RedisActiveModels(client, gateways.settings)
        bus = RedisEventBus(client, gateways.settings, active, [])
        await announce(bus, active, "en", ModelRef(model.name, sha256_file(model)))
    finally:
        await close_client(client)
    expected = frozenset({NEW_GREETING}) if model == gateways.v2 else GREETINGS
    for gw in (gateways.a, gateways.b):
        await eventually(lambda gw=gw: greets(http, gw, expected), 90, f"{model.name} on {gw.url}")


async def test_model_activation_events_reach_both_gateways_on_the_cluster(gateways: Gateways) -> None:
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        for gw in (gateways.a, gateways.b):
            await eventually(lambda gw=gw: following_events(http, gw), 60, f"{gw.url} subscribed")
            assert await greets(http, gw, GREETINGS)
        await activate_everywhere(http, gateways, gateways.v2)
        await activate_everywhere(http, gateways, gateways.v1)


async def replica_has(port: int, key: str, blob: bytes) -> bool:
    replica = aioredis.Redis(host="127.0.0.1", port=port, single_connection_client=True)
    try:
        await replica.execute_command("READONLY")  # a cluster replica serves reads only after this
        return bool(await replica.get(key) == blob)
    finally:
        await replica.close()


async def test_a_primary_killed_mid_conversation_fails_over_and_the_conversation_continues(
    gateways: Gateways, redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    session = f"failover-{uuid.uuid4().hex}"
    key = gateways.tracker_key(session)
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        status, speech = await say(http, gateways.a, "book a table", session)
        assert status == 200 and speech in ASK_PEOPLE, speech
        primary = redis_cluster.master_of(key)
        replica = redis_cluster.replica_of(primary)
        blob = await cluster_client.get(key)
        assert blob is not None
        # Replication is asynchronous: start the failover once the replica has the first turn.
        await eventually(lambda: replica_has(replica, key, blob), 30, "the replica caught up")
        try:
            redis_cluster.kill(primary)
            seen: list[tuple[int, str]] = []

            async def continues() -> bool:
                gw = (gateways.a, gateways.b)[len(seen) % 2]
                seen.append(await say(http, gw, "4", session))
                return seen[-1][1] in booked("4")

            await eventually(continues, 90, "the conversation continued after the failover")
            # Users heard their answer or the polite prompt, never an error.
            unavailable = gateways.settings.bots["en"].prompts.unavailable
            assert all(status == 200 for status, _ in seen), seen
            assert all(speech == unavailable or speech in booked("4") for _, speech in seen), seen
            assert redis_cluster.master_of(key) == replica
            events = await stored_events(cluster_client, key)
            assert [e["text"] for e in events if e["event"] == "user"] == ["book a table", "4"]
            assert_stored_once_in_order(events)
            # And both gateways serve new conversations again.
            for gw in (gateways.a, gateways.b):
                status, speech = await say(http, gw, "book a table", f"after-{uuid.uuid4().hex}")
                assert status == 200 and speech in ASK_PEOPLE, speech
        finally:
            redis_cluster.start_node(primary)  # rejoins as the replica of its old replica
            await asyncio.to_thread(redis_cluster.wait_healthy)
        # Model events still reach both gateways (a subscription on the killed node moved on).
        for gw in (gateways.a, gateways.b):
            await eventually(lambda gw=gw: following_events(http, gw), 60, f"{gw.url} subscribed")
        await activate_everywhere(http, gateways, gateways.v2)
        await activate_everywhere(http, gateways, gateways.v1)


def test_conversation_keys_of_one_turn_share_a_slot() -> None:
    settings = load_settings()
    for sender in ("en:abc", "en:a}b", "en:{x}", "pl:" + "z" * 300):
        lock = conversation_key(settings, "en", "lock", sender)
        tracker = conversation_key(settings, "en", "tracker", sender)
        assert lock != tracker and key_slot(lock.encode()) == key_slot(tracker.encode())


def subscribed_node(cluster: RedisClusterNodes, channel: str) -> int | None:
    """The port of the node holding a subscription to `channel` (PUBSUB NUMSUB counts only local ones)."""
    for port in cluster.running():
        lines = command(port, "PUBSUB", "NUMSUB", channel).split()
        if len(lines) == 2 and lines[1] != "0":
            return port
    return None


async def test_the_model_event_subscription_moves_on_when_its_node_dies(
    redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    overrides = {
        "project": f"bus{uuid.uuid4().hex[:8]}",
        "redis.url": redis_cluster.url,
        "redis.cluster": True,
    }
    settings = load_settings(overrides=overrides)
    channel = settings.channel_for("en")
    active = RedisActiveModels(cluster_client, settings)
    bus = RedisEventBus(cluster_client, settings, active, ["en"], backoff_seconds=(0.05, 0.5))
    heard: list[str] = []
    running = asyncio.create_task(bus.run(lambda lang, ref: heard.append(ref.model)))
    try:
        await eventually(lambda: bus.connected and subscribed_node(redis_cluster, channel) is not None, 30)
        node = subscribed_node(redis_cluster, channel)
        assert node is not None
        redis_cluster.kill(node)
        try:
            await eventually(
                lambda: bus.connected and subscribed_node(redis_cluster, channel) not in (None, node),
                90,
                "subscribed on another node",
            )
            model = "20990101T000000Z-0123456789ab.tar.gz"

            async def delivered() -> bool:
                with contextlib.suppress(EventBusError):  # PUBLISH may first pick the dead node
                    await RedisEventBus(cluster_client, settings, active, []).publish("en", ModelRef(model))
                return model in heard

            await eventually(delivered, 60, "the announcement heard through another node")
        finally:
            redis_cluster.start_node(node)
            await asyncio.to_thread(redis_cluster.wait_healthy)
    finally:
        await bus.close()
        await asyncio.wait({running}, timeout=10)


def test_a_plain_client_on_a_cluster_node_refuses_to_start(
    redis_cluster: RedisClusterNodes, models_dir: Path
) -> None:
    env = {
        "GATEWAY_REDIS_URL": redis_cluster.url,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
    }
    done = gateway_command("serve", "--port", str(free_port()), env=env)
    assert done.returncode == 2, done.stderr
    assert "is a Redis Cluster node but redis.cluster is false: set redis.cluster: true" in done.stderr


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:7000/1", "redis://127.0.0.1:7000/?db=2", "unix:///tmp/redis.sock"]
)
def test_cluster_urls_name_a_node_and_database_0(url: str) -> None:
    with pytest.raises(ConfigError, match=r"with redis.cluster=true it must be a redis:// or rediss://"):
        load_settings(overrides={"redis.url": url, "redis.cluster": True})
    for good in ("redis://127.0.0.1:7000", "rediss://:secret@10.0.0.1:7000/0"):
        assert load_settings(overrides={"redis.url": good, "redis.cluster": True}).redis.cluster


def test_a_cluster_client_on_a_plain_redis_refuses_to_start(
    redis_server: RedisServer, models_dir: Path
) -> None:
    env = {
        "GATEWAY_REDIS_URL": redis_server.url.removesuffix("/0"),
        "GATEWAY_REDIS_CLUSTER": "true",
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
    }
    done = gateway_command("serve", "--port", str(free_port()), env=env)
    assert done.returncode == 2, done.stderr
    assert "is not a Redis Cluster node but redis.cluster is true: set redis.cluster: false" in done.stderr
