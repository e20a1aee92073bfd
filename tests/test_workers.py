"""`gateway serve --workers N`: N processes share the port, SIGTERM stops them all, Redis is required;
one /metrics and one /readyz for all workers; a restarted worker takes traffic only once it is ready."""

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
from typing import Any

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.settings import ROOT, load_settings
from gateway.workers import MIN_UPTIME_SECONDS, private_directory
from tests.scrape import Scrape, parse
from tests.support import GatewayProcess, RedisServer, builder_request, free_port, responses

# A request that hangs on a stopped worker (SIGSTOP) gives up after this and is retried elsewhere.
_PATIENCE = aiohttp.ClientTimeout(total=5)
_ADMIN_TOKEN = "workers-test-admin-token-0123456789"


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


def _env(models_dir: Path, redis_server: RedisServer) -> dict[str, str]:
    return {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_SERVER_WORKERS": "2",
    }


async def _via_one_worker(base: str, method: str, path: str, body: object = None) -> tuple[int, int, Any]:
    """(pid, status, payload) of one request on a new connection, after a /healthz on that same
    keep-alive connection: `pid` is the worker that answered the request."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=_PATIENCE) as http:
        async with http.get(base + "/healthz") as resp:
            pid = (await resp.json())["pid"]
        async with http.request(method, base + path, json=body) as resp:
            payload = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return pid, resp.status, payload


async def _greet(base: str) -> tuple[int, str]:
    """(pid of the worker that answered, speech) of a German greeting in a new conversation."""
    body = builder_request("hello", "de-DE", f"w-{uuid.uuid4().hex}")
    pid, status, answer = await _via_one_worker(base, "POST", "/webhook/google", body)
    assert status == 200, answer
    return pid, answer["prompt"]["firstSimple"]["speech"]


def _total(scrape: Scrape, name: str) -> float:
    return sum(scrape.series(name).values())


async def _scrape_each_worker(base: str, workers: set[int], sent: int) -> Scrape:
    """Scrape until every worker has answered one; every scrape must count exactly `sent` webhooks."""
    answered: set[int] = set()
    last = None
    while answered != workers:
        pid, status, text = await _via_one_worker(base, "GET", "/metrics")
        assert status == 200
        last = parse(text)
        assert _total(last, "gateway_requests_total") == sent, (pid, text)
        assert _total(last, "gateway_request_duration_seconds_count") == sent
        assert last.value("gateway_requests_in_flight") == 0
        answered.add(pid)
    assert last is not None
    return last


async def test_one_readyz_and_one_metrics_for_all_workers(
    models_dir: Path, redis_server: RedisServer
) -> None:
    greetings = responses("de", "utter_greet")
    # The session's Redis may still hold other tests' replicas (until their TTL): name these ones.
    env = {
        **_env(models_dir, redis_server),
        "GATEWAY_ADMIN_TOKEN": _ADMIN_TOKEN,
        "GATEWAY_SERVER_REPLICA_NAME": "workers-test",
    }
    with GatewayProcess.start(free_port(), env, wait_ready=False) as gw:
        workers = _wait_children(gw.proc.pid, count=2, without=set(), timeout=30)
        assert len(workers) == 2
        late, early = max(workers), min(workers)
        os.kill(late, signal.SIGSTOP)  # it loads nothing until SIGCONT
        try:
            # The other worker loads its bots; while the stopped one is not ready, /readyz says 503.
            while True:
                try:
                    async with (
                        aiohttp.ClientSession(timeout=_PATIENCE) as http,
                        http.get(gw.url + "/readyz") as resp,
                    ):
                        status, body = resp.status, await resp.json()
                except (aiohttp.ClientError, asyncio.TimeoutError):  # not listening yet, or the stopped one
                    assert gw.proc.poll() is None, gw.log.read_text()
                    await asyncio.sleep(0.1)
                    continue
                assert status == 503, body
                own_bots_ready = all(bot["state"] == "ready" for bot in body["bots"].values())
                states = {worker["pid"]: worker["state"] for worker in body.get("workers", [])}
                if body["pid"] == early and own_bots_ready and states.get(early) == "ready":
                    break
                await asyncio.sleep(0.1)
        finally:
            os.kill(late, signal.SIGCONT)
        assert states[late] != "ready", body

        await asyncio.to_thread(gw.wait_ready, 180)
        # Ready means every worker answers for real: no "temporarily unavailable" from either.
        answered: dict[int, int] = {}
        while set(answered) != workers:
            pid, speech = await _greet(gw.url)
            assert speech in greetings
            answered[pid] = answered.get(pid, 0) + 1
            assert sum(answered.values()) < 200, answered  # the kernel spreads connections over both
        sent = sum(answered.values())

        # One scrape counts every worker's webhooks, whichever worker answers it.
        scrape = await _scrape_each_worker(gw.url, workers, sent)
        langs = {lang for (_, labels) in scrape.samples for key, lang in labels if key == "lang"}
        assert {"de", "en", "pl"} <= langs
        # Gauges are merged per language (no pid label); process metrics are per worker.
        bot_up = scrape.series("gateway_bot_up")
        assert all(dict(labels).keys() == {"lang"} for labels in bot_up), bot_up
        model_info = scrape.series("gateway_model_info")
        assert len(model_info) == len(bot_up) and set(model_info.values()) == {1.0}, model_info
        assert {dict(labels)["pid"] for labels in scrape.series("process_start_time_seconds")} == {
            str(pid) for pid in workers
        }

        # More webhooks: counters move on from where they were, never back.
        for _ in range(4):
            _, speech = await _greet(gw.url)
            assert speech in greetings
        await _scrape_each_worker(gw.url, workers, sent + 4)

        # The console's replica list: each worker is a replica (its name and pid), whichever answers.
        async with (
            aiohttp.ClientSession(timeout=_PATIENCE) as http,
            http.get(gw.url + "/admin/replicas", headers={"Authorization": f"Bearer {_ADMIN_TOKEN}"}) as resp,
        ):
            assert resp.status == 200
            listed = [r for r in (await resp.json())["replicas"] if r["replica"].startswith("workers-test:")]
        assert {record["replica"] for record in listed} == {f"workers-test:{pid}" for pid in workers}
        assert len({record["models"]["de"]["model"] for record in listed}) == 1  # both answer with one model


async def test_two_workers_share_the_port_and_stop_together(
    models_dir: Path, redis_server: RedisServer
) -> None:
    greetings = responses("de", "utter_greet")
    launched = time.monotonic()
    with GatewayProcess.start(free_port(), _env(models_dir, redis_server)) as gw:
        workers = _children(gw.proc.pid)
        assert len(workers) == 2
        # Both workers answer /healthz and /readyz (ready: /readyz waited for both).
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
                assert answer["prompt"]["firstSimple"]["speech"] in greetings
        sent = 6

        # A worker that dies after running a while is replaced; the port keeps answering meanwhile.
        await asyncio.sleep(max(0.0, MIN_UPTIME_SECONDS + 1 - (time.monotonic() - launched)))
        victim = min(workers)
        survivor = max(workers)
        os.kill(victim, signal.SIGKILL)
        assert _wait_gone({victim}, timeout=10) == set()
        replaced = _wait_children(gw.proc.pid, count=2, without={victim}, timeout=30)
        assert len(replaced) == 2 and victim not in replaced
        respawned = time.monotonic()
        (replacement,) = replaced - {survivor}

        # While the replacement loads its bots it takes no traffic: the survivor answers every webhook
        # with a real answer (never "temporarily unavailable"), and the pod stays ready.
        listening = f"worker {replacement}: listening"  # logged before it handles any request
        during = 0
        deadline = time.monotonic() + 180  # a safety net only
        while listening not in gw.log.read_text():
            assert time.monotonic() < deadline, gw.log.read_text()
            pid, speech = await _greet(gw.url)
            assert speech in greetings
            assert pid == survivor or listening in gw.log.read_text()
            pid, status, body = await _via_one_worker(gw.url, "GET", "/readyz")
            assert status == 200, body
            assert pid == survivor or listening in gw.log.read_text()
            during += 1
        assert during > 0
        sent += during
        assert await _pids(gw.url + "/readyz", replaced, timeout=120) == replaced
        # The dead worker's counts are still in every scrape: totals never go back (no reset for rate()).
        await _scrape_each_worker(gw.url, replaced, sent)

        # Both die: with no worker left serving, a replacement listens at once, so the port answers while
        # they load (503 on /readyz) instead of refusing connections until one is ready.
        await asyncio.sleep(max(0.0, MIN_UPTIME_SECONDS + 1 - (time.monotonic() - respawned)))
        for pid in replaced:
            os.kill(pid, signal.SIGKILL)
        assert _wait_gone(replaced, timeout=10) == set()
        fresh = _wait_children(gw.proc.pid, count=2, without=replaced, timeout=30)
        assert len(fresh) == 2 and not fresh & replaced
        first = None
        while first is None:
            try:
                async with (
                    aiohttp.ClientSession(timeout=_PATIENCE) as http,
                    http.get(gw.url + "/readyz") as resp,
                ):
                    first = resp.status, await resp.json()
            except aiohttp.ClientConnectionError:  # no one listens yet
                assert gw.proc.poll() is None, gw.log.read_text()
                await asyncio.sleep(0.1)
        assert first[0] == 503 and first[1]["pid"] in fresh, first
        assert await _pids(gw.url + "/readyz", fresh, timeout=120) == fresh
        await _scrape_each_worker(gw.url, fresh, sent)

        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=30) == 0
        assert _wait_gone(fresh, timeout=10) == set()


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


def test_a_killed_supervisors_directory_is_removed_by_the_next_one(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"gateway-workers-{int(gone.stdout)}-abc"
    (stale / "counter_1.db").parent.mkdir()
    (stale / "counter_1.db").write_bytes(b"")
    alive = tmp_path / f"gateway-workers-{os.getpid()}-def"  # a supervisor still running
    alive.mkdir()

    mine = private_directory(tmp_path)
    assert not stale.exists() and alive.is_dir() and mine.is_dir()
    assert mine.name.startswith(f"gateway-workers-{os.getpid()}-")
