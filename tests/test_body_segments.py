"""A webhook body that arrives in several pieces is read whole (StreamReader.read(n) returns early)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.settings import load_settings
from tests.support import builder_request


async def test_a_body_sent_in_pieces_is_parsed_whole(aiohttp_client: Any, tmp_path: Path) -> None:
    settings = load_settings(overrides={"bots.models_dir": str(tmp_path), "monitor.interval_seconds": 0})
    client = await aiohttp_client(create_app(settings))
    body = json.dumps(builder_request("hello", "en-US", session_id="pieces")).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64):
            yield body[start : start + 64]
            await asyncio.sleep(0.01)  # let the server read what has arrived so far

    resp = await client.post("/webhook/google", data=pieces(), headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["session"]["id"] == "pieces"
    # No model here: the bot's own "unavailable" prompt, in English, proves the locale was parsed too.
    assert answer["prompt"]["firstSimple"]["speech"] == settings.bots["en"].prompts.unavailable
