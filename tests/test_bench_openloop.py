"""`make bench`'s open loop sends on schedule whatever is outstanding; latency counts from the schedule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from bench import conversations as conv
from bench import openloop, report
from bench.__main__ import parse_rates, resolve_rates
from tests.support import GatewayProcess


async def test_open_loop_conversations_succeed_against_the_gateway(gateway: GatewayProcess) -> None:
    result = await openloop.run(gateway.url, "/webhook/google", 20.0, 1.5, conv.LANGS, 30.0)
    assert result["requests"] == 30
    assert (result["errors"], result["timeouts"], result["wrong"]) == (0, 0, 0), result
    # Conversations move on turn by turn: 30 turns cannot all be first turns of new conversations.
    assert result["conversations"] < 30
    assert result["throughput"] > 0 and result["p50_ms"] is not None


async def test_requests_go_out_on_schedule_while_earlier_ones_wait(aiohttp_server: Any) -> None:
    """The server answers nothing until all 10 requests are in: a closed loop would deadlock here."""
    held: list[asyncio.Future[None]] = []
    all_in = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        await request.read()
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held.append(release)
        if len(held) == 10:
            all_in.set()
            for future in held:
                future.set_result(None)
        await release
        return web.json_response({"prompt": {"firstSimple": {"speech": "not the bot"}}})

    app = web.Application()
    app.router.add_post("/webhook/google", hold)
    server = await aiohttp_server(app)
    result = await openloop.run(
        f"http://127.0.0.1:{server.port}", "/webhook/google", 20.0, 0.5, ("en",), 30.0
    )
    assert all_in.is_set()
    assert (result["requests"], result["wrong"], result["errors"], result["timeouts"]) == (10, 10, 0, 0)
    assert result["connections"] == 10  # one per outstanding request
    # The first request was due 9/20 s before the last one was even due, and waited for it: latency
    # counted from the schedule shows that wait.
    assert result["max_ms"] >= 450.0


async def test_requests_without_an_answer_count_as_timeouts(aiohttp_server: Any) -> None:
    never = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await never.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/webhook/google", silent)
    server = await aiohttp_server(app)
    try:
        result = await openloop.run(
            f"http://127.0.0.1:{server.port}", "/webhook/google", 10.0, 0.3, ("en",), 0.5
        )
    finally:
        never.set()
    assert (result["requests"], result["timeouts"], result["errors"]) == (3, 3, 0)
    assert result["throughput"] == 0.0
    assert result["p50_ms"] >= 500.0  # given up after the timeout: the latency is at least that
    assert result["error_samples"][0].startswith("timeout: en ")


def test_rates_are_percentages_of_the_usual_deployments_best_or_plain_rates() -> None:
    entries = parse_rates("50%, 150%,40")
    usual = {"levels": [{"throughput": 30.0}, {"throughput": 80.0}, {"throughput": 60.0}]}
    assert resolve_rates(entries, usual) == [("50%", 40.0), ("150%", 120.0), ("40/s", 40.0)]
    assert resolve_rates(entries, None) == [("40/s", 40.0)]  # no usual deployment measured: no percentages
    assert parse_rates("") == []
    for bad, said in (("fast", "is not a number or N%"), ("-5%", "must be positive")):
        with pytest.raises(SystemExit, match=said):
            parse_rates(bad)


def test_open_loop_table_marks_quantiles_that_timeouts_make_lower_bounds() -> None:
    rows = [("none", 100, 0), ("one%", 100, 1), ("half", 100, 50)]
    points = [
        {"label": label, "rate": 10.0, "throughput": 9.0, "p50_ms": 20.0, "p99_ms": 10_000.0}
        | {"requests": requests, "timeouts": timeouts, "errors": 0, "wrong": 0}
        for label, requests, timeouts in rows
    ]
    lines = report.open_table({"systems": {"usual": {"open_loop": points}}}).splitlines()[2:]
    assert [line.split()[4:6] for line in lines] == [
        ["20.0", "10000.0"],
        ["20.0", ">=10000.0"],
        [">=20.0", ">=10000.0"],
    ]
