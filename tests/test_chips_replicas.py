"""Chip memory is stateless across replicas: a chip shown by gateway A and tapped on gateway B reaches the bot
as its payload when both share google.memory_key (two real processes, a real redis-server, real models)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import GatewayProcess, RedisServer, builder_request, free_port, responses


@pytest.fixture(scope="module")
def replicas(models_dir: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    server = RedisServer().start()
    env = {
        "GATEWAY_REDIS_URL": server.url,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_GOOGLE_MEMORY_KEY": f"replicas-{uuid.uuid4().hex}",
    }
    try:
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
            b = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
            a.wait_ready(180)
            b.wait_ready(180)
            yield a, b
    finally:
        server.stop()


async def post(gw: GatewayProcess, body: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/webhook/google", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_chip_shown_by_one_replica_is_tapped_on_another(
    replicas: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = replicas
    session = f"replicas-{uuid.uuid4().hex}"
    ask = await post(a, builder_request("Tisch reservieren", "de-DE", session))
    assert ask["prompt"]["suggestions"][1]["title"] == "Tisch für die ganze"
    tap = await post(
        b, builder_request("Tisch für die ganze", "de-DE", session, params=ask["session"]["params"])
    )
    booked = responses("de", "utter_booked")[0].replace("{people}", "6")
    assert tap["prompt"]["firstSimple"]["speech"] == booked
