"""The console's JSON API over real HTTP: a real gateway process with real models and a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.console_world import AUTH, NEW_GREETING, ConsoleWorld, console_world
from tests.support import builder_request


@pytest.fixture(scope="module")
def world(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    with console_world(model_paths, tmp_path_factory.mktemp("console-models")) as world:
        yield world


async def call(
    world: ConsoleWorld, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, world.management + path, json=body, headers=AUTH if headers is None else headers
        ) as resp,
    ):
        return resp.status, json.loads(await resp.text())


async def say(world: ConsoleWorld, text: str, locale: str, session: str) -> dict[str, Any]:
    status, body = await call(world, "POST", "/admin/simulate", builder_request(text, locale, session))
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def tracker_keys(world: ConsoleWorld) -> list[str]:
    client = redis.Redis.from_url(world.redis.url)
    try:
        return sorted(key.decode() for key in client.scan_iter(match="*:tracker"))
    finally:
        client.close()


async def test_the_simulator_answers_through_the_webhook_path_and_says_who_answered(
    world: ConsoleWorld,
) -> None:
    session = f"sim-{uuid.uuid4().hex}"
    body = await say(world, "cześć", "pl-PL", session)
    assert (body["status"], body["lang"], body["locale"]) == (200, "pl", "pl-PL")
    assert body["model"].endswith(".tar.gz") and body["request_id"] and body["latency_ms"] > 0
    assert body["response"]["session"]["id"] == session
    assert body["response"]["prompt"]["firstSimple"]["speech"]


async def test_conversations_are_listed_shown_as_transcripts_and_erased(world: ConsoleWorld) -> None:
    session = f"conv-{uuid.uuid4().hex}"
    await say(world, "hallo", "de-DE", session)
    await say(world, "<script>alert(1)</script> was kannst du", "de-DE", session)
    status, listing = await call(world, "GET", "/admin/conversations/de?limit=5")
    assert status == 200, listing
    assert listing["backend"] == "redis" and listing["total"] >= 1
    newest = listing["conversations"][0]
    assert newest["sender_id"].endswith(session) and newest["turns"] == 2
    sender = newest["sender_id"]

    status, shown = await call(world, "GET", f"/admin/conversations/de/{sender}")
    assert status == 200, shown
    kinds = [entry["kind"] for entry in shown["transcript"]]
    assert {"session_started", "action", "bot", "user"} <= set(kinds)
    users = [entry for entry in shown["transcript"] if entry["kind"] == "user"]
    assert [u["text"] for u in users] == ["hallo", "<script>alert(1)</script> was kannst du"]
    assert users[0]["intent"] == "greet" and 0 < users[0]["confidence"] <= 1
    assert all(isinstance(entry["timestamp"], float) for entry in shown["transcript"])

    assert any(key.endswith("{" + sender + "}:tracker") for key in tracker_keys(world))
    status, erased = await call(world, "DELETE", f"/admin/conversations/de/{sender}")
    assert (status, erased["erased"]) == (200, True)
    assert not any(sender in key for key in tracker_keys(world))  # gone from Redis
    status, again = await call(world, "GET", f"/admin/conversations/de/{sender}")
    assert status == 404 and sender in again["error"]
    status, again = await call(world, "DELETE", f"/admin/conversations/de/{sender}")
    assert status == 404


async def test_listing_pages_newest_first(world: ConsoleWorld) -> None:
    sessions = [f"page-{i}-{uuid.uuid4().hex}" for i in range(3)]
    for session in sessions:
        await say(world, "hello", "en-US", session)
    status, first = await call(world, "GET", "/admin/conversations/en?limit=2")
    status2, second = await call(world, "GET", "/admin/conversations/en?limit=2&offset=2")
    assert status == status2 == 200
    ids = [c["sender_id"] for c in first["conversations"] + second["conversations"]]
    assert [i.split(":", 1)[1] for i in ids[:3]] == sessions[::-1]
    latest = [c["latest"] for c in first["conversations"] + second["conversations"]]
    assert latest == sorted(latest, reverse=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/conversations/xx", 404),
        ("/admin/conversations/en?limit=0", 400),
        ("/admin/conversations/en?limit=abc", 400),
        ("/admin/conversations/en?offset=-1", 400),
        ("/admin/conversations/en/" + "x" * 600, 400),
    ],
)
async def test_bad_console_requests_get_a_json_reason(world: ConsoleWorld, path: str, status: int) -> None:
    got, body = await call(world, "GET", path)
    assert got == status and body["error"]


async def test_the_console_api_needs_the_token_and_lives_on_the_management_listener(
    world: ConsoleWorld,
) -> None:
    status, body = await call(world, "GET", "/admin/conversations/en", headers={})
    assert (status, body) == (401, {"error": "missing bearer token"})
    status, body = await call(
        world, "POST", "/admin/simulate", builder_request("hi"), {"Authorization": "Bearer nope"}
    )
    assert (status, body) == (401, {"error": "wrong bearer token"})
    async with aiohttp.ClientSession() as http:
        async with http.get(world.gw.url + "/admin/swaps", headers=AUTH) as resp:
            assert resp.status == 404  # not on the public port
        async with http.get(world.gw.url + "/console/") as resp:
            assert resp.status == 404
        async with http.get(world.management + "/console/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
        for bad in ("/console/..%2Fapp.py", "/console/.hidden", "/console/nothere.js"):
            async with http.get(world.management + bad) as resp:
                assert resp.status == 404, bad


async def test_models_show_their_test_verdicts(world: ConsoleWorld) -> None:
    status, listing = await call(world, "GET", "/admin/models")
    assert status == 200
    tests = {m["model"]: m["tests"] for m in listing["models"]["en"]["available"]}
    assert tests[world.v2]["verdict"] == "passed"
    assert tests[world.v1]["verdict"] == "failed" and "1 of 9" in tests[world.v1]["detail"]
    assert all(m["tests"] is None for m in listing["models"]["pl"]["available"])  # never tested


async def test_activation_reports_its_progress_until_live_and_roll_back(world: ConsoleWorld) -> None:
    activation = asyncio.create_task(call(world, "POST", "/admin/models/en/activate", {"model": world.v2}))
    phases: list[str] = []
    while not activation.done() or not phases or phases[-1] != "live":
        status, listing = await call(world, "GET", "/admin/models")
        swap = listing["models"]["en"]["swap"]
        if swap and swap["model"] == world.v2 and (not phases or phases[-1] != swap["phase"]):
            phases.append(swap["phase"])
        if activation.done() and (await activation)[0] != 200:
            break
        await asyncio.sleep(0.05)  # polling, as the page does; the loop ends on the state, not the clock
    status, body = await activation
    assert status == 200, body
    assert phases[-1] == "live" and set(phases) <= {"loading", "warming", "live"}
    answer = await say(world, "hello", "en-US", f"v2-{uuid.uuid4().hex}")
    assert answer["model"] == world.v2
    assert answer["response"]["prompt"]["firstSimple"]["speech"] == NEW_GREETING

    status, body = await call(world, "POST", "/admin/models/en/rollback")
    assert status == 200 and body["model"] == world.v1
    status, swaps = await call(world, "GET", "/admin/swaps")
    assert status == 200
    assert [(s["model"], s["phase"]) for s in swaps["recent"][:2]] == [(world.v1, "live"), (world.v2, "live")]

    status, body = await call(
        world, "POST", "/admin/models/en/activate", {"model": "19990101T000000Z-nothere.tar.gz"}
    )
    assert status == 404 and body["error"]


async def test_a_refused_activation_reports_why_and_the_model_keeps_answering(world: ConsoleWorld) -> None:
    status, body = await call(world, "POST", "/admin/models/en/activate", {"model": world.corrupt})
    assert status == 422 and world.corrupt in body["error"]
    status, listing = await call(world, "GET", "/admin/models")
    swap = listing["models"]["en"]["swap"]
    assert (swap["model"], swap["phase"]) == (world.corrupt, "refused") and swap["finished"]
    assert world.corrupt in swap["error"]
    assert listing["models"]["en"]["model"] == world.v1
    status, swaps = await call(world, "GET", "/admin/swaps")
    assert swaps["recent"][0]["phase"] == "refused"


async def test_only_the_restart_flag_restarts_a_conversation(world: ConsoleWorld) -> None:
    session = f"restart-{uuid.uuid4().hex}"

    async def kinds() -> list[str]:
        status, body = await call(world, "GET", f"/admin/conversations/en/en:{session}")
        assert status == 200, body
        return [entry["kind"] for entry in body["transcript"]]

    await say(world, "/restart", "en-US", session)  # typed: plain text, never Rasa's intent shortcut
    assert "restart" not in await kinds()
    status, body = await call(
        world, "POST", "/admin/simulate?restart=true", builder_request("/restart", "en-US", session)
    )
    assert (status, body["status"], body["lang"]) == (200, 200, "en"), body
    assert "restart" in await kinds()
    status, body = await call(
        world, "POST", "/admin/simulate?restart=yes", builder_request("", "en-US", session)
    )
    assert status == 400 and "restart='yes' must be true or false" in body["error"]
