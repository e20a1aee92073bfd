"""Health endpoints: /readyz while loading and after, /bots, per-bot ping (real models, real HTTP)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import appkeys
from gateway.app import create_app
from gateway.settings import AdminSettings, Settings
from tests.support import GatewayProcess, builder_request, responses


def subset(settings: Settings, *langs: str) -> Settings:
    """The same settings with only `langs` configured (fewer models to load in-process)."""
    return dataclasses.replace(
        settings, bots={lang: settings.bots[lang] for lang in langs}, default_bot=langs[0]
    )


def speech(answer: dict[str, Any]) -> str:
    return str(answer["prompt"]["firstSimple"]["speech"])


async def test_readyz_is_503_while_bots_load_and_200_once_all_are_ready(
    aiohttp_client: Any, settings: Settings, model_paths: Mapping[str, Path]
) -> None:
    # Models load on the loop's worker threads. Occupy the only worker so loading cannot start
    # until we let it: the same thing a busy machine does, but deterministic.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="gated"))
    gate = threading.Event()
    busy = loop.run_in_executor(None, gate.wait, 120)
    try:
        app = create_app(settings)
        client = await aiohttp_client(app)
        resp = await client.get("/readyz")
        assert resp.status == 503
        body = await resp.json()
        assert body["status"] == "not ready"
        assert body["waiting"] == ["en", "pl", "de"]
        for lang, bot in body["bots"].items():
            assert bot["state"] == "loading", lang
            assert bot["model"] is None
            assert isinstance(bot["since"], float)
        # Meanwhile the process is alive, pings say why they cannot answer, and users hear a prompt.
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/bots/pl/ping")
        assert resp.status == 503
        assert "no model loaded yet (loading)" in (await resp.json())["error"]
        resp = await client.post("/webhook/google", json=builder_request("cześć", "pl-PL"))
        assert resp.status == 200
        assert speech(await resp.json()) == settings.bots["pl"].prompts.unavailable
    finally:
        gate.set()
    await busy
    await app[appkeys.STARTUP]
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert body["waiting"] == []
    for lang, bot in body["bots"].items():
        assert bot["state"] == "ready", lang
        assert bot["model"] == model_paths[lang].name
        assert bot["loaded_at"] >= bot["since"] - 1


async def test_a_bot_without_a_model_keeps_readyz_503_and_fails_its_ping(
    aiohttp_client: Any, settings: Settings, model_paths: Mapping[str, Path]
) -> None:
    app = create_app(subset(settings, "en", "de"), lambda _: {"en": model_paths["en"], "de": None})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]

    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["waiting"] == ["de"]
    assert body["bots"]["en"]["state"] == "ready"
    assert body["bots"]["de"]["state"] == "failed"
    assert "gateway train de" in body["bots"]["de"]["last_error"]

    resp = await client.get("/bots/de/ping")
    assert resp.status == 503
    failed = await resp.json()
    assert failed["ok"] is False
    assert failed["result"] == "failed"
    assert "bot de failed its probe" in failed["error"]

    resp = await client.get("/bots/xx/ping")
    assert resp.status == 404
    assert "no bot for language 'xx'" in (await resp.json())["error"]

    # A German user still gets a German answer: the gateway's own 'unavailable' prompt.
    resp = await client.post("/webhook/google", json=builder_request("hallo", "de-DE"))
    assert resp.status == 200
    assert speech(await resp.json()) == settings.bots["de"].prompts.unavailable


async def test_ping_uses_a_throwaway_tracker(
    aiohttp_client: Any, settings: Settings, model_paths: Mapping[str, Path]
) -> None:
    token = "ping-test-token-0123456789"  # free text (not the probe) is for operators only
    with_admin = dataclasses.replace(subset(settings, "en"), admin=AdminSettings(token=token))
    app = create_app(with_admin, lambda _: {"en": model_paths["en"]})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    store = app[appkeys.POOL].bots["en"].tracker_store
    resp = await client.post("/webhook/google", json=builder_request("hello", "en-US", "real-user"))
    assert resp.status == 200
    conversations = set(await store.keys())
    assert conversations == {"en:real-user"}

    resp = await client.get(
        "/bots/en/ping",
        params={"text": "I would like to book a table"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["reply"]
    assert all(text in responses("en", "utter_ask_people") for text in body["reply"])
    assert set(await store.keys()) == conversations  # the real conversation store is untouched


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_ping_each_bot_answers_in_its_language(gateway: GatewayProcess, lang: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/bots/{lang}/ping") as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(f"{gateway.url}/bots") as resp:
            bots = {bot["lang"]: bot for bot in (await resp.json())["bots"]}
    assert body["ok"] is True
    assert body["lang"] == lang
    assert body["text"] == {"en": "hello", "pl": "cześć", "de": "hallo"}[lang]
    assert body["reply"]
    assert all(text in responses(lang, "utter_greet") for text in body["reply"])
    assert body["latency_seconds"] > 0
    assert body["model"] == bots[lang]["model"]
    # /bots shows the last probe (this ping, or a monitor probe that ran after it).
    bot = bots[lang]
    assert set(bot) >= {"lang", "locales", "model", "loaded_at", "state", "since", "last_probe"}
    assert bot["last_probe"]["ok"] is True
    assert bot["last_probe"]["at"] >= body["at"]
    assert bot["last_probe"]["model"] == bot["model"]
