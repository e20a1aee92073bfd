"""One log line per request with its id (echoed in X-Request-Id); user text stays out of INFO by default."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import appkeys
from gateway.app import create_app
from gateway.logs import JsonFormatter, RequestIdFilter, TextFormatter
from gateway.settings import LoggingSettings, Settings
from tests.support import GatewayProcess, builder_request

ACCESS = "gateway.routing.access"


def polish_only(settings: Settings, **logging_overrides: Any) -> Settings:
    return dataclasses.replace(
        settings,
        bots={"pl": settings.bots["pl"]},
        default_bot="pl",
        logging=dataclasses.replace(LoggingSettings(), **logging_overrides),
    )


def access_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS and getattr(r, "request_id", None) == request_id]


async def test_request_id_round_trip_and_one_line_per_request(
    aiohttp_client: Any,
    settings: Settings,
    model_paths: Mapping[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.routing.webhook")
    caplog.set_level(logging.DEBUG, logger=ACCESS)  # last: it also sets the capture handler's level
    caplog.handler.addFilter(RequestIdFilter())  # what logs.configure installs on the real handler
    app = create_app(polish_only(settings), lambda _: {"pl": model_paths["pl"]})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]

    body = builder_request("cześć", "pl-PL")
    resp = await client.post("/webhook/google", json=body, headers={"X-Request-Id": "req-42.a"})
    assert resp.status == 200
    assert resp.headers["X-Request-Id"] == "req-42.a"

    [line] = [r for r in access_lines(caplog, "req-42.a") if r.levelno == logging.INFO]
    model = app[appkeys.POOL].bots["pl"].model
    assert model is not None
    fields = vars(line)
    assert fields["channel"] == "actions_builder"
    assert fields["lang"] == "pl"
    assert fields["locale"] == "pl-PL"
    assert fields["model"] == model.name
    assert fields["status"] == 200
    assert fields["latency_ms"] > 0
    assert "POST /webhook/google 200" in line.getMessage()
    assert "text" not in fields
    # Privacy: what the user said appears only at DEBUG.
    info_text = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "cześć" not in info_text
    [debug] = [r for r in access_lines(caplog, "req-42.a") if r.levelno == logging.DEBUG]
    assert "cześć" in debug.getMessage()

    # Without an id, or with one that could forge log lines, the gateway makes its own.
    ids = []
    for headers in ({}, {"X-Request-Id": 'evil id="forged"'}, {"X-Request-Id": "x" * 200}):
        resp = await client.post("/webhook/google", json=body, headers=headers)
        assert resp.status == 200
        ids.append(resp.headers["X-Request-Id"])
        assert re.fullmatch(r"[0-9a-f]{32}", ids[-1])
        assert len(access_lines(caplog, ids[-1])) == 2  # the INFO line and the DEBUG user text
    assert len(set(ids)) == 3

    # Errors carry the id too, and logs written while handling a request are stamped with it.
    resp = await client.post("/webhook/google", data=b"[", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    [error_line] = access_lines(caplog, resp.headers["X-Request-Id"])
    assert vars(error_line)["status"] == 400
    assert vars(error_line)["channel"] == "google"  # the endpoint's channel, shape unknown
    resp = await client.get("/nowhere", headers={"X-Request-Id": "lost-1"})
    assert resp.status == 404
    assert resp.headers["X-Request-Id"] == "lost-1"
    resp = await client.post(
        "/webhook/google", json=builder_request("cześć", "ja-JP"), headers={"X-Request-Id": "fallback-7"}
    )
    assert resp.status == 200
    [fallback] = [r for r in caplog.records if "matched no bot" in r.getMessage()]
    assert vars(fallback)["request_id"] == "fallback-7"
    assert TextFormatter().format(fallback).endswith("[request_id=fallback-7]")

    # Probes of the health endpoints stay out of INFO.
    resp = await client.get("/readyz", headers={"X-Request-Id": "probe-1"})
    assert resp.headers["X-Request-Id"] == "probe-1"
    assert [r.levelno for r in access_lines(caplog, "probe-1")] == [logging.DEBUG]


async def test_user_text_at_info_when_configured_and_json_lines(
    aiohttp_client: Any,
    settings: Settings,
    model_paths: Mapping[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    app = create_app(
        polish_only(settings, user_text=True, format="json"), lambda _: {"pl": model_paths["pl"]}
    )
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]

    resp = await client.post(
        "/webhook/google", json=builder_request("dzień dobry", "pl-PL"), headers={"X-Request-Id": "j-1"}
    )
    assert resp.status == 200
    [line] = access_lines(caplog, "j-1")
    assert "dzień dobry" in line.getMessage()
    out = json.loads(JsonFormatter().format(line))  # what `logging.format: json` writes
    assert out["request_id"] == "j-1"
    assert out["severity"] == "INFO"
    assert out["text"] == "dzień dobry"
    assert {out["channel"], out["lang"], out["locale"], out["status"]} == {
        "actions_builder",
        "pl",
        "pl-PL",
        200,
    }
    assert out["model"] == model_paths["pl"].name
    assert out["latency_ms"] > 0


async def test_served_gateway_logs_each_request_once_and_never_the_users_words(
    gateway: GatewayProcess,
) -> None:
    """The real process: its log (stderr) after models loaded, Rasa's own logging included."""
    request_id = f"e2e-{uuid.uuid4().hex}"
    secret = f"zebra{uuid.uuid4().hex[:10]}"
    async with aiohttp.ClientSession() as http:
        body = builder_request(f"hello {secret}", "en-US")
        async with http.post(
            gateway.url + "/webhook/google", json=body, headers={"X-Request-Id": request_id}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-Id"] == request_id
    log = gateway.log.read_text(encoding="utf-8", errors="replace")
    [line] = [line for line in log.splitlines() if request_id in line]
    assert "gateway.routing.access: POST /webhook/google 200" in line
    assert " channel=actions_builder lang=en model=" in line
    assert secret not in log  # neither in our lines nor in Rasa's debug events (user text is private)
