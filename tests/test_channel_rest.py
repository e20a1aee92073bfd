"""Rasa's REST channel on the real gateway (real models, real Redis): Rasa's answer shape, language
choice, the bearer token, and conversations that never mix with Google's."""

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

from gateway import metrics
from gateway.channels.rest import accept_language
from gateway.settings import load_settings
from tests.inprocess import running_gateway
from tests.support import RedisServer, builder_request, responses

TOKEN = "rest-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEBHOOK = "/webhooks/rest/webhook"
BOOK = {
    "en": "I would like to book a table",
    "pl": "chciałbym zarezerwować stolik",
    "de": "ich möchte einen Tisch reservieren",
}
LOCALE = {"en": "en-US", "pl": "pl-PL", "de": "de-DE"}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(models_dir: Path, module_redis_server: RedisServer) -> AsyncIterator[TestClient]:
    settings = load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": module_redis_server.url,
            "channels.rest.token": TOKEN,
        }
    )
    async with running_gateway(settings) as client:
        yield client


async def rest(
    client: TestClient, body: Any, headers: dict[str, str] | None = None, query: str = ""
) -> tuple[int, Any]:
    async with client.post(WEBHOOK + query, json=body, headers={**AUTH, **(headers or {})}) as resp:
        return resp.status, await resp.json()


def texts(answer: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in answer if "text" in m]


def booked(lang: str, people: str) -> list[str]:
    return [t.replace("{people}", people) for t in responses(lang, "utter_booked")]


async def test_status_endpoint_answers_like_rasa(client: TestClient) -> None:
    for path in ("/webhooks/rest/", "/webhooks/rest"):
        async with client.get(path) as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_conversation_per_language_is_kept_in_redis(
    client: TestClient, module_redis_server: RedisServer, lang: str
) -> None:
    sender = f"rest-{uuid.uuid4().hex}"
    meta = {"locale": LOCALE[lang]}
    status, first = await rest(client, {"sender": sender, "message": BOOK[lang], "metadata": meta})
    assert status == 200
    assert [m["recipient_id"] for m in first] == [sender] * len(first)  # the client's own id, unprefixed
    assert texts(first)[0] in responses(lang, "utter_ask_people")
    status, second = await rest(client, {"sender": sender, "message": "4", "metadata": meta})
    assert status == 200 and texts(second)[0] in booked(lang, "4")
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        blob = await redis.get(f"gateway:production:{lang}:{{rest:{lang}:{sender}}}:tracker")
    finally:
        await redis.close(close_connection_pool=True)
    assert blob is not None
    events = orjson.loads(blob)["events"]
    users = [e for e in events if e["event"] == "user"]
    assert [e["text"] for e in users] == [BOOK[lang], "4"]
    assert {e["input_channel"] for e in users} == {"rest"}


async def test_answer_has_rasas_keys_in_rasas_order(client: TestClient) -> None:
    status, answer = await rest(client, {"sender": f"s-{uuid.uuid4().hex}", "message": "what can you do"})
    assert status == 200
    help_message = answer[0]
    assert list(help_message) == ["recipient_id", "text", "buttons"]
    assert help_message["buttons"] == [
        {"title": "Opening hours", "payload": "/ask_hours"},
        {"title": "Book a table", "payload": "/book_table"},
    ]


@pytest.mark.parametrize(
    ("metadata", "query", "header", "lang"),
    [
        ({"locale": "de-AT"}, "?lang=pl", "en-US", "de"),  # metadata wins
        ({}, "?lang=pl", "de-DE,de;q=0.9", "pl"),  # then ?lang=
        ({}, "", "fr-FR, de;q=0.9, pl;q=0.8", "en"),  # then Accept-Language: fr matches no bot
        ({}, "", "pl;q=0.5, de-CH;q=0.9", "de"),  # the highest weight
        ({}, "", "", "en"),  # else the default bot
    ],
)
async def test_language_comes_from_metadata_then_query_then_accept_language(
    client: TestClient, metadata: dict[str, str], query: str, header: str, lang: str
) -> None:
    body = {"sender": f"s-{uuid.uuid4().hex}", "message": "hello", "metadata": metadata}
    status, answer = await rest(client, body, {"Accept-Language": header} if header else {}, query)
    assert status == 200
    assert texts(answer)[0] in responses(lang, "utter_greet")


