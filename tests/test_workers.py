"""`gateway serve --workers N`: N processes share the port, SIGTERM stops them all, Redis is required."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.settings import ROOT, load_settings
from gateway.workers import MIN_UPTIME_SECONDS
from tests.support import GatewayProcess, RedisServer, builder_request, free_port, responses


def _children(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (Linux /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Field 4 is the parent pid; field 2 (the name) may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    """The PIDs in `pids` still alive after waiting up to `timeout` for them to end."""
    deadline = time.monotonic() + timeout
    while {pid for pid in pids if _alive(pid)} and time.monotonic() < deadline:
        time.sleep(0.1)
    return {pid for pid in pids if _alive(pid)}


def _wait_children(pid: int, count: int, without: set[int], timeout: float) -> set[int]:
    """The children of `pid` once there are `count` of them and none is in `without` (or at timeout)."""
    deadline = time.monotonic() + timeout
    children = _children(pid)
    while (len(children) != count or children & without) and time.monotonic() < deadline:
        time.sleep(0.1)
        children = _children(pid)
    return children


async def _pids(url: str, want: set[int], timeout: float) -> set[int]:
    """Worker PIDs that answered 200 on `url`, each request on a new connection (the kernel picks the
    worker), until every PID in `want` has answered or `timeout` passes."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while pids != want and time.monotonic() < deadline:
            async with http.get(url) as resp:
                if resp.status == 200:
                    pids.add((await resp.json())["pid"])
                else:
                    await asyncio.sleep(0.1)  # that worker is still loading its bots
    return pids


async def test_two_workers_share_the_port_and_stop_together(
    models_dir: Path, redis_server: RedisServer
) -> None:
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_SERVER_WORKERS": "2",
    }
    launched = time.monotonic()
    with GatewayProcess.start(free_port(), env) as gw:
        workers = _children(gw.proc.pid)
        assert len(workers) == 2
        # Both workers answer /healthz, and both get their bots (start-up waited for one /readyz only).
        assert await _pids(gw.url + "/healthz", workers, timeout=60) == workers
        assert await _pids(gw.url + "/readyz", workers, timeout=120) == workers

        # Webhooks are answered whichever worker takes the connection.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(6):
                body = builder_request("hello", "de-DE", f"w-{uuid.uuid4().hex}")
                async with http.post(gw.url + "/webhook/google", json=body) as resp:
                    assert resp.status == 200
                    answer = await resp.json()
                assert answer["prompt"]["firstSimple"]["speech"] in responses("de", "utter_greet")

        # A worker that dies after running a while is replaced; the port keeps answering meanwhile.
        await asyncio.sleep(max(0.0, MIN_UPTIME_SECONDS + 1 - (time.monotonic() - launched)))
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        assert _wait_gone({victim}, timeout=10) == set()
        replaced = _wait_children(gw.proc.pid, count=2, without={victim}, timeout=30)
        assert len(replaced) == 2 and victim not in replaced
        assert await _pids(gw.url + "/readyz", replaced, timeout=120) == replaced

        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=30) == 0
        assert _wait_gone(replaced, timeout=10) == set()


def test_workers_without_redis_are_refused_by_the_settings() -> None:
    with pytest.raises(ConfigError, match=r"server\.workers=2.*redis\.url"):
        load_settings(overrides={"server.workers": 2})
    assert (
        load_settings(overrides={"server.workers": 2, "redis.url": "redis://127.0.0.1:1/0"}).server.workers
        == 2
    )


def test_serve_with_workers_and_no_redis_exits_with_a_clear_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--workers",
            "2",
            "--no-train",
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "server.workers=2" in result.stderr
    assert "redis.url" in result.stderr
    assert "GATEWAY_REDIS_URL" in result.stderr


def test_workers_on_a_port_someone_else_holds_exit_with_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["GATEWAY_REDIS_URL"] = "redis://127.0.0.1:1/0"  # never contacted: binding fails first
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--no-train",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
