"""Dialogflow ES on its own path with ES's verification (basic auth + static header), in a verified
deployment (google.project_id set): ES works there while Google's endpoint still refuses it."""

from __future__ import annotations

import base64
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
from gateway.settings import load_settings
from tests.inprocess import running_gateway
from tests.security.conftest import new_key, write_jwks
from tests.shapes import dialogflow_request, schema_errors
from tests.support import RedisServer, responses

WEBHOOK = "/webhook/dialogflow-es"
USER, PASSWORD = "dialogflow", "es-basic-password-123"
HEADER = {"X-Fulfillment-Key": "es-static-header-value"}
BOOK = {
    "en": "I would like to book a table",
    "pl": "chciałbym zarezerwować stolik",
    "de": "ich möchte einen Tisch reservieren",
}

pytestmark = pytest.mark.asyncio(loop_scope="module")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


GOOD = {**basic(USER, PASSWORD), **HEADER}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(
    models_dir: Path, module_redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    jwks = write_jwks(tmp_path_factory.mktemp("es") / "certs.json", [new_key()])
    settings = load_settings(
        overrides={
            "bots.models_dir": str(models_dir),
            "monitor.interval_seconds": 0,
            "redis.url": module_redis_server.url,
            "google.project_id": "my-actions-project",
            "google.jwks_file": str(jwks),
            "channels.dialogflow_es.username": USER,
            "channels.dialogflow_es.password": PASSWORD,
            "channels.dialogflow_es.headers": HEADER,
        }
    )
    async with running_gateway(settings) as client:
        yield client


async def es(client: TestClient, body: Any, headers: dict[str, str], path: str = WEBHOOK) -> tuple[int, Any]:
    async with client.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def plain_es(text: str, language: str, session: str) -> dict[str, Any]:
    """ES fulfillment from a non-Google integration (no originalDetectIntentRequest payload)."""
    body = dialogflow_request(text, language, session)
    del body["originalDetectIntentRequest"]
    return body


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_conversation_per_language_with_verification_on(
    client: TestClient, module_redis_server: RedisServer, lang: str
) -> None:
    session = f"projects/p/agent/sessions/es-{uuid.uuid4().hex}"
    status, ask = await es(client, plain_es(BOOK[lang], lang, session), GOOD)
    assert status == 200 and schema_errors("dialogflow", ask) == []
    assert ask["fulfillmentText"] in responses(lang, "utter_ask_people")
    _, done = await es(client, dialogflow_request("4", lang, session), GOOD)  # with Google's payload
    assert done["fulfillmentText"] in [t.replace("{people}", "4") for t in responses(lang, "utter_booked")]
    redis = aioredis.Redis.from_url(module_redis_server.url)
    try:
        blob = await redis.get(f"gateway:production:{lang}:{{dialogflow_es:{lang}:{session}}}:tracker")
    finally:
        await redis.close(close_connection_pool=True)
    users = [e for e in orjson.loads(blob)["events"] if e["event"] == "user"]
    assert [(e["text"], e["input_channel"]) for e in users] == [
        (BOOK[lang], "dialogflow_es"),
        ("4", "dialogflow_es"),
    ]


async def test_google_endpoint_still_refuses_es_without_googles_token(client: TestClient) -> None:
    status, answer = await es(
        client, plain_es("hello", "en", "projects/p/agent/sessions/x"), GOOD, "/webhook/google"
    )
    assert status == 401 and answer["error"].startswith("unauthorized: ")


@pytest.mark.parametrize(
    ("headers", "label"),
    [
        ({}, "missing_credentials"),
        (HEADER, "missing_credentials"),
        ({**basic(USER, "wrong"), **HEADER}, "wrong_credentials"),
        ({**basic("someone", PASSWORD), **HEADER}, "wrong_credentials"),
        ({"Authorization": "Basic %%%not-base64", **HEADER}, "malformed_credentials"),
        ({"Authorization": "Bearer " + PASSWORD, **HEADER}, "missing_credentials"),
        (basic(USER, PASSWORD), "missing_header"),
        ({**basic(USER, PASSWORD), "X-Fulfillment-Key": "guess"}, "wrong_header"),
    ],
)
async def test_wrong_or_missing_credentials_are_refused_and_counted(
    client: TestClient, headers: dict[str, str], label: str
) -> None:
    counter = metrics.AUTH_FAILURES.labels("dialogflow_es", label)
    before = counter._value.get()
    status, answer = await es(client, plain_es("hello", "en", "projects/p/agent/sessions/y"), headers)
    assert status == 401
    assert answer["error"].startswith("unauthorized: ")
    assert PASSWORD not in answer["error"] and "es-static-header-value" not in answer["error"]
    assert counter._value.get() == before + 1


async def test_bodies_of_other_shapes_are_refused_with_400(client: TestClient) -> None:
    status, answer = await es(client, {"handler": {"name": "main"}}, GOOD)
    assert status == 400 and "missing field queryResult" in answer["error"]
