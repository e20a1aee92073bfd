"""System intents end to end: the real app, real trained en/pl/de models, conversations in a real Redis.

Per webhook generation the user asks for music, gets the media response, and Google's MEDIA_STATUS
(finished) request then reaches the bot, which answers with its media_status_finished response. Health
checks are answered without a bot turn and leave nothing in Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway.settings import load_settings
from tests.inprocess import post, running_gateway
from tests.shapes import dialogflow_request, v2_request
from tests.support import RedisServer, builder_request, responses

pytestmark = pytest.mark.asyncio(loop_scope="module")
TRACK_URL = "https://storage.googleapis.com/automotive-media/Jazz_In_Paris.mp3"
MEDIA_FINISHED = [
    {
        "name": "MEDIA_STATUS",
        "extension": {"@type": "type.googleapis.com/google.actions.v2.MediaStatus", "status": "FINISHED"},
    }
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(models_dir: Path, module_redis_server: RedisServer) -> AsyncIterator[TestClient]:
    settings = load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": module_redis_server.url,
        }
    )
    async with running_gateway(settings) as client:
        yield client


async def tracker_keys(module_redis_server: RedisServer) -> list[str]:
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        return sorted(key.decode() for key in await redis.keys("*:tracker"))
    finally:
        await redis.close(close_connection_pool=True)


async def user_events(module_redis_server: RedisServer, lang: str, sender: str) -> list[dict[str, Any]]:
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        stored = await redis.get(f"gateway:production:{lang}:{{{sender}}}:tracker")
    finally:
        await redis.close(close_connection_pool=True)
    assert stored is not None, f"no tracker for {sender}"
    return [e for e in orjson.loads(stored)["events"] if e["event"] == "user"]


def v3(text: str, session: str, intent: str = "actions.intent.TEXT") -> dict[str, Any]:
    return builder_request(text, "en-US", session, intent=intent, handler="media_status")


def v2(text: str, session: str, intent: str = "actions.intent.TEXT", **kw: Any) -> dict[str, Any]:
    return v2_request(text, "pl-PL", session, intent=intent, **kw)


def df(text: str, session: str, intent: str = "actions.intent.TEXT", **kw: Any) -> dict[str, Any]:
    payload = v2_request(text, "de-DE", session, intent=intent, **kw)
    return dialogflow_request(text, "de", f"projects/p/agent/sessions/{session}", payload)


def speech(answer: dict[str, Any]) -> str:
    if "prompt" in answer and "session" in answer:
        return str(answer["prompt"]["firstSimple"]["speech"])
    if "fulfillmentText" in answer:
        return str(answer["fulfillmentText"])
    items = answer["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]["items"]
    return str(items[0]["simpleResponse"]["textToSpeech"])


def legacy_media_url(rich_response: dict[str, Any]) -> str:
    """The one media object's URL of a legacy RichResponse (its mediaResponse item)."""
    media = [item["mediaResponse"] for item in rich_response["items"] if "mediaResponse" in item]
    assert len(media) == 1, rich_response
    return str(media[0]["mediaObjects"][0]["contentUrl"])


async def test_actions_builder_media_then_media_status_finished(
    client: TestClient, module_redis_server: RedisServer
) -> None:
    session = f"media-{uuid.uuid4().hex}"
    status, played = await post(client, v3("play some music", session))
    assert status == 200, played
    assert speech(played) in responses("en", "utter_play_music")
    media = played["prompt"]["content"]["media"]
    assert media["mediaType"] == "AUDIO"
    assert media["mediaObjects"][0]["url"] == TRACK_URL
    status, finished = await post(client, v3("", session, "actions.intent.MEDIA_STATUS_FINISHED"))
    assert status == 200, finished
    assert speech(finished) in responses("en", "utter_media_finished")
    last = (await user_events(module_redis_server, "en", f"en:{session}"))[-1]
    assert last["text"] == '/media_status_finished{"status": "FINISHED"}'
    assert last["parse_data"]["intent"]["name"] == "media_status_finished"
    assert last["metadata"]["system_intent"] == "actions.intent.MEDIA_STATUS_FINISHED"
    assert last["metadata"]["arguments"] == {"status": "FINISHED"}


