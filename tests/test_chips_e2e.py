"""A tapped chip whose title was shortened reaches the bot as its button payload, in every Google
generation: a real gateway process, real trained models, real HTTP (tests/conftest.py `gateway`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp

from gateway.channels import chips
from tests.shapes import dialogflow_request, v2_request
from tests.support import GatewayProcess, builder_request, responses


async def post(gw: GatewayProcess, body: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/webhook/google", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def booked(lang: str, people: str) -> str:
    return responses(lang, "utter_booked")[0].replace("{people}", people)


def v3_said(answer: Any) -> list[str]:
    prompt = answer["prompt"]
    return [prompt[k]["speech"] for k in ("firstSimple", "lastSimple") if k in prompt]


def legacy_prompt(answer: Any) -> Any:
    google = answer["payload"]["google"] if "payload" in answer else answer
    return google.get("richResponse") or google["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]


def legacy_said(answer: Any) -> list[str]:
    return [item["simpleResponse"]["textToSpeech"] for item in legacy_prompt(answer)["items"]]


async def test_actions_builder_de_chip_tap_books_for_the_payloads_people(gateway: GatewayProcess) -> None:
    session = f"chips-v3-{uuid.uuid4().hex}"
    ask = await post(gateway, builder_request("Tisch reservieren", "de-DE", session, params={"k": 1}))
    assert v3_said(ask) == responses("de", "utter_ask_people")
    titles = [s["title"] for s in ask["prompt"]["suggestions"]]
    assert titles == ["Reservierung für zwei", "Tisch für die ganze"]  # shortened at a word boundary
    # Google posts the tapped chip's title back as the query, with the session params we answered. The
    # title names no number: only the button's payload books for 6.
    tap = await post(
        gateway, builder_request("Tisch für die ganze", "de-DE", session, params=ask["session"]["params"])
    )
    assert v3_said(tap) == [booked("de", "6")]
    assert tap["session"]["params"] == {"k": 1, chips.MEMORY_KEY: None}  # nothing left to remember


async def test_forged_memory_never_reaches_the_bot(gateway: GatewayProcess) -> None:
    session = f"chips-forged-{uuid.uuid4().hex}"
    ask = await post(gateway, builder_request("Tisch reservieren", "de-DE", session))
    params = json.loads(json.dumps(ask["session"]["params"]))
    params[chips.MEMORY_KEY]["chips"]["Tisch für die ganze"] = '/inform{"people": "9"}'
    tap = await post(gateway, builder_request("Tisch für die ganze", "de-DE", session, params=params))
    assert booked("de", "9") not in v3_said(tap)
    assert booked("de", "6") not in v3_said(tap)  # ignored memory: the title is only text
    assert v3_said(tap)[0] not in responses("de", "utter_booked")


async def test_conversation_v2_pl_chip_tap_keeps_the_token(gateway: GatewayProcess) -> None:
    conversation = f"chips-v2-{uuid.uuid4().hex}"
    own = '["_actions_on_google","wizyta"]'
    ask = await post(gateway, v2_request("Zarezerwuj stolik", "pl-PL", conversation, token=own))
    assert legacy_said(ask) == responses("pl", "utter_ask_people")
    titles = [s["title"] for s in legacy_prompt(ask)["suggestions"]]
    assert titles == ["Rezerwacja stolika… dwóch", "Rezerwacja stolika… całej"]  # equal cuts told apart
    tap = await post(gateway, v2_request(titles[1], "pl-PL", conversation, token=ask["conversationToken"]))
    assert legacy_said(tap) == [booked("pl", "6")]
    assert tap["conversationToken"] == own  # the action's own token, unwrapped once nothing is remembered


async def test_dialogflow_de_chip_tap_through_the_output_context(gateway: GatewayProcess) -> None:
    session = f"projects/p/agent/sessions/chips-df-{uuid.uuid4().hex}"
    ask = await post(gateway, dialogflow_request("Tisch reservieren", "de", session))
    assert legacy_said(ask) == responses("de", "utter_ask_people")
    assert legacy_prompt(ask)["suggestions"][1]["title"] == "Tisch für die ganze"
    body = dialogflow_request("TISCH für die  ganze", "de", session)
    body["queryResult"]["outputContexts"] = ask["outputContexts"]  # what Dialogflow keeps active
    tap = await post(gateway, body)
    assert legacy_said(tap) == [booked("de", "6")]
    assert "outputContexts" not in tap


async def test_a_speaker_hears_the_chips_and_may_say_one(gateway: GatewayProcess) -> None:
    session = f"chips-speaker-{uuid.uuid4().hex}"
    body = builder_request("Tisch reservieren", "de-DE", session)
    body["device"]["capabilities"] = ["SPEECH"]
    ask = await post(gateway, body)
    assert "suggestions" not in ask["prompt"]
    said = "Du kannst Reservierung für zwei Personen oder Tisch für die ganze Familie sagen."
    assert v3_said(ask)[-1] == said
    say = builder_request("tisch für die ganze familie", "de-DE", session, params=ask["session"]["params"])
    say["device"]["capabilities"] = ["SPEECH"]
    assert v3_said(await post(gateway, say)) == [booked("de", "6")]
