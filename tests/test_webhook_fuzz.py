"""Property tests: valid webhook payloads of every shape, mutated by the thousand, never get a 5xx.

Each example is posted to the real application (real trained models, in process). The answer must be
either a 200 that is schema-valid for the request's shape and is not the bot's "unavailable" prompt
(which would hide a crash), or a 400/413/415 carrying a JSON `{"error": reason}`.
Examples per property: FUZZ_EXAMPLES (default 300, 1200 in all; the file runs in well under a minute).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.channels import system_intents
from gateway.settings import Settings, load_settings
from tests.inprocess import post_raw, running_gateway
from tests.shapes import dialogflow_request, schema_errors, shape_of, v2_request
from tests.support import builder_request

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CLIENT_ERRORS = {400, 413, 415}
# Channels with their own endpoint (Google's shapes share /webhook/google).
PATHS = {
    "rest": "/webhooks/rest/webhook",
    "dialogflow_cx": "/webhook/dialogflow-cx",
    "dialogflow_es": "/webhook/dialogflow-es",
}

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def fuzz_settings(models_dir: Path) -> Settings:
    return load_settings(overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(fuzz_settings: Settings) -> AsyncIterator[TestClient]:
    async with running_gateway(fuzz_settings) as client:
        yield client


# --- strategies ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
utterances = st.sampled_from(
    ["hello", "book a table", "4", "bye", "what can you do", "cześć", "tschüss", "", "/greet", "/inform{"]
) | st.text(max_size=300)
locales = st.sampled_from(
    ["en-US", "pl-PL", "de-DE", "de-AT", "ja-JP", "en_us", "PL", "x", "", "  "]
) | st.text(max_size=12)
session_ids = st.sampled_from(["fuzz-a", "fuzz-b", "fuzz-c"]) | st.text(min_size=1, max_size=80)
# Every documented system intent of each generation (gateway/channels/system_intents.py), and some others.
v3_intents = st.sampled_from(
    [*sorted(system_intents.V3), "actions.intent.UNKNOWN", "book_table", ""]
) | st.text(max_size=20)
v2_intents = st.sampled_from(
    [
        "actions.intent.MAIN",
        "actions.intent.TEXT",
        "actions.intent.CANCEL",
        "actions.intent.NO_INPUT",
        "actions.intent.OPTION",
        *sorted(system_intents.V2_ARGUMENTS),
    ]
)
enums = st.sampled_from(["FINISHED", "FAILED", "STATUS_UNSPECIFIED", "OK", "CANCELLED", "CAN_TRANSACT"])
argument_values = st.fixed_dictionaries(
    {},
    optional={
        "boolValue": st.booleans(),
        "textValue": st.text(max_size=20),
        "text_value": st.sampled_from(["1", "0"]),
        "rawText": st.text(max_size=20),
        "extension": st.fixed_dictionaries(
            {"@type": st.just("type.googleapis.com/google.actions.v2.MediaStatus")},
            optional={
                key: enums | st.text(max_size=8)
                for key in ("status", "resultType", "userDecision", "purchaseStatus")
            },
        ),
        "datetimeValue": st.fixed_dictionaries(
            {},
            optional={
                "date": st.fixed_dictionaries(
                    {"year": st.integers(0, 10000), "month": st.integers(0, 13), "day": st.integers(0, 32)}
                ),
                "time": st.fixed_dictionaries({"hours": st.integers(0, 25), "minutes": st.integers(0, 60)}),
            },
        ),
        "placeValue": st.fixed_dictionaries(
            {}, optional={"formattedAddress": st.text(max_size=20), "name": st.text(max_size=10)}
        ),
    },
)
argument_names = sorted(
    {name for specs in system_intents.V2_ARGUMENTS.values() for name, _, _ in specs}
    | {"text", "OPTION", "is_health_check", "IS_FINAL_REPROMPT", "REPROMPT_COUNT"}
)
v2_arguments = st.none() | st.lists(
    st.tuples(st.sampled_from(argument_names), argument_values).map(
        lambda pair: {"name": pair[0], **pair[1]}
    ),
    max_size=3,
)
media_contexts = st.fixed_dictionaries(
    {
        "media": st.fixed_dictionaries(
            {}, optional={"progress": st.text(max_size=8), "index": st.integers(-1, 3)}
        )
    }
)


def v3_request(context: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    body = builder_request(**kw)
    if context is not None:
        body["context"] = context
    return body


v3_requests = st.builds(
    v3_request,
    context=st.none() | media_contexts,
    text=utterances,
    locale=st.none() | locales,
    session_id=session_ids,
    intent=v3_intents,
    handler=st.sampled_from(["main", "actions.handler.HEALTH_CHECK", ""]),
    params=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
v2_requests = st.builds(
    v2_request,
    text=utterances,
    locale=st.none() | locales,
    conversation_id=session_ids,
    intent=v2_intents,
    token=st.none() | st.text(max_size=40),
    arguments=v2_arguments,
)
df_requests = st.builds(
    dialogflow_request,
    text=utterances | st.just("GOOGLE_ASSISTANT_WELCOME"),
    language=st.none() | locales,
    session=st.none() | session_ids,
    payload=st.none() | st.just({}) | v2_requests,
)

rest_requests = st.fixed_dictionaries(
    {"sender": session_ids, "message": utterances},
    optional={"metadata": st.fixed_dictionaries({}, optional={"locale": locales}) | json_values},
)
cx_requests = st.fixed_dictionaries(
    {
        "detectIntentResponseId": st.text(max_size=36),
        "sessionInfo": st.fixed_dictionaries(
            {"session": session_ids},
            optional={"parameters": st.dictionaries(st.text(max_size=8), json_values, max_size=3)},
        ),
        "languageCode": locales,
        "fulfillmentInfo": st.fixed_dictionaries({"tag": st.sampled_from(["rasa", "welcome", "cancel", ""])}),
        "pageInfo": st.fixed_dictionaries(
            {
                "currentPage": st.sampled_from(
                    ["projects/p/locations/l/agents/a/flows/f/pages/START_PAGE", "x"]
                )
            }
        ),
    },
    optional={
        "text": utterances,
        "transcript": utterances,
        "triggerEvent": st.sampled_from(["sys.no-input-default", "sys.no-match-1", "custom"]),
        "intentInfo": st.fixed_dictionaries({"displayName": st.text(max_size=20)}),
        "payload": json_values,
    },
)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair inside a JSON value, the root's keys included."""
    found: list[tuple[Any, Any]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        keys: Any = list(current) if isinstance(current, dict) else range(len(current))
        for key in keys:
            found.append((current, key))
            if isinstance(current[key], dict | list):
                stack.append(current[key])
    return found


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid payload with up to four random edits: delete, replace, retype or add a field."""
    body = draw(base)
    for _ in range(draw(st.integers(0, 4))):
        slots = _slots(body)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["delete", "replace", "retype", "add"]))
        if op == "delete":
            del container[key]
        elif op == "replace":
            container[key] = draw(json_values)
        elif op == "retype":
            value = container[key]
            container[key] = draw(
                st.sampled_from([[value], {"value": value}, str(value), None, 0, True, ""])
                | st.text(max_size=5)
            )
        elif isinstance(container, dict):
            container[draw(st.text(max_size=12))] = draw(json_values)
        else:
            container.append(draw(json_values))
    return body


# --- properties ---------------------------------------------------------------------------------------------


async def check(
    client: TestClient,
    settings: Settings,
    body: Any,
    raw: bytes,
    content_type: str,
    channel: str | None = None,
) -> None:
    """The one oracle: a well-formed answer, never a server error (`channel`: a non-Google channel)."""
    status, answer = await post_raw(client, raw, content_type, PATHS.get(channel or "", "/webhook/google"))
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    assert status < 500, (status, answer, raw[:500])
    if status != 200:
        assert status in CLIENT_ERRORS, (status, answer)
        assert schema_errors("error", answer) == [], answer
        assert "Traceback" not in answer["error"]
        return
    shape = {"dialogflow_es": "dialogflow"}.get(channel or "", channel) or shape_of(body)
    assert schema_errors(shape, answer) == [], (shape, answer, body)
    dumped = json.dumps(answer, ensure_ascii=False)
    for bot in settings.bots.values():
        assert bot.prompts.unavailable not in dumped, f"the bot failed on {body!r}"


def encode(body: Any, ascii_only: bool) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")


@FUZZ
@given(body=mutated(v3_requests), ascii_only=st.booleans())
async def test_actions_builder_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json")


@FUZZ
@given(body=mutated(v2_requests), ascii_only=st.booleans())
async def test_conversation_v2_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json")


@FUZZ
@given(body=mutated(df_requests), ascii_only=st.booleans())
async def test_dialogflow_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json; charset=utf-8")


@FUZZ
@given(body=mutated(rest_requests), ascii_only=st.booleans())
async def test_rest_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json", "rest")


@FUZZ
@given(body=mutated(cx_requests), ascii_only=st.booleans())
async def test_dialogflow_cx_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json", "dialogflow_cx")


@FUZZ
@given(body=mutated(df_requests), ascii_only=st.booleans())
async def test_dialogflow_es_channel_payloads(
    client: TestClient, fuzz_settings: Settings, body: dict[str, Any], ascii_only: bool
) -> None:
    await check(client, fuzz_settings, body, encode(body, ascii_only), "application/json", "dialogflow_es")


def _nested(depth: int, as_object: bool) -> bytes:
    if as_object:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bytes that are not a valid request: garbage, cut JSON, bad UTF-8, deep nesting, oversize."""
    valid = encode(draw(st.one_of(v3_requests, v2_requests, df_requests)), False)
    kind = draw(st.sampled_from(["garbage", "cut", "bad_utf8", "deep", "oversize", "scalar"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    if kind == "cut":
        return valid[: draw(st.integers(0, max(len(valid) - 1, 0)))]
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(valid)))
        return (
            valid[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"]))
            + valid[at:]
        )
    if kind == "deep":
        return _nested(draw(st.integers(33, 5000)), draw(st.booleans()))
    if kind == "oversize":
        pad = b" " * (65536 + draw(st.integers(0, 4096)))
        return valid[:-1] + pad + valid[-1:]
    return draw(st.sampled_from([b"null", b"1", b'"x"', b"[]", b"true", b"{}"]))


@FUZZ
@given(
    raw=raw_bodies(),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream"]
    ),
    path=st.sampled_from(["/webhook/google", *PATHS.values()]),
)
async def test_malformed_bodies_are_client_errors(
    client: TestClient, fuzz_settings: Settings, raw: bytes, content_type: str, path: str
) -> None:
    status, answer = await post_raw(client, raw, content_type, path)
    event(f"status {status}")
    assert status in CLIENT_ERRORS, (status, answer, raw[:200])
    assert schema_errors("error", answer) == [], answer