async def test_conversation_v2_media_then_media_status(
    client: TestClient, module_redis_server: RedisServer
) -> None:
    session = f"media-{uuid.uuid4().hex}"
    status, played = await post(client, v2("zagraj muzykę", session))
    assert status == 200, played
    assert speech(played) in responses("pl", "utter_play_music")
    prompt = played["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    assert legacy_media_url(prompt) == TRACK_URL
    assert prompt["suggestions"]  # a legacy media response needs chips while the conversation goes on
    status, finished = await post(
        client, v2("", session, "actions.intent.MEDIA_STATUS", arguments=MEDIA_FINISHED)
    )
    assert status == 200, finished
    assert speech(finished) in responses("pl", "utter_media_finished")
    last = (await user_events(module_redis_server, "pl", f"pl:{session}"))[-1]
    assert last["parse_data"]["intent"]["name"] == "media_status_finished"
    assert last["metadata"]["intent"] == "actions.intent.MEDIA_STATUS"


async def test_dialogflow_media_then_media_status_event(
    client: TestClient, module_redis_server: RedisServer
) -> None:
    session = f"media-{uuid.uuid4().hex}"
    status, played = await post(client, df("spiel Musik", session))
    assert status == 200, played
    assert speech(played) in responses("de", "utter_play_music")
    assert legacy_media_url(played["payload"]["google"]["richResponse"]) == TRACK_URL
    event = df("", session, "actions.intent.MEDIA_STATUS", arguments=MEDIA_FINISHED)
    event["queryResult"]["queryText"] = "actions_intent_MEDIA_STATUS"  # what Dialogflow reports for an event
    status, finished = await post(client, event)
    assert status == 200, finished
    assert speech(finished) in responses("de", "utter_media_finished")
    last = (await user_events(module_redis_server, "de", f"de:projects/p/agent/sessions/{session}"))[-1]
    assert last["parse_data"]["intent"]["name"] == "media_status_finished"


async def test_a_system_intent_the_bot_lacks_gets_its_fallback_answer(client: TestClient) -> None:
    signed_in = [{"name": "SIGN_IN", "extension": {"status": "OK"}}]
    status, answer = await post(
        client, v2("", f"sign-{uuid.uuid4().hex}", "actions.intent.SIGN_IN", arguments=signed_in)
    )
    assert status == 200, answer
    assert speech(answer) in responses("pl", "utter_default")


async def test_health_checks_write_no_tracker(client: TestClient, module_redis_server: RedisServer) -> None:
    before = await tracker_keys(module_redis_server)
    health = [{"name": "is_health_check", "boolValue": True, "textValue": "1"}]
    documented_v3 = {
        "handler": {"name": "actions.handler.HEALTH_CHECK"},
        "intent": {"name": "actions.intent.HEALTH_CHECK"},
        "session": {"id": "actions.session.HEALTH_CHECK"},
        "user": {"locale": "en-US"},
        "device": {"capabilities": []},
    }
    bodies = [
        documented_v3,
        v2("", f"health-{uuid.uuid4().hex}", "actions.intent.MAIN", arguments=health),
        df("talk to my test app", f"health-{uuid.uuid4().hex}", arguments=health),
        dialogflow_request(
            "GOOGLE_ASSISTANT_WELCOME",
            "en",
            payload=v2_request("", "en-US", intent="actions.intent.MAIN", arguments=health),
        ),
    ]
    for body in bodies:
        status, answer = await post(client, body)
        assert status == 200, answer
    assert await tracker_keys(module_redis_server) == before


async def test_bad_system_intent_arguments_are_400s_with_a_reason(client: TestClient) -> None:
    body = v3("", f"bad-{uuid.uuid4().hex}", "actions.intent.MEDIA_STATUS_PAUSED")
    body["context"] = {"media": {"progress": 12}}
    status, answer = await post(client, body)
    assert (status, answer) == (400, {"error": "field context.media.progress must be a string, got int"})
    bad = [{"name": "CONFIRMATION", "boolValue": "yes"}]
    status, answer = await post(client, df("", "bad-df", "actions.intent.CONFIRMATION", arguments=bad))
    assert status == 400
    assert "originalDetectIntentRequest.payload.inputs[0].arguments[0].boolValue" in answer["error"]
