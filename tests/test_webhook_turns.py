"""How the webhook runs turns on the real application: the deadline, background completion, silence
and Rasa's intent shortcut.

The deadline is exercised deterministically without mocks: the test holds the conversation's real lock
(as a concurrent turn of the same conversation would, e.g. Google retrying), so the request's turn
cannot start until the test lets it, whatever the machine's speed. Those tests use a gateway with a
short deadline (`late`); every test whose turns must answer in time uses one with a deadline no slow
machine reaches (`client`), so nothing here races the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from gateway import appkeys, metrics
from gateway.routing.webhook import sender_id
from gateway.settings import Settings, load_settings
from tests.inprocess import post, running_gateway
from tests.shapes import dialogflow_request, v2_request
from tests.support import builder_request, responses

# Only ever reached by turns that cannot start (their conversation's lock is held by the test).
SHORT_DEADLINE = 0.5
# A safety net only: turns of the light bots take milliseconds, even on a throttled CPU.
LONG_DEADLINE = 120.0
pytestmark = pytest.mark.asyncio(loop_scope="module")


def settings_with_deadline(models_dir: Path, deadline: float) -> Settings:
    overrides = {
        "bots.models_dir": str(models_dir),
        "monitor.interval_seconds": 0,
        "server.deadline_seconds": deadline,
        "trackers.lock_lease_seconds": deadline + 15,
    }
    return load_settings(overrides=overrides)


@pytest.fixture(scope="module")
def turn_settings(models_dir: Path) -> Settings:
    return settings_with_deadline(models_dir, SHORT_DEADLINE)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def late(turn_settings: Settings) -> AsyncIterator[TestClient]:
    """A gateway with a short deadline, for turns the test holds back past it."""
    async with running_gateway(turn_settings) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(models_dir: Path) -> AsyncIterator[TestClient]:
    """A gateway whose turns always finish within their deadline."""
    async with running_gateway(settings_with_deadline(models_dir, LONG_DEADLINE)) as client:
        yield client


def overruns(lang: str) -> float:
    return metrics.REGISTRY.get_sample_value("gateway_deadline_overruns_total", {"lang": lang}) or 0.0


def speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


async def user_texts(client: TestClient, lang: str, session: str) -> list[str]:
    """What the bot's tracker recorded the user saying in `session`."""
    bot = client.server.app[appkeys.POOL].get(lang)
    tracker = await bot.tracker_store.retrieve(sender_id(lang, session))
    if tracker is None:
        return []
    return [event.text for event in tracker.events if event.type_name == "user"]


async def test_a_late_turn_answers_try_again_then_finishes_in_the_background(
    late: TestClient, turn_settings: Settings
) -> None:
    client = late
    app = client.server.app
    session = "deadline-1"
    sender = sender_id("en", session)
    before = overruns("en")
    # AgentPool.respond serialises turns on "<lang>:<sender>"; hold that lock like a running turn would.
    async with app[appkeys.POOL].locks.hold(f"en:{sender}"):
        status, answer = await post(client, builder_request("I would like to book a table", "en-US", session))
        assert status == 200
        assert speech(answer) == turn_settings.bots["en"].prompts.timeout
        assert "scene" not in answer  # a late turn does not end the conversation
        assert overruns("en") == before + 1
        pending = set(app[appkeys.BACKGROUND])
        assert len(pending) == 1
        assert await user_texts(client, "en", session) == []  # the turn is still waiting
    await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
    assert not app[appkeys.BACKGROUND]
    # The late turn reached the tracker: the booking form it started continues with the next turn
    # (run without an HTTP deadline: how long it takes is not this test's business).
    assert await user_texts(client, "en", session) == ["I would like to book a table"]
    messages = await app[appkeys.POOL].respond("en", sender, "4")
    assert [m.get("text") for m in messages] in [
        [t.replace("{people}", "4")] for t in responses("en", "utter_booked")
    ]
    assert overruns("en") == before + 1


async def test_the_deadline_applies_to_every_shape(late: TestClient, turn_settings: Settings) -> None:
    client = late
    app = client.server.app
    prompts = turn_settings.bots["pl"].prompts
    for body, session in (
        (v2_request("cześć", "pl-PL", "deadline-v2"), "deadline-v2"),
        (
            dialogflow_request("cześć", "pl", "projects/p/agent/sessions/deadline-df"),
            "projects/p/agent/sessions/deadline-df",
        ),
    ):
        async with app[appkeys.POOL].locks.hold(f"pl:{sender_id('pl', session)}"):
            status, answer = await post(client, body)
        assert status == 200
        assert prompts.timeout in str(answer)
    await asyncio.wait_for(asyncio.gather(*app[appkeys.BACKGROUND]), timeout=30)


