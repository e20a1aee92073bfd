"""Dialogflow CX on the real gateway (real models, real Redis): conversations per language, endings, and
verification by a Google-signed OIDC ID token (keys generated here, served as a local JWKS file) plus
static headers."""

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
from aiohttp.test_utils import TestClient

from gateway.settings import load_settings
from tests.inprocess import running_gateway
from tests.security.conftest import SigningKey, claims, new_key, sign, write_jwks
from tests.shapes import schema_errors
from tests.support import RedisServer, responses

WEBHOOK = "/webhook/dialogflow-cx"
AUDIENCE = "https://gateway.example.com/webhook/dialogflow-cx"
SERVICE_AGENT = "service-123456789@gcp-sa-dialogflow.iam.gserviceaccount.com"
SECRET_HEADER = {"X-Webhook-Secret": "cx-static-secret-value"}
AGENT_PATH = "projects/p/locations/global/agents/a1"
FLOW = f"{AGENT_PATH}/flows/00000000-0000-0000-0000-000000000000"
BOOK = {
    "en": "I would like to book a table",
    "pl": "chciałbym zarezerwować stolik",
    "de": "ich möchte einen Tisch reservieren",
}

pytestmark = pytest.mark.asyncio(loop_scope="module")


def cx_request(
    text: str = "",
    language: str = "en",
    session: str | None = None,
    tag: str = "rasa",
    event: str = "",
    transcript: bool = False,
) -> dict[str, Any]:
    """A WebhookRequest shaped like the Dialogflow CX v3 reference (camel-case JSON)."""
    body: dict[str, Any] = {
        "detectIntentResponseId": str(uuid.uuid4()),
        "pageInfo": {"currentPage": f"{FLOW}/pages/START_PAGE", "displayName": "Start Page"},
        "sessionInfo": {"session": f"{AGENT_PATH}/sessions/{session or uuid.uuid4().hex}", "parameters": {}},
        "fulfillmentInfo": {"tag": tag},
        "languageCode": language,
    }
    if event:
        body["triggerEvent"] = event
    elif transcript:
        body["transcript"] = text
    else:
        body["text"] = text
    return body


def id_token(key: SigningKey, **overrides: Any) -> str:
    """An ID token like the one CX's service agent sends (aud = the webhook URL)."""
    payload = claims(
        aud=AUDIENCE, email=SERVICE_AGENT, email_verified=True, sub="1234567890", azp="1234567890"
    )
    payload.update(overrides)
    return sign(key, {k: v for k, v in payload.items() if v is not None})


@pytest.fixture(scope="module")
def google_id_key() -> SigningKey:
    return new_key()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(
    models_dir: Path,
    module_redis_server: RedisServer,
    google_id_key: SigningKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TestClient]:
    jwks = write_jwks(tmp_path_factory.mktemp("cx") / "certs.json", [google_id_key])
    settings = load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": module_redis_server.url,
            "google.jwks_file": str(jwks),
            "channels.dialogflow_cx.audience": AUDIENCE,
            "channels.dialogflow_cx.service_accounts": [SERVICE_AGENT],
            "channels.dialogflow_cx.headers": SECRET_HEADER,
        }
    )
    async with running_gateway(settings) as client:
        yield client