async def test_never_silent(client: TestClient) -> None:
    status, answer = await rest(client, {"sender": f"s-{uuid.uuid4().hex}", "message": "  "})
    assert status == 200
    assert texts(answer) == ["Sorry, I didn't catch that. How can I help you?"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"message": "hi"}, "missing field sender"),
        ({"sender": "", "message": "hi"}, "missing field sender"),
        ({"sender": 5, "message": "hi"}, "field sender must be a string"),
        ({"sender": "a"}, "missing field message"),
        ({"sender": "a", "message": ["hi"]}, "field message must be a string"),
        ({"sender": "a", "message": "hi", "metadata": "x"}, "field metadata must be an object"),
        (
            {"sender": "a", "message": "hi", "metadata": {"locale": 1}},
            "field metadata.locale must be a string",
        ),
    ],
)
async def test_bad_requests_get_400_with_the_reason(client: TestClient, body: Any, reason: str) -> None:
    status, answer = await rest(client, body)
    assert status == 400
    assert reason in answer["error"]


async def test_stream_mode_is_refused_with_a_reason(client: TestClient) -> None:
    status, answer = await rest(client, {"sender": "a", "message": "hi"}, query="?stream=true")
    assert status == 400 and "stream" in answer["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
)
async def test_token_is_required_when_configured(client: TestClient, headers: dict[str, str]) -> None:
    async with client.post(WEBHOOK, json={"sender": "a", "message": "hi"}, headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"].startswith("unauthorized: ")


async def test_same_session_id_on_google_and_rest_never_shares_a_tracker(client: TestClient) -> None:
    shared = f"shared-{uuid.uuid4().hex}"
    # REST opens the booking form; Google's conversation of the same id must not be inside it.
    _, first = await rest(client, {"sender": shared, "message": BOOK["en"]})
    assert texts(first)[0] in responses("en", "utter_ask_people")
    async with client.post("/webhook/google", json=builder_request("4", "en-US", shared)) as resp:
        google = await resp.json()
    assert google["prompt"]["firstSimple"]["speech"] not in booked("en", "4")
    # ...and REST's form is still waiting for its answer.
    _, second = await rest(client, {"sender": shared, "message": "4"})
    assert texts(second)[0] in booked("en", "4")


async def test_accept_language_picks_the_most_preferred_tag() -> None:
    assert accept_language("da, en-gb;q=0.8, en;q=0.7") == "da"
    assert accept_language("en;q=0.7, pl;q=0.9") == "pl"
    assert accept_language("*;q=1, de;q=0.1") == "de"
    assert accept_language("de;q=0, fr;q=bad") is None
    assert accept_language("") is None


async def test_request_id_and_metrics_are_labelled_by_channel(client: TestClient) -> None:
    def count(status: str, lang: str) -> float:
        labels = {"channel": "rest", "lang": lang, "status": status}
        return metrics.REGISTRY.get_sample_value("gateway_requests_total", labels) or 0.0

    ok, bad = count("200", "pl"), count("400", "none")
    body = {"sender": f"s-{uuid.uuid4().hex}", "message": "cześć", "metadata": {"locale": "pl-PL"}}
    async with client.post(WEBHOOK, json=body, headers={**AUTH, "X-Request-Id": "rest-req-1"}) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "rest-req-1"
    async with client.post(WEBHOOK, json={"sender": "x"}, headers=AUTH) as resp:
        assert resp.status == 400
    assert (count("200", "pl"), count("400", "none")) == (ok + 1, bad + 1)
