"""GET /metrics: prometheus-client's parser over real HTTP sees traffic move the counters and histograms."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import appkeys
from gateway.app import create_app
from gateway.settings import Settings
from tests.scrape import scrape, scrape_client
from tests.support import GatewayProcess, builder_request, responses

CHANNEL = "actions_builder"


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url + "/webhook/google", json=body) as resp:
        return resp.status, await resp.json()


async def test_webhook_traffic_shows_by_language(gateway: GatewayProcess) -> None:
    traffic = [
        ("en-US", "hello", "en"),
        ("pl-PL", "cześć", "pl"),
        ("pl-PL", "dzień dobry", "pl"),
        ("de-DE", "hallo", "de"),
        ("ja-JP", "hello", "en"),  # falls back to the default bot
    ]
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, gateway.url)
        for locale, text, lang in traffic:
            status, answer = await post(http, gateway.url, builder_request(text, locale))
            assert status == 200
            assert answer["prompt"]["firstSimple"]["speech"] in responses(lang, "utter_greet")
        async with http.post(gateway.url + "/webhook/google", data=b"{oops", headers=JSON) as resp:
            assert resp.status == 400
        after = await scrape(http, gateway.url)

    assert after.content_type == CONTENT_TYPE_LATEST
    assert after.families["gateway_requests"] == "counter"
    for lang, count in {"en": 2, "pl": 2, "de": 1}.items():
        labels = {"channel": CHANNEL, "lang": lang, "status": "200"}
        assert after.delta(before, "gateway_requests_total", **labels) == count
        for histogram in ("gateway_request_duration_seconds", "gateway_bot_inference_duration_seconds"):
            assert after.delta(before, f"{histogram}_count", lang=lang) == count
            assert after.delta(before, f"{histogram}_bucket", lang=lang, le="+Inf") == count
            assert after.delta(before, f"{histogram}_sum", lang=lang) > 0
    # A body that is not JSON never reaches a bot: counted under the endpoint's channel, with no language.
    bad = {"channel": "google", "lang": "none", "status": "400"}
    assert after.delta(before, "gateway_requests_total", **bad) == 1
    assert after.delta(before, "gateway_locale_fallbacks_total", locale="ja-JP") == 1
    assert after.value("gateway_requests_in_flight") == 0
    assert after.value("process_resident_memory_bytes") > 0


async def test_model_info_and_bot_up_per_language(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.url + "/bots") as resp:
            bots = {bot["lang"]: bot for bot in (await resp.json())["bots"]}
        # The monitor's first round runs right after start-up; wait for it (bounded), not for a time.
        deadline = time.monotonic() + 60
        current = await scrape(http, gateway.url)
        while any(current.value("gateway_bot_up", lang=lang) != 1 for lang in bots):
            assert time.monotonic() < deadline, current.series("gateway_bot_up")
            await asyncio.sleep(0.2)
            current = await scrape(http, gateway.url)
    for lang, bot in bots.items():
        info = {"lang": lang, "model": bot["model"], "sha256": bot["sha256"] or ""}
        assert current.value("gateway_model_info", **info) == 1
        assert len(current.series("gateway_model_info")) == len(bots)  # one series per language
        assert current.value("gateway_model_loaded_timestamp_seconds", lang=lang) == bot["loaded_at"]
        assert current.value("gateway_model_load_duration_seconds_count", lang=lang) >= 1
        assert current.value("gateway_probes_total", lang=lang, result="ok") >= 1
        assert current.value("gateway_probe_duration_seconds_count", lang=lang) >= 1


JSON = {"Content-Type": "application/json"}


async def test_metrics_answer_while_a_turn_waits_on_its_bot(aiohttp_client: Any, settings: Settings) -> None:
    """A conversation's earlier turn holds its lock: the webhook waits, /metrics does not."""
    only_en = dataclasses.replace(
        settings, bots={"en": settings.bots["en"]}, default_bot="en", server=_long_deadline(settings)
    )
    app = create_app(only_en)
    client: TestClient = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    pool = app[appkeys.POOL]
    session = f"busy-{uuid.uuid4().hex}"
    before = await scrape_client(client)
    async with pool.locks.hold(f"en:en:{session}"):
        pending = asyncio.create_task(
            client.post("/webhook/google", json=builder_request("hi", "en-US", session))
        )
        during = await scrape_client(client)
        while during.value("gateway_requests_in_flight") < 1:
            assert not pending.done()
            await asyncio.sleep(0.01)
            during = await scrape_client(client)
        assert not pending.done()  # still waiting for the bot while /metrics answered
        assert during.delta(before, "gateway_requests_total", channel=CHANNEL, lang="en", status="200") == 0
    resp = await pending
    assert resp.status == 200
    assert (await resp.json())["prompt"]["firstSimple"]["speech"] in responses("en", "utter_greet")
    after = await scrape_client(client)
    assert after.value("gateway_requests_in_flight") == 0
    assert after.delta(before, "gateway_requests_total", channel=CHANNEL, lang="en", status="200") == 1


def _long_deadline(settings: Settings) -> Any:
    return dataclasses.replace(settings.server, deadline_seconds=60.0)