async def cx(
    client: TestClient, key: SigningKey, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    sent = {"Authorization": f"Bearer {id_token(key)}", **SECRET_HEADER} if headers is None else headers
    async with client.post(WEBHOOK, json=body, headers=sent) as resp:
        return resp.status, await resp.json()


def said(answer: dict[str, Any]) -> list[str]:
    return [t for m in answer["fulfillmentResponse"]["messages"] if "text" in m for t in m["text"]["text"]]


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_conversation_per_language_is_kept_in_redis(
    client: TestClient, google_id_key: SigningKey, module_redis_server: RedisServer, lang: str
) -> None:
    session = f"cx-{uuid.uuid4().hex}"
    status, welcome = await cx(client, google_id_key, cx_request("", lang, session, tag="welcome"))
    assert status == 200 and schema_errors("dialogflow_cx", welcome) == []
    assert said(welcome)[0] in responses(lang, "utter_greet")
    _, ask = await cx(client, google_id_key, cx_request(BOOK[lang], lang, session, transcript=True))
    assert said(ask)[0] in responses(lang, "utter_ask_people")
    _, done = await cx(client, google_id_key, cx_request("4", lang, session))
    assert said(done)[0] in [t.replace("{people}", "4") for t in responses(lang, "utter_booked")]
    assert done["sessionInfo"]["parameters"] == {"rasa_end_conversation": False}
    assert "targetPage" not in done
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        blob = await redis.get(
            f"gateway:production:{lang}:{{dialogflow_cx:{lang}:{AGENT_PATH}/sessions/{session}}}:tracker"
        )
    finally:
        await redis.close(close_connection_pool=True)
    users = [e for e in orjson.loads(blob)["events"] if e["event"] == "user"]
    assert [e["text"] for e in users] == ["/greet", BOOK[lang], "4"]
    assert {e["input_channel"] for e in users} == {"dialogflow_cx"}


async def test_goodbye_ends_the_session_on_the_end_session_page(
    client: TestClient, google_id_key: SigningKey
) -> None:
    status, bye = await cx(client, google_id_key, cx_request("goodbye", "en-US"))
    assert status == 200 and schema_errors("dialogflow_cx", bye) == []
    assert said(bye) == responses("en", "utter_goodbye")
    assert bye["sessionInfo"]["parameters"] == {"rasa_end_conversation": True}
    assert bye["targetPage"] == f"{FLOW}/pages/END_SESSION"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"languageCode": "en", "text": "hi"}, "missing field sessionInfo"),
        (
            {"sessionInfo": {"session": ""}, "languageCode": "en", "text": "hi"},
            "missing field sessionInfo.session",
        ),
        ({"sessionInfo": {"session": "s"}, "text": "hi"}, "missing locale: expected languageCode"),
        (
            {"sessionInfo": {"session": "s"}, "languageCode": 5, "text": "hi"},
            "field languageCode must be a string",
        ),
        ({"sessionInfo": {"session": "s", "parameters": []}, "languageCode": "en"}, "sessionInfo.parameters"),
        (
            {"sessionInfo": {"session": "s"}, "languageCode": "en", "fulfillmentInfo": {"tag": 1}},
            "fulfillmentInfo.tag",
        ),
        (
            {"sessionInfo": {"session": "s"}, "languageCode": "en", "text": ["hi"]},
            "field text must be a string",
        ),
    ],
)
async def test_bad_requests_get_400_with_the_reason(
    client: TestClient, google_id_key: SigningKey, body: Any, reason: str
) -> None:
    status, answer = await cx(client, google_id_key, body)
    assert status == 400
    assert reason in answer["error"]


def _refusals(key: SigningKey, stranger: SigningKey) -> list[tuple[str, dict[str, str], str]]:
    good = id_token(key)
    return [
        ("no credentials", {}, "missing required header X-Webhook-Secret"),
        ("header only", dict(SECRET_HEADER), "missing Authorization"),
        ("token only", {"Authorization": f"Bearer {good}"}, "missing required header"),
        ("wrong header", {"Authorization": f"Bearer {good}", "X-Webhook-Secret": "nope"}, "wrong value"),
        ("stranger's key", {"Authorization": f"Bearer {id_token(stranger)}", **SECRET_HEADER}, "unknown key"),
        (
            "other audience",
            {"Authorization": f"Bearer {id_token(key, aud='https://elsewhere')}", **SECRET_HEADER},
            "channels.dialogflow_cx.audience",
        ),
        (
            "other account",
            {"Authorization": f"Bearer {id_token(key, email='mallory@example.com')}", **SECRET_HEADER},
            "service account",
        ),
        (
            "unverified email",
            {"Authorization": f"Bearer {id_token(key, email_verified=False)}", **SECRET_HEADER},
            "service account",
        ),
        (
            "expired",
            {"Authorization": f"Bearer {id_token(key, exp=int(time.time()) - 3600)}", **SECRET_HEADER},
            "expired",
        ),
    ]


async def test_requests_without_both_credentials_are_refused(
    client: TestClient, google_id_key: SigningKey
) -> None:
    stranger = new_key()
    for what, headers, reason in _refusals(google_id_key, stranger):
        status, answer = await cx(client, google_id_key, cx_request("hello"), headers)
        assert status == 401, what
        assert reason in answer["error"], (what, answer)
    status, _ = await cx(client, google_id_key, cx_request("hello"))
    assert status == 200


async def test_same_session_on_rest_and_cx_never_shares_a_tracker(
    client: TestClient, google_id_key: SigningKey
) -> None:
    # The same id as a REST sender and as a CX session: REST's booking form must not leak into CX.
    shared = f"{AGENT_PATH}/sessions/shared-{uuid.uuid4().hex}"
    async with client.post("/webhooks/rest/webhook", json={"sender": shared, "message": BOOK["en"]}) as resp:
        assert resp.status == 200
    body = cx_request("4")
    body["sessionInfo"]["session"] = shared
    _, answer = await cx(client, google_id_key, body)
    assert said(answer)[0] not in [t.replace("{people}", "4") for t in responses("en", "utter_booked")]
