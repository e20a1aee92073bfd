"""Several real gateway processes on one Redis and one S3: they swap together and late starters catch up."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest

from gateway.storage.events import RedisEventBus, announce
from tests.support import GatewayProcess, S3Server, builder_request, eventually, free_port
from tests.swaps.conftest import ADMIN_TOKEN, NEW_GREETING, OLD_GREETINGS, SwapWorld, admin_headers


class Gateway:
    """Talks to one gateway process over HTTP."""

    def __init__(self, proc: GatewayProcess, http: aiohttp.ClientSession) -> None:
        self.proc, self.http = proc, http

    async def greet(self) -> str:
        async with self.http.post(self.proc.url + "/webhook/google", json=builder_request("hello")) as resp:
            assert resp.status == 200
            body = await resp.json()
        return str(body["prompt"]["firstSimple"]["speech"])

    async def admin(self, method: str, path: str) -> tuple[int, Any]:
        async with self.http.request(method, self.proc.url + path, headers=admin_headers()) as resp:
            return resp.status, await resp.json()

    async def following_events(self) -> bool:
        """Ready and subscribed (a plain publish before that would be lost, like with any pub/sub)."""
        try:
            async with self.http.get(self.proc.url + "/readyz") as resp:
                if resp.status != 200:
                    return False
            status, body = await self.admin("GET", "/admin/models")
        except aiohttp.ClientError:
            return False
        return status == 200 and bool(body["events"]["connected"])

    async def says(self, expected: frozenset[str]) -> bool:
        return await self.greet() in expected


def env_for(world: SwapWorld, s3: S3Server, models_dir: str) -> dict[str, str]:
    return {
        "GATEWAY_PROJECT": world.settings.project,
        "GATEWAY_REDIS_URL": world.redis_server.url,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_BOTS_MODELS_DIR": models_dir,
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        **s3.env(),
    }


@pytest.mark.slow
async def test_processes_swap_on_one_event_and_a_late_process_loads_the_active_model(
    world: SwapWorld, s3_server: S3Server, models_dir: Any
) -> None:
    env = env_for(world, s3_server, str(models_dir))
    new, old = frozenset({NEW_GREETING}), OLD_GREETINGS
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False)) for _ in range(2)
        ]
        async with aiohttp.ClientSession() as http:
            first, second = (Gateway(p, http) for p in procs)
            for gw in (first, second):
                await eventually(gw.following_events, 180, f"gateway on {gw.proc.port} ready")
                # v1 is the recorded active model; v2 (and a corrupt archive) are newer in the bucket.
                assert await gw.greet() in old

            # One announcement (durable record + one PUBLISH), two processes swap.
            publisher = RedisEventBus(world.redis, world.settings, world.active(), [])
            await announce(publisher, world.active(), "en", world.models.ref(world.models.v2))
            for gw in (first, second):
                await eventually(lambda gw=gw: gw.says(new), 60, f"gateway on {gw.proc.port} swapped")

            # Started after the event: loads the active model (not the newest archive, not its local one).
            late = Gateway(
                stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False)), http
            )
            await eventually(late.following_events, 180, "late gateway ready")
            assert await late.greet() == NEW_GREETING
            status, body = await late.admin("GET", "/admin/models")
            assert status == 200 and body["models"]["en"]["model"] == world.models.v2.name

            # Roll back through one process's admin API: the others follow the event.
            status, body = await first.admin("POST", "/admin/models/en/rollback")
            assert status == 200, body
            for gw in (first, second, late):
                await eventually(lambda gw=gw: gw.says(old), 60, f"gateway on {gw.proc.port} rolled back")
