"""Action-server mode against a real `python -m rasa_sdk --actions actions`, and every way it can fail.

One real gateway process whose English bot calls the action server (configured through
`bots.languages.en.endpoints`, overriding the bot's own in-process endpoints.yml, with `${ENV}` expanded).
The server is then stopped, replaced by a tiny real HTTP server answering garbage, paused with SIGSTOP past
the action timeout, and brought back: the user always hears the `unavailable` prompt, the failed turn
leaves nothing in the tracker, and the next turn works.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.settings import load_settings
from tests.scrape import Scrape, scrape
from tests.support import ActionServer, GatewayProcess, builder_request, free_port, responses

ACTION_TIMEOUT = 1.0
UNAVAILABLE = load_settings().bots["en"].prompts.unavailable


@pytest.fixture(scope="module")
def action_server() -> Iterator[ActionServer]:
    server = ActionServer(free_port()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway_with_server(
    models_dir: Path, action_server: ActionServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    env = server_env(models_dir, action_server, tmp_path_factory.mktemp("config"))
    with GatewayProcess.start(free_port(), env) as gw:
        yield gw


def server_env(models_dir: Path, action_server: ActionServer, folder: Path) -> dict[str, str]:
    """A gateway environment whose English bot calls `action_server` (a config file, ${ENV} expanded)."""
    config = folder / "gateway.yml"
    config.write_text(
        "bots:\n"
        "  languages:\n"
        "    en:\n"
        f"      action_timeout_seconds: {ACTION_TIMEOUT}\n"
        "      endpoints:\n"
        '        action_endpoint: {url: "${TEST_EN_ACTIONS_URL}"}\n',
        encoding="utf-8",
    )
    return {
        "GATEWAY_CONFIG": str(config),
        "TEST_EN_ACTIONS_URL": action_server.url,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
    }


async def say(http: aiohttp.ClientSession, gw: GatewayProcess, text: str, session: str) -> list[str]:
    async with http.post(f"{gw.url}/webhook/google", json=builder_request(text, "en-US", session)) as resp:
        assert resp.status == 200, await resp.text()
        prompt = (await resp.json())["prompt"]
    return [prompt[key]["speech"] for key in ("firstSimple", "lastSimple") if key in prompt]


def errors(after: Scrape, before: Scrape, reason: str, action: str) -> float:
    return after.delta(before, "gateway_action_errors_total", lang="en", action=action, reason=reason)


@asynccontextmanager
async def garbage_server(port: int, status: int, body: bytes) -> AsyncIterator[None]:
    """A real HTTP server on `port` answering every action call with `status` and `body`."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/webhook", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def ask_people() -> list[str]:
    return responses("en", "utter_ask_people")


def is_opening_status(texts: list[str]) -> bool:
    open_now, closed = responses("en", "utter_open_now")[0], responses("en", "utter_closed_now")[0]
    prefixes = (open_now.split("{")[0], closed.split("{")[0])
    return len(texts) == 1 and texts[0].startswith(prefixes)


async def test_actions_run_on_the_action_server(gateway_with_server: GatewayProcess) -> None:
    gw = gateway_with_server
    session = f"server-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http:
        before = await scrape(http, gw.url)
        assert (await say(http, gw, "book a table", session))[0] in ask_people()
        reason, again = await say(http, gw, "0", session)
        assert reason in [t.replace("{low}", "1") for t in responses("en", "utter_people_too_few")]
        assert again in ask_people()
        done = await say(http, gw, "4", session)
        assert done[0] in [t.replace("{people}", "4") for t in responses("en", "utter_booked")]
        assert is_opening_status(await say(http, gw, "are you open right now?", session))
        after = await scrape(http, gw.url)

    def calls(action: str) -> float:
        name = "gateway_action_duration_seconds_count"
        return after.delta(before, name, lang="en", action=action, mode="http")

    assert calls("validate_booking_form") >= 2  # the "0" and the "4"
    assert calls("action_opening_status") == 1


