"""One German conversation per Google generation, end to end (real gateway process, real models, HTTP).

The user asks to book a table, taps a chip whose title the gateway shortened (its payload books for
six), asks for music, gets the media response, and Google's MEDIA_STATUS "finished" request reaches
the bot. Each request carries back what Google keeps between turns in that generation (v3 session
params, the v2 conversation token, Dialogflow's output contexts), and every answer is checked against
its generation's schema.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from tests.shapes import dialogflow_request, v2_request, validator
from tests.support import GatewayProcess, builder_request, responses

TRACK_URL = "https://storage.googleapis.com/automotive-media/Jazz_In_Paris.mp3"
FAMILY = "Tisch für die ganze"  # "Tisch für die ganze Familie", shortened at a word boundary
MEDIA_FINISHED = [
    {
        "name": "MEDIA_STATUS",
        "extension": {"@type": "type.googleapis.com/google.actions.v2.MediaStatus", "status": "FINISHED"},
    }
]


async def post(gw: GatewayProcess, body: Any, shape: str) -> Any:
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/webhook/google", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    errors = sorted(validator(shape).iter_errors(answer), key=str)
    assert not errors, f"{shape} answer breaks its schema: {errors[0].message}"
    return answer


def booked_for_six() -> str:
    return responses("de", "utter_booked")[0].replace("{people}", "6")


def legacy_rich(answer: Any) -> Any:
    google = answer["payload"]["google"] if "payload" in answer else answer
    return google.get("richResponse") or google["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]


def legacy_said(answer: Any) -> list[str]:
    return [
        i["simpleResponse"]["textToSpeech"] for i in legacy_rich(answer)["items"] if "simpleResponse" in i
    ]


def legacy_media_url(answer: Any) -> str:
    media = [i["mediaResponse"] for i in legacy_rich(answer)["items"] if "mediaResponse" in i]
    assert len(media) == 1, answer
    return str(media[0]["mediaObjects"][0]["contentUrl"])


async def test_actions_builder(gateway: GatewayProcess) -> None:
    session = f"conv-v3-{uuid.uuid4().hex}"
    params: dict[str, Any] = {}

    async def say(text: str, intent: str = "actions.intent.TEXT") -> Any:
        nonlocal params
        answer = await post(
            gateway, builder_request(text, "de-DE", session, intent, params=params), "actions_builder"
        )
        params = {k: v for k, v in {**params, **answer["session"]["params"]}.items() if v is not None}
        return answer

    ask = await say("Tisch reservieren")
    assert FAMILY in [chip["title"] for chip in ask["prompt"]["suggestions"]]
    assert (await say(FAMILY))["prompt"]["firstSimple"]["speech"] == booked_for_six()
    played = await say("spiel Musik")
    assert played["prompt"]["firstSimple"]["speech"] in responses("de", "utter_play_music")
    assert played["prompt"]["content"]["media"]["mediaObjects"][0]["url"] == TRACK_URL
    finished = await say("", "actions.intent.MEDIA_STATUS_FINISHED")
    assert finished["prompt"]["firstSimple"]["speech"] in responses("de", "utter_media_finished")


async def test_conversation_v2(gateway: GatewayProcess) -> None:
    conversation = f"conv-v2-{uuid.uuid4().hex}"
    token: str | None = None

    async def say(text: str, intent: str = "actions.intent.TEXT", arguments: Any = None) -> Any:
        nonlocal token
        body = v2_request(text, "de-DE", conversation, intent=intent, token=token, arguments=arguments)
        answer = await post(gateway, body, "conversation_v2")
        token = answer.get("conversationToken")
        return answer

    ask = await say("Tisch reservieren")
    assert FAMILY in [chip["title"] for chip in legacy_rich(ask)["suggestions"]]
    assert legacy_said(await say(FAMILY)) == [booked_for_six()]
    played = await say("spiel Musik")
    assert legacy_said(played)[0] in responses("de", "utter_play_music")
    assert legacy_media_url(played) == TRACK_URL
    finished = await say("", "actions.intent.MEDIA_STATUS", MEDIA_FINISHED)
    assert legacy_said(finished)[0] in responses("de", "utter_media_finished")


async def test_dialogflow(gateway: GatewayProcess) -> None:
    session = f"projects/p/agent/sessions/conv-df-{uuid.uuid4().hex}"
    contexts: list[Any] = []

    async def say(text: str, intent: str = "actions.intent.TEXT", arguments: Any = None) -> Any:
        nonlocal contexts
        payload = v2_request(text, "de-DE", session.rsplit("/", 1)[-1], intent=intent, arguments=arguments)
        body = dialogflow_request(text or "actions_intent_MEDIA_STATUS", "de", session, payload)
        body["queryResult"]["outputContexts"] = contexts  # what Dialogflow keeps active between turns
        answer = await post(gateway, body, "dialogflow")
        contexts = answer.get("outputContexts", [])
        return answer

    ask = await say("Tisch reservieren")
    assert FAMILY in [chip["title"] for chip in legacy_rich(ask)["suggestions"]]
    assert legacy_said(await say(FAMILY)) == [booked_for_six()]
    played = await say("spiel Musik")
    assert legacy_said(played)[0] in responses("de", "utter_play_music")
    assert legacy_media_url(played) == TRACK_URL
    finished = await say("", "actions.intent.MEDIA_STATUS", MEDIA_FINISHED)
    assert legacy_said(finished)[0] in responses("de", "utter_media_finished")
