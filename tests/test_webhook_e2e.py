"""End to end over real HTTP: a real gateway process with real trained en/pl/de models."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from tests.support import GatewayProcess, builder_request, responses


async def post(gw: GatewayProcess, body: Any, path: str = "/webhook/google") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(gw.url + path, json=body) as resp:
        return resp.status, await resp.json()


def speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


@pytest.mark.parametrize(
    ("locale", "text", "lang"),
    [
        ("en-US", "hello", "en"),
        ("en-GB", "hi there", "en"),
        ("pl-PL", "cześć", "pl"),
        ("de-DE", "hallo", "de"),
        ("de-AT", "Hallo", "de"),
        ("ja-JP", "hello", "en"),  # unknown locale -> default bot
    ],
)
async def test_greeting_is_answered_in_the_locales_language(
    gateway: GatewayProcess, locale: str, text: str, lang: str
) -> None:
    session = f"s-{uuid.uuid4().hex}"
    status, answer = await post(gateway, builder_request(text, locale, session, params={"k": "v"}))
    assert status == 200
    assert answer["session"]["id"] == session
    assert answer["session"]["params"] == {"k": "v"}
    assert speech(answer) in responses(lang, "utter_greet")
    assert answer["prompt"]["firstSimple"]["text"] == speech(answer)


@pytest.mark.parametrize("locale,lang", [("en-US", "en"), ("pl-PL", "pl"), ("de-AT", "de")])
async def test_main_intent_greets_in_the_bots_language(
    gateway: GatewayProcess, locale: str, lang: str
) -> None:
    body = builder_request("", locale, intent="actions.intent.MAIN", handler="actions.handler.MAIN")
    status, answer = await post(gateway, body)
    assert status == 200
    assert speech(answer) in responses(lang, "utter_greet")


async def test_alias_route_answers_like_the_main_one(gateway: GatewayProcess) -> None:
    status, answer = await post(gateway, builder_request("hello", "en-US"), "/google_action")
    assert status == 200
    assert speech(answer) in responses("en", "utter_greet")


@pytest.mark.parametrize(
    ("locale", "lang", "ask", "people"),
    [
        ("en-US", "en", "I would like to book a table", "4"),
        ("pl-PL", "pl", "chciałbym zarezerwować stolik", "3"),
        ("de-DE", "de", "ich möchte einen Tisch reservieren", "5"),
    ],
)
async def test_two_turn_booking_fills_the_slot(
    gateway: GatewayProcess, locale: str, lang: str, ask: str, people: str
) -> None:
    session = f"book-{uuid.uuid4().hex}"
    status, first = await post(gateway, builder_request(ask, locale, session))
    assert status == 200
    assert speech(first) in responses(lang, "utter_ask_people")
    status, second = await post(gateway, builder_request(people, locale, session))
    assert status == 200
    booked = [t.replace("{people}", people) for t in responses(lang, "utter_booked")]
    assert speech(second) in booked


async def test_sessions_are_namespaced_by_language(gateway: GatewayProcess) -> None:
    # The same session id asks for a booking in English, then switches to Polish: the Polish bot
    # starts clean instead of continuing the English form.
    session = f"switch-{uuid.uuid4().hex}"
    _, first = await post(gateway, builder_request("book a table", "en-US", session))
    assert speech(first) in responses("en", "utter_ask_people")
    _, polish = await post(gateway, builder_request("cześć", "pl-PL", session))
    assert speech(polish) in responses("pl", "utter_greet")
    _, back = await post(gateway, builder_request("2", "en-US", session))
    assert speech(back) in [t.replace("{people}", "2") for t in responses("en", "utter_booked")]


async def test_help_offers_suggestion_chips(gateway: GatewayProcess) -> None:
    _, answer = await post(gateway, builder_request("what can you do", "en-US"))
    assert speech(answer) in responses("en", "utter_help")
    titles = [chip["title"] for chip in answer["prompt"]["suggestions"]]
    assert titles and all(0 < len(t) <= 25 for t in titles)


async def test_health_and_readiness(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(gateway.url + "/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200
            assert body["waiting"] == []
            assert {b["state"] for b in body["bots"].values()} == {"ready"}


async def test_bad_input_is_a_4xx_with_a_reason(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        url = gateway.url + "/webhook/google"
        async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert "invalid JSON" in (await r.json())["error"]
        async with http.post(url, data=b"hello", headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415
        async with http.post(url, json={"handler": {"name": "x"}, "user": {"locale": "en-US"}}) as r:
            assert r.status == 400
            assert "session" in (await r.json())["error"]
        async with http.post(url, json=[1, 2]) as r:
            assert r.status == 400
        async with http.get(gateway.url + "/nope") as r:
            assert r.status == 404
            assert "error" in await r.json()
