"""A bot's media response written in the v3 shape, through the real webhook, in each Google generation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateway import appkeys
from gateway.agents.action_endpoints import InProcessActions
from gateway.settings import Settings
from tests.inprocess import post, running_gateway
from tests.test_request_params import heard, next_request  # asks what action_opening_status answers

SONG = "https://example.com/song.mp3"
MEDIA = {
    "prompt": {
        "firstSimple": {"speech": "Here is the song.", "text": "Here is the song."},
        "content": {"media": {"mediaType": "AUDIO", "mediaObjects": [{"name": "Song", "url": SONG}]}},
        "suggestions": [{"title": "Stop"}],
    }
}


async def play(dispatcher: Any, tracker: Any, domain: Any) -> list[Any]:
    dispatcher.utter_message(json_message={"google": MEDIA})  # no text: the custom simple is the prompt
    return []


def media_of(answer: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in answer:
        found: dict[str, Any] = answer["prompt"]["content"]["media"]
        return found
    google = answer["payload"]["google"] if "payload" in answer else answer
    response = google["richResponse"] if "payload" in answer else google["expectedInputs"][0]["inputPrompt"]
    items = response["items"] if "payload" in answer else response["richInitialPrompt"]["items"]
    assert [next(iter(item)) for item in items] == ["simpleResponse", "mediaResponse"]
    return dict(items[1]["mediaResponse"])


@pytest.mark.parametrize("generation", ["actions_builder", "conversation_v2", "dialogflow"])
async def test_a_v3_media_response_reaches_each_generation_valid(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, generation: str
) -> None:
    async with running_gateway(settings) as client:
        endpoint = client.server.app[appkeys.POOL].get("en").require_model().agent.processor.action_endpoint
        assert isinstance(endpoint, InProcessActions)
        monkeypatch.setitem(endpoint.code.executor.actions, "action_opening_status", play)
        status, answer = await post(client, next_request(generation, f"media-{uuid.uuid4().hex}", None))
    assert status == 200, answer  # and valid against the generation's schema (tests/inprocess.post)
    assert heard(answer) == "Here is the song."  # not the empty prompt: the bot did say something
    media = media_of(answer)
    url = media["mediaObjects"][0].get("url") or media["mediaObjects"][0].get("contentUrl")
    assert (media["mediaType"], url) == ("AUDIO", SONG)