async def fails_then_recovers(
    http: aiohttp.ClientSession, gw: GatewayProcess, session: str, reason: str, outage: Any
) -> None:
    """Mid-booking the validation call fails, and so does a question in another conversation: both hear
    the unavailable prompt and keep nothing of the failed turn; then "4" books and the question works."""
    booking, question = f"{session}-book", f"{session}-ask"
    assert (await say(http, gw, "book a table", booking))[0] in ask_people()
    before = await scrape(http, gw.url)
    async with outage():
        assert await say(http, gw, "4", booking) == [UNAVAILABLE]
        assert await say(http, gw, "are you open right now?", question) == [UNAVAILABLE]
    after = await scrape(http, gw.url)
    assert errors(after, before, reason, "validate_booking_form") == 1
    assert errors(after, before, reason, "action_opening_status") == 1
    assert after.delta(before, "gateway_unavailable_answers_total", lang="en", reason="action") == 2
    # The form still waits for the party size (the failed "4" was not kept), and it books now.
    done = await say(http, gw, "4", booking)
    assert done[0] in [t.replace("{people}", "4") for t in responses("en", "utter_booked")]
    assert is_opening_status(await say(http, gw, "are you open right now?", question))


async def test_a_stopped_action_server_is_unreachable(
    gateway_with_server: GatewayProcess, action_server: ActionServer
) -> None:
    @asynccontextmanager
    async def stopped() -> AsyncIterator[None]:
        await asyncio.to_thread(action_server.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(action_server.start)

    async with aiohttp.ClientSession() as http:
        session = f"down-{uuid.uuid4().hex}"
        await fails_then_recovers(http, gateway_with_server, session, "unreachable", stopped)


async def test_a_paused_action_server_times_out(
    gateway_with_server: GatewayProcess, action_server: ActionServer
) -> None:
    @asynccontextmanager
    async def paused() -> AsyncIterator[None]:
        action_server.pause()
        try:
            yield
        finally:
            action_server.resume()

    async with aiohttp.ClientSession() as http:
        await fails_then_recovers(http, gateway_with_server, f"paused-{uuid.uuid4().hex}", "timeout", paused)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b'{"events": [', "bad_response"),  # malformed JSON
        (200, b'{"events": "not a list"}', "bad_response"),  # JSON, but not Rasa's answer
        (404, b'{"error": "No registered action found for name", "action_name": "x"}', "unknown_action"),
        (500, b"<html>Internal Server Error</html>", "status_500"),
    ],
)
async def test_an_action_server_answering_garbage(
    gateway_with_server: GatewayProcess, action_server: ActionServer, status: int, body: bytes, reason: str
) -> None:
    @asynccontextmanager
    async def garbage() -> AsyncIterator[None]:
        await asyncio.to_thread(action_server.stop)
        try:
            async with garbage_server(action_server.port, status, body):
                yield
        finally:
            await asyncio.to_thread(action_server.start)

    async with aiohttp.ClientSession() as http:
        await fails_then_recovers(http, gateway_with_server, f"garbage-{uuid.uuid4().hex}", reason, garbage)


async def test_turns_on_the_inference_thread_call_the_server_on_the_shared_client(
    models_dir: Path, action_server: ActionServer, tmp_path: Path
) -> None:
    # The client belongs to the server's loop; a turn on the inference thread hands its call over.
    env = {**server_env(models_dir, action_server, tmp_path), "GATEWAY_SERVER_INFERENCE": "thread"}
    with GatewayProcess.start(free_port(), env) as gw:
        async with aiohttp.ClientSession() as http:
            before = await scrape(http, gw.url)
            assert is_opening_status(await say(http, gw, "are you open right now?", f"t-{uuid.uuid4().hex}"))
            after = await scrape(http, gw.url)
    count = "gateway_action_duration_seconds_count"
    assert after.delta(before, count, lang="en", action="action_opening_status", mode="http") == 1
