"""Hostile HTTP input against a gateway that verifies Google's signature: refused cleanly, never a crash."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway import appkeys
from gateway.settings import ROOT
from tests.security.conftest import (
    PROJECT_ID,
    JwksServer,
    SigningKey,
    gateway_settings,
    sign,
    start_gateway,
)
from tests.support import builder_request, responses

WEBHOOK = "/webhook/google"
MAX_BODY = 65536


def verifying_gateway(jwks: JwksServer, read_timeout: float) -> Any:
    return gateway_settings(
        **{
            "google.project_id": PROJECT_ID,
            "google.jwks_url": jwks.url,
            "server.read_timeout_seconds": read_timeout,
        }
    )


@pytest.fixture
async def client(aiohttp_client: Any, jwks: JwksServer) -> Any:
    # A body read timeout no busy machine reaches: only test_slow_body_gets_408 is about it.
    return await start_gateway(aiohttp_client, verifying_gateway(jwks, read_timeout=60.0))


@pytest.fixture
async def impatient(aiohttp_client: Any, jwks: JwksServer) -> Any:
    """A short body read timeout, for a body that never arrives (the 408 comes whatever the speed)."""
    return await start_gateway(aiohttp_client, verifying_gateway(jwks, read_timeout=0.5))


def signed(key: SigningKey, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"Google-Assistant-Signature": sign(key)}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


async def refused_cleanly(resp: Any, status: int) -> dict[str, Any]:
    """The response has `status` and a JSON reason without internals."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json"
    assert "Traceback" not in text and str(ROOT) not in text
    body = json.loads(text)
    assert set(body) == {"error"} and body["error"]
    return body


def _nested(depth: int) -> bytes:
    return b'{"handler": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


async def _chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status"),
    [
        ("oversized", b'{"x": "' + b"a" * (MAX_BODY + 10) + b'"}', "application/json", 413),
        ("nested 40", _nested(40), "application/json", 400),
        ("nested 5000", _nested(5000), "application/json", 400),
        ("invalid utf-8", b'{"handler": {"name": "\xff\xfe\xc3\x28"}}', "application/json", 400),
        ("lone surrogate", b'{"intent": {"query": "\\ud800"}}', "application/json", 400),
        ("not json", b"<xml>hello</xml>", "application/json", 400),
        ("json array", b"[1, 2, 3]", "application/json", 400),
        ("json string", b'"hello"', "application/json", 400),
        ("empty", b"", "application/json", 400),
        ("form", b"a=1&b=2", "application/x-www-form-urlencoded", 415),
        ("wrong shapes", b'{"handler": 5, "session": []}', "application/json", 400),
        ("no session id", b'{"handler": {"name": "x"}, "session": {}}', "application/json", 400),
    ],
)
async def test_hostile_bodies_from_a_signed_caller_are_4xx_json(
    client: Any, google_key: SigningKey, name: str, body: bytes, content_type: str, status: int
) -> None:
    resp = await client.post(WEBHOOK, data=body, headers=signed(google_key, content_type))
    await refused_cleanly(resp, status)


async def test_oversized_chunked_body_is_413(client: Any, google_key: SigningKey) -> None:
    data = b'{"x": "' + b"a" * (4 * MAX_BODY) + b'"}'
    resp = await client.post(WEBHOOK, data=_chunks(data), headers=signed(google_key))
    assert "Content-Length" not in resp.request_info.headers  # really chunked
    await refused_cleanly(resp, 413)


async def test_unsigned_hostile_body_is_refused_before_it_is_read(client: Any) -> None:
    for body in (b"\xff" * 1000, _nested(5000), b"a" * (MAX_BODY * 4)):
        resp = await client.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
        body_json = await refused_cleanly(resp, 401)
        assert body_json["error"].startswith("unauthorized")


async def test_slow_body_gets_408(impatient: Any, google_key: SigningKey) -> None:
    reader, writer = await asyncio.open_connection(impatient.host, impatient.port)
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Google-Assistant-Signature: {sign(google_key)}\r\nContent-Length: 500\r\n\r\n"
    )
    writer.write(head.encode() + b'{"handler": ')  # ...and then nothing more
    await writer.drain()
    head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *header_lines = head_bytes.decode().split("\r\n")
    assert status_line.split()[1] == "408"
    length = next(int(h.split(":")[1]) for h in header_lines if h.lower().startswith("content-length"))
    body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    assert "not received within" in body["error"]
    writer.close()
    await writer.wait_closed()


async def test_oversized_headers_are_refused_without_logging_them(
    client: Any, google_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(google_key)
    for extra in ({"X-Junk": "a" * 20_000}, {"X-" + "b" * 9000: "1"}):
        resp = await client.post(
            WEBHOOK, json=builder_request("hi"), headers={"Google-Assistant-Signature": token, **extra}
        )
        assert resp.status == 400
        assert "Traceback" not in await resp.text()
    long_url = WEBHOOK + "?" + "q" * 10_000
    assert (await client.post(long_url, json=builder_request("hi"))).status == 400
    # Still serving.
    assert (await client.post(WEBHOOK, json=builder_request("hi"), headers=signed(google_key))).status == 200
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert token[-40:] not in record.getMessage()


async def test_malformed_request_quoting_a_token_is_not_logged_with_it(
    client: Any, google_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(google_key)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    raw = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nGoogle-Assistant-Signature: {token}\r\n"
        "Bad\x01Header: y\r\nContent-Length: 2\r\n\r\n{}"
    )
    writer.write(raw.encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    assert status_line.split()[1] == b"400"
    writer.close()
    await writer.wait_closed()
    refusals = [r for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert refusals, "the refusal is still logged, in one line"
    for record in caplog.records:
        assert record.exc_info is None
        assert token[-40:] not in record.getMessage()


async def test_long_text_is_cut_before_nlu_and_answered(
    aiohttp_client: Any, jwks: JwksServer, google_key: SigningKey, model_paths: dict[str, Path]
) -> None:
    settings = gateway_settings(**{"google.project_id": PROJECT_ID, "google.jwks_url": jwks.url})
    client = await start_gateway(aiohttp_client, settings, {"en": model_paths["en"]})
    session = f"long-{uuid.uuid4().hex}"
    text = "hello " + "blah " * 12_000  # ~60 KB: under the body limit, far over max_text_chars
    resp = await client.post(
        WEBHOOK, json=builder_request(text, "en-US", session), headers=signed(google_key)
    )
    assert resp.status == 200
    assert (await resp.json())["prompt"]["firstSimple"]["speech"]
    bot = client.app[appkeys.POOL].get("en")
    tracker = await bot.tracker_store.retrieve(f"en:{session}")
    assert tracker is not None
    assert len(tracker.latest_message.text) == settings.server.max_text_chars
    # A normal turn right after still gets the bot's answer.
    resp = await client.post(WEBHOOK, json=builder_request("hello", "en-US"), headers=signed(google_key))
    assert (await resp.json())["prompt"]["firstSimple"]["speech"] in responses("en", "utter_greet")


async def test_body_arriving_in_pieces_is_read_whole(client: Any, google_key: SigningKey) -> None:
    body = json.dumps(builder_request("hello", "en-US")).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Google-Assistant-Signature: {sign(google_key)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:40])
    await writer.drain()
    await asyncio.sleep(0.2)  # the rest comes in a later segment, far within the read timeout
    writer.write(body[40:])
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert raw.split()[1] == b"200", raw[:200]
