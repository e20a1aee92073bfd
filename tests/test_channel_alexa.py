"""Alexa custom skill on the real gateway (real models, real Redis), every request signed the way Amazon
signs: a certificate chain generated here and fetched by the gateway over HTTPS from "s3.amazonaws.com",
which a test resolver sends to a local server (tests/alexa_support.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.alexa import TRUST, cert_url
from gateway.errors import Refused
from gateway.settings import Settings, load_settings
from tests.alexa_support import CERT_URL, SKILL_ID, Amazon, alexa_request, body_bytes
from tests.inprocess import running_gateway
from tests.shapes import schema_errors
from tests.support import RedisServer, free_port, responses
from tests.test_readme_channels import EXAMPLES
from tests.test_webhook_fuzz import FUZZ, locales, mutated, session_ids, utterances

WEBHOOK = "/webhook/alexa"
BOOK = {
    "en": "I would like to book a table",
    "pl": "chciałbym zarezerwować stolik",
    "de": "ich möchte einen Tisch reservieren",
}
LOCALE = {"en": "en-GB", "pl": "pl-PL", "de": "de-DE"}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def amazon() -> Amazon:
    return Amazon.make()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def s3_port(amazon: Amazon, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", amazon.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(
        runner, "127.0.0.1", port, ssl_context=amazon.server_context(tmp_path_factory.mktemp("s3"))
    )
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def alexa_settings(models_dir: Path, module_redis_server: RedisServer) -> Settings:
    return load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": module_redis_server.url,
            "channels.alexa.enabled": True,
            "channels.alexa.skill_id": SKILL_ID,
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(alexa_settings: Settings, amazon: Amazon, s3_port: int) -> AsyncIterator[TestClient]:
    def trust_local_amazon(app: web.Application) -> None:
        app[TRUST] = amazon.trust(s3_port)

    async with running_gateway(alexa_settings, prepare=trust_local_amazon) as client:
        yield client


async def post_signed(
    client: TestClient, amazon: Amazon, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    raw = body_bytes(body)
    async with client.post(WEBHOOK, data=raw, headers=headers or amazon.headers(raw)) as resp:
        return resp.status, await resp.json()


def speech(answer: dict[str, Any]) -> str:
    return str(answer["response"]["outputSpeech"]["text"])


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_conversation_per_language_is_kept_in_redis(
    client: TestClient, amazon: Amazon, module_redis_server: RedisServer, lang: str
) -> None:
    session = f"amzn1.echo-api.session.{uuid.uuid4()}"
    status, launch = await post_signed(
        client, amazon, alexa_request("LaunchRequest", locale=LOCALE[lang], session=session)
    )
    assert status == 200 and schema_errors("alexa", launch) == []
    assert speech(launch) in responses(lang, "utter_greet")
    assert launch["response"]["shouldEndSession"] is False
    assert launch["response"]["reprompt"]["outputSpeech"]["type"] == "PlainText"
    _, ask = await post_signed(
        client, amazon, alexa_request(text=BOOK[lang], locale=LOCALE[lang], session=session)
    )
    assert speech(ask) in responses(lang, "utter_ask_people")
    _, done = await post_signed(client, amazon, alexa_request(text="4", locale=LOCALE[lang], session=session))
    assert speech(done) in [t.replace("{people}", "4") for t in responses(lang, "utter_booked")]
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        blob = await redis.get(f"gateway:production:{lang}:{{alexa:{lang}:{session}}}:tracker")
    finally:
        await redis.close(close_connection_pool=True)
    users = [e for e in orjson.loads(blob)["events"] if e["event"] == "user"]
    assert [(e["text"], e["input_channel"]) for e in users] == [
        ("/greet", "alexa"),
        (BOOK[lang], "alexa"),
        ("4", "alexa"),
    ]


async def test_stop_ends_politely_and_fallback_reprompts(client: TestClient, amazon: Amazon) -> None:
    _, stop = await post_signed(client, amazon, alexa_request(intent="AMAZON.StopIntent", locale="de-DE"))
    assert speech(stop) == "Alles klar, auf Wiedersehen!" and stop["response"]["shouldEndSession"] is True
    assert "reprompt" not in stop["response"]
    _, fallback = await post_signed(
        client, amazon, alexa_request(intent="AMAZON.FallbackIntent", locale="pl-PL")
    )
    assert speech(fallback) == "Przepraszam, nic nie usłyszałem. W czym mogę pomóc?"
    assert fallback["response"]["shouldEndSession"] is False
    _, goodbye = await post_signed(client, amazon, alexa_request(text="goodbye", locale="en-US"))
    assert (
        speech(goodbye) in responses("en", "utter_goodbye")
        and goodbye["response"]["shouldEndSession"] is True
    )


async def test_session_ended_gets_an_empty_answer_and_stores_nothing(
    client: TestClient, amazon: Amazon, module_redis_server: RedisServer
) -> None:
    session = f"amzn1.echo-api.session.{uuid.uuid4()}"
    status, answer = await post_signed(client, amazon, alexa_request("SessionEndedRequest", session=session))
    assert (status, answer) == (200, {"version": "1.0", "response": {}})
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        assert await redis.keys(f"*{session}*") == []
    finally:
        await redis.close(close_connection_pool=True)


async def test_a_locale_without_a_bot_goes_to_the_default(client: TestClient, amazon: Amazon) -> None:
    _, answer = await post_signed(
        client, amazon, alexa_request(text="what are your opening hours", locale="fr-FR")
    )
    assert speech(answer) in responses("en", "utter_hours")


def _bad(amazon: Amazon) -> list[tuple[str, Any, dict[str, str] | None, int, str]]:
    """(what, body, headers or None for correctly signed, status, reason) for refused requests."""
    fresh = alexa_request(text="hello")
    raw = body_bytes(fresh)
    signed = amazon.headers(raw)
    old = alexa_request(text="hello", timestamp=time.time() - 151)
    ahead = alexa_request(text="hello", timestamp=time.time() + 151)
    return [
        ("no headers", fresh, {"Content-Type": "application/json"}, 401, "missing SignatureCertChainUrl"),
        ("no signature", fresh, {**signed, "Signature-256": ""}, 401, "missing Signature-256"),
        (
            "http url",
            fresh,
            {**signed, "SignatureCertChainUrl": CERT_URL.replace("https", "http")},
            401,
            "echo.api",
        ),
        ("bad signature", fresh, {**signed, "Signature-256": amazon.sign(b"other")}, 401, "does not match"),
        ("not base64", fresh, {**signed, "Signature-256": "%%%"}, 401, "not base64"),
        ("stale", old, None, 401, "150 s"),
        ("from the future", ahead, None, 401, "150 s"),
        (
            "other skill",
            alexa_request(text="hello", application_id="amzn1.ask.skill.other"),
            None,
            401,
            "applicationId",
        ),
        (
            "expired cert",
            fresh,
            amazon.headers(raw, "https://s3.amazonaws.com/echo.api/expired.pem"),
            401,
            "not trusted",
        ),
        (
            "other name",
            fresh,
            amazon.headers(raw, "https://s3.amazonaws.com/echo.api/other-name.pem"),
            401,
            "not trusted",
        ),
        (
            "untrusted root",
            fresh,
            amazon.headers(raw, "https://s3.amazonaws.com/echo.api/untrusted.pem"),
            401,
            "not trusted",
        ),
        (
            "garbage chain",
            fresh,
            amazon.headers(raw, "https://s3.amazonaws.com/echo.api/garbage.pem"),
            401,
            "does not parse",
        ),
        (
            "missing chain",
            fresh,
            amazon.headers(raw, "https://s3.amazonaws.com/echo.api/none.pem"),
            401,
            "answered 404",
        ),
    ]


async def test_requests_failing_any_of_amazons_rules_are_refused(client: TestClient, amazon: Amazon) -> None:
    for what, body, headers, status, reason in _bad(amazon):
        got, answer = await post_signed(client, amazon, body, headers)
        assert got == status, (what, answer)
        assert reason in answer["error"], (what, answer)
    status, _ = await post_signed(client, amazon, alexa_request(text="hello"))
    assert status == 200


async def test_tampered_body_is_refused(client: TestClient, amazon: Amazon) -> None:
    original = body_bytes(alexa_request(text="hello"))
    tampered = original.replace(b"hello", b"goodbye")
    async with client.post(WEBHOOK, data=tampered, headers=amazon.headers(original)) as resp:
        assert resp.status == 401


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com:443/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com/echo.api/../echo.api/echo-api-cert.pem",
        "HTTPS://S3.AMAZONAWS.COM/echo.api/echo-api-cert.pem",
    ],
)
async def test_amazons_valid_cert_url_examples(url: str) -> None:
    assert cert_url(url) == "https://s3.amazonaws.com/echo.api/echo-api-cert.pem"


@pytest.mark.parametrize(
    "url",
    [
        "http://s3.amazonaws.com/echo.api/echo-api-cert.pem",
        "https://notamazon.com/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com/EcHo.aPi/echo-api-cert.pem",
        "https://s3.amazonaws.com/invalid.path/echo-api-cert.pem",
        "https://s3.amazonaws.com:563/echo.api/echo-api-cert.pem",
        "https://s3.amazonaws.com/echo.api/../evil/cert.pem",
        "https://user@s3.amazonaws.com/echo.api/cert.pem",
        "https://s3.amazonaws.com.evil.com/echo.api/cert.pem",
        "https://s3.amazonaws.com:99999/echo.api/cert.pem",
    ],
)
async def test_amazons_invalid_cert_url_examples(url: str) -> None:
    with pytest.raises(Refused):
        cert_url(url)


async def test_readme_example_is_answered_as_documented(client: TestClient, amazon: Amazon) -> None:
    example = EXAMPLES["alexa"]
    body = orjson.loads(example["request"])
    # Posted as written, except the timestamp: Amazon's 150 s rule refuses any fixed one.
    fresh = example["request"].replace(
        body["request"]["timestamp"].encode(), alexa_request()["request"]["timestamp"].encode()
    )
    async with client.post(example["path"], data=fresh, headers=amazon.headers(fresh)) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == example["response"]


alexa_requests = st.builds(
    alexa_request,
    kind=st.sampled_from(
        ["LaunchRequest", "IntentRequest", "SessionEndedRequest", "CanFulfillIntentRequest"]
    ),
    text=utterances,
    locale=locales,
    session=session_ids,
    intent=st.sampled_from(
        ["CatchAllIntent", "AMAZON.StopIntent", "AMAZON.FallbackIntent", "AMAZON.HelpIntent"]
    ),
)


@FUZZ
@given(body=mutated(alexa_requests))
async def test_signed_mutated_requests_never_get_a_server_error(
    client: TestClient, amazon: Amazon, alexa_settings: Settings, body: dict[str, Any]
) -> None:
    status, answer = await post_signed(client, amazon, body)
    assert status < 500, (status, answer)
    if status != 200:
        assert status in {400, 401}, (status, answer)
        assert schema_errors("error", answer) == [], answer
        return
    assert schema_errors("alexa", answer) == [], (answer, body)
    for bot in alexa_settings.bots.values():
        assert bot.prompts.unavailable not in orjson.dumps(answer).decode(), body
