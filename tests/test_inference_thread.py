"""`server.inference: thread`: turns run on a dedicated thread, trackers stay on the server's loop."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import appkeys
from gateway.agents.inference import InferenceThread, OwnerLoopTrackerStore
from gateway.app import create_app
from gateway.settings import Settings
from tests.support import builder_request, responses


def _speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


async def test_a_conversation_keeps_its_slots_when_turns_run_on_the_inference_thread(
    settings: Settings, aiohttp_client: Any
) -> None:
    threaded = dataclasses.replace(settings, server=dataclasses.replace(settings.server, inference="thread"))
    app = create_app(threaded)
    client: TestClient = await aiohttp_client(app)
    await asyncio.wait_for(app[appkeys.STARTUP], timeout=180)
    pool = app[appkeys.POOL]
    assert pool.inference is not None
    store = pool.bots["pl"].model.agent.processor.tracker_store  # type: ignore[union-attr]
    assert isinstance(store, OwnerLoopTrackerStore)
    # The model's own view of the language's store (its domain), whose calls go back to the server's loop.
    assert type(store.inner) is type(pool.bots["pl"].tracker_store)
    assert store.inner.domain is pool.bots["pl"].model.agent.domain  # type: ignore[union-attr]

    session = f"thread-{uuid.uuid4().hex}"
    first = await client.post(
        "/webhook/google", json=builder_request("chciałbym zarezerwować stolik", "pl-PL", session)
    )
    assert first.status == 200
    assert _speech(await first.json()) in responses("pl", "utter_ask_people")
    second = await client.post("/webhook/google", json=builder_request("3", "pl-PL", session))
    assert second.status == 200
    assert _speech(await second.json()) in [
        t.replace("{people}", "3") for t in responses("pl", "utter_booked")
    ]
    # The tracker lives in the store owned by the server's loop.
    tracker = await pool.bots["pl"].tracker_store.retrieve(f"pl:{session}")
    assert tracker is not None and tracker.get_slot("people") == "3"

    ping = await client.get("/bots/de/ping")
    assert ping.status == 200
    assert (await ping.json())["reply"]

    thread_names = {t.name for t in threading.enumerate()}
    assert "inference" in thread_names
    await client.close()  # runs the cleanup contexts: the inference thread stops
    assert "inference" not in {t.name for t in threading.enumerate()}


async def test_inference_thread_runs_coroutines_there_and_store_calls_on_the_owner_loop() -> None:
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain

    inference = InferenceThread("inference-test")
    inference.start()
    owner = asyncio.get_running_loop()
    store = OwnerLoopTrackerStore(InMemoryTrackerStore(Domain.empty()), owner)
    seen: dict[str, str] = {}

    async def on_inference_thread() -> Any:
        seen["turn"] = threading.current_thread().name
        return await store.retrieve("nobody")

    original = store.inner.retrieve

    async def spy(sender_id: str) -> Any:
        seen["store"] = threading.current_thread().name
        return await original(sender_id)

    store.inner.retrieve = spy
    try:
        assert await inference.run(on_inference_thread()) is None
        assert seen == {"turn": "inference-test", "store": threading.current_thread().name}
        # From the owner loop itself the store still answers.
        assert await store.retrieve("nobody") is None
        with pytest.raises(ZeroDivisionError):
            await inference.run(_divide())
    finally:
        await inference.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await inference.run(_divide())


async def _divide() -> float:
    return 1 / 0