async def test_the_deadline_applies_to_every_channel(late: TestClient, turn_settings: Settings) -> None:
    client = late  # the short-deadline gateway: these turns are held back past its deadline
    app = client.server.app
    prompts = turn_settings.bots["de"].prompts
    cx_session = "projects/p/locations/global/agents/a/sessions/deadline-cx"
    channels = [
        (
            "/webhooks/rest/webhook",
            {"sender": "deadline-rest", "message": "hallo", "metadata": {"locale": "de"}},
            "rest:",
            "deadline-rest",
        ),
        (
            "/webhook/dialogflow-cx",
            {"sessionInfo": {"session": cx_session}, "languageCode": "de", "text": "hallo"},
            "dialogflow_cx:",
            cx_session,
        ),
        (
            "/webhook/dialogflow-es",
            dialogflow_request("hallo", "de", "projects/p/agent/sessions/deadline-es"),
            "dialogflow_es:",
            "projects/p/agent/sessions/deadline-es",
        ),
    ]
    for path, body, namespace, session in channels:
        async with app[appkeys.POOL].locks.hold(f"de:{sender_id('de', session, namespace)}"):
            status, answer = await post(client, body, path)
        assert status == 200, answer
        assert prompts.timeout in str(answer), path
    await asyncio.wait_for(asyncio.gather(*app[appkeys.BACKGROUND]), timeout=30)


async def test_turns_within_the_deadline_are_not_counted(client: TestClient) -> None:
    before = overruns("de")
    status, answer = await post(client, builder_request("hallo", "de-DE", "on-time-1"))
    assert status == 200
    assert speech(answer) in responses("de", "utter_greet")
    assert overruns("de") == before


async def test_users_cannot_pick_intents_or_set_slots_with_rasas_shortcut(client: TestClient) -> None:
    session = "shortcut-1"
    await post(client, builder_request("I would like to book a table", "en-US", session))
    status, _ = await post(client, builder_request(' / /inform{"people": "zillion"}', "en-US", session))
    assert status == 200
    texts = await user_texts(client, "en", session)
    assert texts[-1] == 'inform{"people": "zillion"}'  # Rasa only unpacks text that starts with '/'
    bot = client.server.app[appkeys.POOL].get("en")
    tracker = await bot.tracker_store.retrieve(sender_id("en", session))
    assert tracker is not None
    extractors = {e.get("extractor") for e in tracker.latest_message.entities}
    assert "RegexMessageHandler" not in extractors
    assert tracker.get_slot("people") != "zillion"


async def test_silence_reprompts_without_a_turn(late: TestClient, turn_settings: Settings) -> None:
    client = late  # no turn runs: the short deadline cannot be reached
    session = "silent-1"
    for body in (
        builder_request("   ", "en-US", session),
        builder_request("", "en-US", session, intent="actions.intent.NO_INPUT_1"),
    ):
        status, answer = await post(client, body)
        assert status == 200
        assert speech(answer) == turn_settings.bots["en"].prompts.no_input
        assert "scene" not in answer
    assert await user_texts(client, "en", session) == []
    final = builder_request("", "en-US", session, intent="actions.intent.NO_INPUT_FINAL")
    _, answer = await post(client, final)
    assert answer["scene"]["next"]["name"] == "actions.scene.END_CONVERSATION"


async def test_health_checks_touch_no_bot_or_tracker(late: TestClient) -> None:
    client = late  # a health check that waited for a turn would get the timeout prompt, not {}
    pool = client.server.app[appkeys.POOL]
    health = builder_request("", "en-US", "health-1", handler="actions.handler.HEALTH_CHECK")
    v2_health = v2_request(
        "",
        "en-US",
        "health-2",
        intent="actions.intent.MAIN",
        arguments=[{"name": "is_health_check", "boolValue": True}],
    )
    # Even with every conversation of these sessions locked, the health check answers at once.
    async with (
        pool.locks.hold(f"en:{sender_id('en', 'health-1')}"),
        pool.locks.hold(f"en:{sender_id('en', 'health-2')}"),
    ):
        assert await post(client, health) == (200, {})
        status, answer = await post(client, v2_health)
    assert status == 200
    assert answer["expectUserResponse"] is False
    assert await user_texts(client, "en", "health-1") == []
    assert await user_texts(client, "en", "health-2") == []
