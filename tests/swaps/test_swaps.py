"""Hot swaps in a real gateway app (in-process, real HTTP client) with real Redis, moto S3 and Rasa models."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import uuid
import weakref
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import appkeys, metrics
from gateway.app import create_app
from gateway.errors import ModelRefusedBefore
from gateway.storage.model_store import ModelRef
from tests.support import S3Server, builder_request, eventually, free_port, responses
from tests.swaps.conftest import (
    NEW_GREETING,
    OLD_GREETINGS,
    SwapWorld,
    answering,
    bots,
    ready,
    say,
    swaps,
)


async def test_a_published_model_name_switches_english_and_leaves_polish_and_german_alone(
    world: SwapWorld, gateway_client: TestClient
) -> None:
    client, models = gateway_client, world.models
    before = await bots(client)
    assert before["en"]["model"] == models.v1.name  # the durable active model, not the newest archive
    assert await say(client, "hello") in OLD_GREETINGS
    # A conversation that straddles the swap keeps its tracker.
    session = f"s-{uuid.uuid4().hex}"
    assert await say(client, "I would like to book a table", session=session) in responses(
        "en", "utter_ask_people"
    )
    succeeded = swaps("en", "success")

    await world.publish(models.v2.name)  # exactly what the original pipeline sends

    await eventually(lambda: _is(client, "en", models.v2.name), what="en swapped to v2")
    assert await say(client, "hello") == NEW_GREETING
    booked = [t.replace("{people}", "4") for t in responses("en", "utter_booked")]
    assert await say(client, "4", session=session) in booked
    after = await bots(client)
    for lang in ("pl", "de"):
        assert after[lang]["model"] == before[lang]["model"]
        assert after[lang]["loaded_at"] == before[lang]["loaded_at"]  # not reloaded
    assert await say(client, "cześć", "pl-PL") in responses("pl", "utter_greet")
    assert await say(client, "hallo", "de-DE") in responses("de", "utter_greet")
    assert swaps("en", "success") == succeeded + 1
    assert after["en"]["sha256"] == models.ref(models.v2).sha256
    assert after["en"]["previous"] == models.v1.name
    info = metrics.REGISTRY.get_sample_value(
        "gateway_model_info", {"lang": "en", "model": models.v2.name, "sha256": models.ref(models.v2).sha256}
    )
    assert info == 1.0


async def _is(client: TestClient, lang: str, model: str) -> bool:
    return await answering(client, lang) == model


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("corrupt", "load_failed"),
        ("wrong_sha256", "rejected"),
        ("missing", "download_failed"),
    ],
)
async def test_a_bad_model_is_refused_and_the_old_one_keeps_answering(
    world: SwapWorld, gateway_client: TestClient, kind: str, result: str
) -> None:
    client, models = gateway_client, world.models
    if kind == "corrupt":  # stored with its (correct) sha256, but the archive is truncated
        message, name = models.corrupt.name, models.corrupt.name
    elif kind == "wrong_sha256":  # the announced digest does not match what the store holds
        name = models.v2.name
        message = json.dumps({"model": name, "sha256": "0" * 64})
    else:
        message = name = "20300101T000000Z-notuploaded0.tar.gz"
    refused = swaps("en", result)

    await world.publish(message)

    await eventually(lambda: swaps("en", result) == refused + 1, what=f"a {result} swap")
    assert await answering(client, "en") == models.v1.name
    assert await say(client, "hello") in OLD_GREETINGS
    readyz = await client.get("/readyz")
    assert readyz.status == 200
    detail = (await readyz.json())["bots"]["en"]
    assert detail["state"] == "ready"
    assert name in detail["last_error"] and result in detail["last_error"]
    # The next good model still goes through, and clears the error.
    await world.publish(json.dumps(models.ref(models.v2).to_json()))
    await eventually(lambda: _is(client, "en", models.v2.name), what="en swapped to v2")
    assert (await bots(client))["en"]["last_error"] is None


async def test_hostile_event_messages_are_ignored(world: SwapWorld, gateway_client: TestClient) -> None:
    client = gateway_client
    attempts = sum(swaps("en", r) for r in ("success", "download_failed", "rejected", "load_failed"))
    for message in ("../../etc/passwd", "/tmp/x.tar.gz", "a/../../b.tar.gz", "{not json", "x" * 100_000):
        await world.publish(message)
    await world.publish(world.models.v2.name)  # a marker: once it is loaded, the others were seen
    await eventually(lambda: _is(client, "en", world.models.v2.name), what="en swapped to v2")
    assert (
        sum(swaps("en", r) for r in ("success", "download_failed", "rejected", "load_failed")) == attempts + 1
    )


async def test_every_request_succeeds_while_models_swap_under_load(
    world: SwapWorld, gateway_client: TestClient
) -> None:
    client, models = gateway_client, world.models
    answers: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def user() -> None:
        while not stop.is_set():
            resp = await client.post(
                "/webhook/google", json=builder_request("hello", "en-US", f"load-{uuid.uuid4().hex}")
            )
            statuses[resp.status] += 1
            if resp.status == 200:
                answers[(await resp.json())["prompt"]["firstSimple"]["speech"]] += 1

    def new() -> int:
        return answers[NEW_GREETING]

    def old() -> int:
        return sum(n for text, n in answers.items() if text in OLD_GREETINGS)

    failed = swaps("en", "load_failed")
    users = [asyncio.create_task(user()) for _ in range(4)]
    try:
        await eventually(lambda: old() >= 20, what="20 answers before the swap")
        await world.publish(models.v2.name)
        await eventually(lambda: new() >= 20, what="20 answers by the new model")
        seen_new = new()
        await world.publish(json.dumps(models.ref(models.v1).to_json()))  # and back, still under load
        await eventually(lambda: _is(client, "en", models.v1.name), what="swap back to v1")
        old_again = old()
        await eventually(lambda: old() >= old_again + 20, what="20 more answers by v1")
    finally:
        stop.set()
        await asyncio.gather(*users)
    assert set(statuses) == {200}, statuses
    assert set(answers) <= OLD_GREETINGS | {NEW_GREETING}, answers  # no "unavailable", no "try again"
    assert seen_new >= 20 and old() >= 40
    assert swaps("en", "load_failed") == failed


async def test_bursts_coalesce_to_the_latest_model_with_one_load_at_a_time(
    world: SwapWorld, gateway_client: TestClient
) -> None:
    swapper = gateway_client.app[appkeys.SWAPPER]
    models = world.models
    v1, v2, corrupt = (models.ref(p) for p in (models.v1, models.v2, models.corrupt))
    ok, bad = swaps("en", "success"), swaps("en", "load_failed")

    # A burst before the worker runs: only the latest is loaded.
    for ref in (v2, corrupt, v1, corrupt, v2):
        swapper.request("en", ref)
    await swapper.idle()
    assert (swaps("en", "success"), swaps("en", "load_failed")) == (ok + 1, bad)
    assert await answering(gateway_client, "en") == models.v2.name

    # A burst while a load runs: that load finishes, then only the latest of the rest.
    swapper.request("en", v1)
    for _ in range(100):  # the worker takes the language's lock at its first step
        if swapper.loading("en"):
            break
        await asyncio.sleep(0)
    for ref in (corrupt, v2, corrupt, v1):
        swapper.request("en", ref)
    assert swapper.loading("en")
    await swapper.idle()
    # v1 loaded, then the latest (v1 again) was already answering: corrupt and v2 were never loaded.
    assert (swaps("en", "success"), swaps("en", "load_failed")) == (ok + 2, bad)
    assert await answering(gateway_client, "en") == models.v1.name

    # Duplicates of what already answers (replays after a reconnect) cost nothing.
    for _ in range(5):
        swapper.request("en", v1)
    await swapper.idle()
    assert swaps("en", "success") == ok + 2


async def test_after_a_redis_outage_the_missed_announcement_is_applied(
    world: SwapWorld, aiohttp_client: Any
) -> None:
    # The record may be written just before or just after the bus resubscribes: the reconcile on
    # reconnect covers the first case, the periodic reconcile the second.
    settings = dataclasses.replace(
        world.settings, events=dataclasses.replace(world.settings.events, reconcile_seconds=1.0)
    )
    gateway_client: TestClient = await aiohttp_client(create_app(settings))
    await ready(gateway_client)
    bus = gateway_client.app[appkeys.EVENTS]
    await eventually(lambda: bus.connected, what="subscribed")
    world.redis_server.stop()
    await eventually(lambda: not bus.connected, what="noticing the outage")
    assert metrics.REGISTRY.get_sample_value("gateway_event_bus_connected") == 0.0
    # Trackers live in the same Redis: users hear the friendly prompt, never an error, meanwhile.
    unavailable = gateway_client.app[appkeys.SETTINGS].bots["en"].prompts.unavailable
    assert await say(gateway_client, "hello") == unavailable
    world.redis_server.start()  # empty: as after a failover
    # Published while this gateway was disconnected: only the durable record survives.
    await world.active().activate("en", ModelRef(world.models.v2.name))
    await eventually(lambda: _is(gateway_client, "en", world.models.v2.name), 60, "reconciled to v2")
    assert await say(gateway_client, "hello") == NEW_GREETING
    await eventually(lambda: bus.connected, what="reconnected")
    assert metrics.REGISTRY.get_sample_value("gateway_event_bus_connected") == 1.0


async def test_the_replaced_agent_is_released(world: SwapWorld, gateway_client: TestClient) -> None:
    bot = gateway_client.app[appkeys.POOL].get("en")
    assert bot.model is not None
    old_agent = weakref.ref(bot.model.agent)
    await world.publish(world.models.v2.name)
    await eventually(lambda: _is(gateway_client, "en", world.models.v2.name), what="en swapped to v2")
    assert await say(gateway_client, "hello") == NEW_GREETING
    await gateway_client.app[appkeys.SWAPPER].idle()  # the swap cleans its temp folder after swapping
    gc.collect()
    assert old_agent() is None  # only its name and sha256 are kept, as `previous`
    assert (await bots(gateway_client))["en"]["previous"] == world.models.v1.name


async def test_a_broken_archive_is_not_loaded_again_when_replayed(
    world: SwapWorld, gateway_client: TestClient
) -> None:
    swapper = gateway_client.app[appkeys.SWAPPER]
    corrupt = world.models.ref(world.models.corrupt)
    failed = swaps("en", "load_failed")
    await world.publish(corrupt.model)
    await eventually(lambda: swaps("en", "load_failed") == failed + 1, what="the first refusal")
    # Replays (a reconcile, a repeated event, an admin retry) of the same bytes are refused at once.
    await world.publish(json.dumps(corrupt.to_json()))
    await world.publish(corrupt.model)
    with pytest.raises(ModelRefusedBefore):
        await swapper.swap("en", corrupt)
    await swapper.idle()
    assert swaps("en", "load_failed") == failed + 1
    assert await answering(gateway_client, "en") == world.models.v1.name


async def test_a_store_outage_at_start_up_heals_by_itself(world: SwapWorld, aiohttp_client: Any) -> None:
    port = free_port()  # nothing listens here yet: the store is down
    settings = dataclasses.replace(
        world.settings,
        models=dataclasses.replace(world.settings.models, s3_endpoint_url=f"http://127.0.0.1:{port}"),
        events=dataclasses.replace(world.settings.events, reconcile_seconds=0.5),
    )
    await world.active().activate("en", world.models.ref(world.models.v2))  # what the fleet runs
    client: TestClient = await aiohttp_client(create_app(settings))
    await ready(client)
    # It could not fetch the active model, so it serves its local one meanwhile (never dark).
    en = (await bots(client))["en"]
    assert en["model"] == world.models.v1.name
    assert en["last_error"].startswith(f"serving the local model {world.models.v1.name} because active model")
    assert world.models.v2.name in en["last_error"] and "Could not connect" in en["last_error"]
    assert await say(client, "hello") in OLD_GREETINGS
    store = S3Server(port).start()  # the store is back (moto keeps one in-process state)
    try:
        await eventually(lambda: _is(client, "en", world.models.v2.name), 60, "healed to the active model")
        assert await say(client, "hello") == NEW_GREETING
    finally:
        store.stop()
