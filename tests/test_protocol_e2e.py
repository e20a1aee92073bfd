"""End to end over real HTTP against the real gateway process: every webhook generation, its endings,
health checks and hard-edged input."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.shapes import GOOGLE_SCHEMAS, dialogflow_request, schema_errors, shape_of, v2_request
from tests.support import GatewayProcess, builder_request, responses

WEBHOOK = "/webhook/google"


async def post(gw: GatewayProcess, body: Any) -> tuple[int, Any]:
    """POST `body`; a 200 answer must pass its shape's schema (tests/schemas/)."""
    async with aiohttp.ClientSession() as http, http.post(gw.url + WEBHOOK, json=body) as resp:
        status, answer = resp.status, await resp.json()
    if status == 200 and shape_of(body) in GOOGLE_SCHEMAS:
        assert schema_errors(shape_of(body), answer) == [], answer
    return status, answer


async def post_bytes(
    gw: GatewayProcess, data: Any, content_type: str = "application/json", **kwargs: Any
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gw.url + WEBHOOK, data=data, headers={"Content-Type": content_type}, **kwargs) as resp,
    ):
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


def v2_speech(answer: dict[str, Any]) -> str:
    prompt = answer["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    return str(prompt["items"][0]["simpleResponse"]["textToSpeech"])


async def test_v2_main_in_polish_gets_a_polish_greeting(gateway: GatewayProcess) -> None:
    body = v2_request("", "pl-PL", intent="actions.intent.MAIN", token='["polish"]')
    status, answer = await post(gateway, body)
    assert status == 200
    assert schema_errors("conversation_v2", answer) == []
    assert answer["expectUserResponse"] is True
    assert v2_speech(answer) in responses("pl", "utter_greet")
    assert answer["expectedInputs"][0]["possibleIntents"] == [{"intent": "actions.intent.TEXT"}]
    assert answer["conversationToken"] == '["polish"]'


async def test_v2_conversation_keeps_its_state_and_goodbye_ends_it(gateway: GatewayProcess) -> None:
    conversation = f"v2-{uuid.uuid4().hex}"
    _, first = await post(gateway, v2_request("ich möchte einen Tisch reservieren", "de-DE", conversation))
    assert v2_speech(first) in responses("de", "utter_ask_people")
    _, second = await post(gateway, v2_request("5", "de-DE", conversation))
    assert v2_speech(second) in [t.replace("{people}", "5") for t in responses("de", "utter_booked")]
    status, bye = await post(gateway, v2_request("tschüss", "de-DE", conversation))
    assert status == 200
    assert schema_errors("conversation_v2", bye) == []
    assert bye["expectUserResponse"] is False
    assert "expectedInputs" not in bye
    final = bye["finalResponse"]["richResponse"]["items"][0]["simpleResponse"]["textToSpeech"]
    assert final in responses("de", "utter_goodbye")


@pytest.mark.parametrize(
    ("locale", "text", "lang"), [("en-US", "goodbye", "en"), ("pl-PL", "do widzenia", "pl")]
)
async def test_v3_goodbye_ends_the_conversation(
    gateway: GatewayProcess, locale: str, text: str, lang: str
) -> None:
    status, answer = await post(gateway, builder_request(text, locale))
    assert status == 200
    assert schema_errors("actions_builder", answer) == []
    assert answer["scene"]["next"]["name"] == "actions.scene.END_CONVERSATION"
    assert answer["prompt"]["firstSimple"]["speech"] in responses(lang, "utter_goodbye")


async def test_dialogflow_is_answered_in_its_own_shape(gateway: GatewayProcess) -> None:
    session = f"projects/p/agent/sessions/{uuid.uuid4().hex}"
    status, answer = await post(gateway, dialogflow_request("was kannst du", "de", session))
    assert status == 200
    assert schema_errors("dialogflow", answer) == []
    assert answer["fulfillmentText"] in responses("de", "utter_help")
    google = answer["payload"]["google"]
    assert google["expectUserResponse"] is True
    assert [chip["title"] for chip in google["richResponse"]["suggestions"]] == [
        "Öffnungszeiten",
        "Tisch reservieren",
    ]
    _, bye = await post(gateway, dialogflow_request("tschüss", "de", session))
    assert bye["payload"]["google"]["expectUserResponse"] is False


async def test_health_checks_answer_200_in_every_generation(gateway: GatewayProcess) -> None:
    v3 = {
        "handler": {"name": "actions.handler.HEALTH_CHECK"},
        "session": {"id": "h"},
        "user": {"locale": "en-US"},
    }
    assert await post(gateway, v3) == (200, {})
    health = [{"name": "is_health_check", "boolValue": True, "textValue": "1"}]
    status, answer = await post(
        gateway, v2_request("", "en-US", intent="actions.intent.MAIN", arguments=health)
    )
    assert status == 200
    assert schema_errors("conversation_v2", answer) == []
    assert answer["expectUserResponse"] is False


async def test_cancel_ends_politely_in_the_users_language(gateway: GatewayProcess) -> None:
    _, v3 = await post(gateway, builder_request("anuluj", "pl-PL", intent="actions.intent.CANCEL"))
    assert v3["prompt"]["firstSimple"]["speech"] == "Dobrze, do widzenia!"
    assert v3["scene"]["next"]["name"] == "actions.scene.END_CONVERSATION"
    _, v2 = await post(gateway, v2_request("abbrechen", "de-DE", intent="actions.intent.CANCEL"))
    assert v2["finalResponse"]["richResponse"]["items"][0]["simpleResponse"]["textToSpeech"] == (
        "Alles klar, auf Wiedersehen!"
    )


def js(body: Any) -> bytes:
    return json.dumps(body).encode()


async def test_hard_edged_input_is_a_4xx_with_a_reason(gateway: GatewayProcess) -> None:
    valid = js(builder_request("hello"))
    json_type = "application/json"
    cases: list[tuple[bytes, str, int, str]] = [
        (b"{not json", json_type, 400, "invalid JSON"),
        (valid, "text/plain", 415, "not application/json"),
        (valid.replace(b"hello", b"hel\xfflo"), json_type, 400, "UTF-8"),
        (b'{"a":' + b"[" * 40 + b"]" * 40 + b"}", json_type, 400, "nested deeper"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, json_type, 400, "invalid JSON"),
        (valid[:-1] + b" " * 70000 + b"}", json_type, 413, "exceeds 65536 bytes"),
        (js(builder_request("hi", locale=None)), json_type, 400, "missing locale"),
        (
            js({"inputs": [{"intent": "actions.intent.X"}], "conversation": {}}),
            json_type,
            400,
            "unsupported intent",
        ),
        (js({"handler": {"name": 7}}), json_type, 400, "handler.name must be a string"),
    ]
    for data, content_type, status, reason in cases:
        got, answer = await post_bytes(gateway, data, content_type)
        assert (got, reason in answer.get("error", "")) == (status, True), (data[:60], answer)
        assert schema_errors("error", answer) == []


async def test_an_oversize_chunked_body_is_refused_while_streaming(gateway: GatewayProcess) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 4096  # 160 KiB in all, without a Content-Length

    status, answer = await post_bytes(gateway, chunks())
    assert status == 413
    assert "exceeds" in answer["error"]
