"""Management listener: /metrics, /bots and /admin/* only there; the public port: webhooks and health.

Real gateway processes (one single-process, one with two SO_REUSEPORT workers) over real HTTP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.settings import ROOT, load_settings
from tests.support import GatewayProcess, RedisServer, builder_request, free_port, responses

TOKEN = "management-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Surface:
    """A gateway with a management listener: `public` and `management` base URLs."""

    def __init__(self, gw: GatewayProcess, management_port: int, workers: int) -> None:
        self.gw = gw
        self.public = gw.url
        self.management = f"http://127.0.0.1:{management_port}"
        self.workers = workers


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def surface(request: pytest.FixtureRequest, models_dir: Path) -> Iterator[Surface]:
    workers = int(request.param)
    management_port = free_port()
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_ADMIN_TOKEN": TOKEN,
        "GATEWAY_SERVER_MANAGEMENT_HOST": "127.0.0.1",
        "GATEWAY_SERVER_MANAGEMENT_PORT": str(management_port),
        "GATEWAY_SERVER_WORKERS": str(workers),
    }
    redis = RedisServer().start() if workers > 1 else None  # workers share conversations through Redis
    if redis is not None:
        env["GATEWAY_REDIS_URL"] = redis.url
    try:
        with GatewayProcess.start(free_port(), env) as gw:
            _wait_every_worker_ready(gw.url + "/readyz", workers)
            yield Surface(gw, management_port, workers)
    finally:
        if redis is not None:
            redis.stop()


def _wait_every_worker_ready(url: str, workers: int, timeout: float = 300) -> None:
    """GatewayProcess waits for one 200 on /readyz; with workers, wait until each one has answered 200
    (every request a new connection, so the kernel picks the worker; the bound only stops a hang)."""
    ready: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(ready) < workers:
        assert time.monotonic() < deadline, f"only workers {ready} became ready"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                ready.add(json.loads(resp.read())["pid"])
        except urllib.error.HTTPError:  # 503: that worker is still loading its bots
            time.sleep(0.1)


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    async with http.get(url, headers=headers) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, resp.content_type, body


async def test_the_public_port_serves_only_webhooks_and_health(surface: Surface) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/metrics", "/bots", "/bots/en/ping", "/bots/en/ping?text=hi", "/admin/status",
                     "/admin/models", "/console/", "/console/index.html", "/nothing"):  # fmt: skip
            status, ctype, body = await _get(http, surface.public + path, AUTH)
            assert (status, ctype) == (404, "application/json"), (path, body)
            assert body == {"error": "Not Found"}, path

        status, _, body = await _get(http, surface.public + "/healthz")
        assert (status, body["status"]) == (200, "ok")
        status, _, body = await _get(http, surface.public + "/readyz")
        assert (status, body["status"], body["waiting"]) == (200, "ready", [])
        assert "bots" not in body  # model names and errors are for the management listener
        assert "model" not in json.dumps(body)

        async with http.post(
            surface.public + "/webhook/google", json=builder_request("hallo", "de-DE")
        ) as resp:
            assert resp.status == 200
            answer = await resp.json()
        # Every enabled channel is public, not only Google's (here Rasa's REST channel).
        status, _, body = await _get(http, surface.public + "/webhooks/rest/")
        assert (status, body) == (200, {"status": "ok"})
        rest = {"sender": "public-port", "message": "hallo", "metadata": {"locale": "de-DE"}}
        async with http.post(surface.public + "/webhooks/rest/webhook", json=rest) as resp:
            assert resp.status == 200
            rest_answer = await resp.json()
    assert answer["prompt"]["firstSimple"]["speech"] in responses("de", "utter_greet")
    assert rest_answer[0]["text"] in responses("de", "utter_greet")


async def test_the_management_port_serves_metrics_bots_and_admin(surface: Surface) -> None:
    url = surface.management
    async with aiohttp.ClientSession() as http:
        status, ctype, metrics = await _get(http, url + "/metrics")
        assert (status, ctype) == (200, "text/plain")
        assert "gateway_requests_total" in metrics
        status, _, body = await _get(http, url + "/bots")
        assert status == 200
        assert {bot["lang"] for bot in body["bots"]} == {"en", "pl", "de"}
        assert all(bot["model"] for bot in body["bots"])
        status, _, body = await _get(http, url + "/bots/pl/ping")
        assert (status, body["ok"]) == (200, True)
        status, _, body = await _get(http, url + "/readyz")
        assert (status, set(body["bots"])) == (200, {"en", "pl", "de"})
        status, _, body = await _get(http, url + "/admin/status", AUTH)
        assert (status, body["bots"]["en"]["state"]) == (200, "ready")
        status, _, body = await _get(http, url + "/admin/models")
        assert (status, body["error"]) == (401, "missing bearer token")
        # Webhooks are not served on the management port.
        async with http.post(url + "/webhook/google", json=builder_request("hello")) as resp:
            assert (resp.status, await resp.json()) == (404, {"error": "Not Found"})
        rest = {"sender": "management-port", "message": "hello"}
        async with http.post(url + "/webhooks/rest/webhook", json=rest) as resp:
            assert (resp.status, await resp.json()) == (404, {"error": "Not Found"})


async def test_every_worker_serves_the_management_port(surface: Surface) -> None:
    # Each request on a new connection: the kernel picks the worker (SO_REUSEPORT on both ports).
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        while len(pids) < surface.workers and time.monotonic() < deadline:
            status, _, body = await _get(http, surface.management + "/healthz")
            assert status == 200
            pids.add(body["pid"])
    assert len(pids) == surface.workers
    assert surface.gw.proc.pid not in pids or surface.workers == 1


async def test_free_text_ping_needs_the_admin_token(surface: Surface) -> None:
    url = surface.management + "/bots/en/ping"
    async with aiohttp.ClientSession() as http:
        status, _, body = await _get(http, url + "?text=I+would+like+to+book+a+table")
        assert status == 401
        assert body["error"] == "?text= needs the admin token: missing bearer token"
        status, _, body = await _get(
            http,
            url + "?text=I+would+like+to+book+a+table",
            {"Authorization": "Bearer wrong-token-0123456789"},
        )
        assert (status, body["error"]) == (401, "?text= needs the admin token: wrong bearer token")
        status, _, body = await _get(http, url + "?text=I+would+like+to+book+a+table", AUTH)
        assert status == 200
        assert all(text in responses("en", "utter_ask_people") for text in body["reply"])
        # The probe text is the health check, token or not.
        status, _, body = await _get(http, url + "?text=hello")
        assert (status, body["ok"]) == (200, True)


async def test_free_text_ping_is_refused_while_admin_is_off(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        status, _, body = await _get(http, gateway.url + "/bots/en/ping?text=book+a+table")
        assert status == 401
        assert body["error"] == (
            "?text= needs the admin token: admin routes are off: set admin.token (GATEWAY_ADMIN_TOKEN)"
        )
        status, _, body = await _get(http, gateway.url + "/bots/en/ping")
        assert (status, body["ok"]) == (200, True)


def test_management_settings() -> None:
    env = {"GATEWAY_SERVER_MANAGEMENT_PORT": "9090"}
    server = load_settings(env=env).server
    assert (server.management_host, server.management_port) == ("0.0.0.0", 9090)  # host: server.host
    server = load_settings(env={**env, "GATEWAY_SERVER_MANAGEMENT_HOST": "127.0.0.1"}).server
    assert (server.management_host, server.management_port) == ("127.0.0.1", 9090)
    server = load_settings(env={"GATEWAY_SERVER_MANAGEMENT_PORT": ""}).server
    assert (server.management_host, server.management_port) == (None, None)
    with pytest.raises(ConfigError, match=r"management_port=None: allowed a port .* when management_host"):
        load_settings(env={"GATEWAY_SERVER_MANAGEMENT_HOST": "127.0.0.1"})
    with pytest.raises(ConfigError, match=r"management_port=8080: allowed a port other than server.port"):
        load_settings(env={"GATEWAY_SERVER_MANAGEMENT_PORT": "8080"})
    with pytest.raises(ConfigError, match=r"management_port='9o90': allowed an integer from 1 to 65535"):
        load_settings(env={"GATEWAY_SERVER_MANAGEMENT_PORT": "9o90"})


@pytest.mark.parametrize("role", ["management", "public"])
def test_a_port_someone_else_holds_is_one_clear_line(role: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        other = free_port()
        public, management = (other, held) if role == "management" else (held, other)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_SERVER_MANAGEMENT_PORT=str(management), GATEWAY_MONITOR_INTERVAL_SECONDS="0")
        env["GATEWAY_BOTS_MODELS_DIR"] = str(tmp_path)  # no models: nothing to load before it gives up
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--no-train",
                "--host",
                "127.0.0.1",
                "--port",
                str(public),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2  # a configuration error (README "Exit codes")
    assert f"gateway: configuration error: cannot listen on 127.0.0.1:{held} ({role}): " in result.stderr
    assert "Traceback" not in result.stderr
