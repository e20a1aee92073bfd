"""Which model each replica answers with (GET /admin/replicas): two real gateway processes sharing one
real Redis and one model store; each publishes a heartbeat record, follows activations, survives a
Redis outage and drops off the list when it stops or dies."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.console_world import AUTH, ConsoleWorld, console_world
from tests.support import post_json

HEARTBEAT = 0.3  # seconds: a replica silent for 3 heartbeats drops off the list


@pytest.fixture(scope="module")
def world(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    env = {"GATEWAY_SERVER_HEARTBEAT_SECONDS": str(HEARTBEAT)}
    with console_world(model_paths, tmp_path_factory.mktemp("replica-models"), 2, env) as world:
        yield world


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=AUTH if headers is None else headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def replicas(base: str) -> dict[str, Any]:
    status, body = get(base + "/admin/replicas")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def names(body: dict[str, Any]) -> list[str]:
    return [record["replica"] for record in body["replicas"]]


def until(fetch: Callable[[], Any], good: Callable[[Any], bool], what: str, timeout: float = 120) -> Any:
    """Poll `fetch` until `good` holds for what it returned, and return that (the bound only stops a
    broken test)."""
    deadline = time.monotonic() + timeout
    while not good(found := fetch()):
        assert time.monotonic() < deadline, f"{what}; last seen: {found}"
        time.sleep(0.1)
    return found


def answering(body: dict[str, Any], lang: str) -> dict[str, str | None]:
    return {record["replica"]: record["models"][lang]["model"] for record in body["replicas"]}


def test_every_replica_is_listed_with_its_model_and_follows_an_activation(world: ConsoleWorld) -> None:
    other = world.others[0]
    assert get(world.management + "/admin/replicas", headers={})[0] == 401
    both = until(lambda: replicas(world.management), lambda b: len(b["replicas"]) == 2, "2 replicas listed")
    a, b = names(both)
    assert a.startswith("console-a:") and b.startswith("console-b:")
    assert (both["self"], both["shared"], both["error"]) == (a, True, None)
    assert replicas(other.url)["self"] == b  # the other one answers for itself, and sees the same list
    for record in both["replicas"]:
        assert set(record["models"]) == {"en", "pl", "de"}
        assert record["models"]["en"]["model"] == world.v1
        assert record["models"]["en"]["state"] == "ready" and record["models"]["en"]["sha256"]

    status, body = post_json(world.management + "/admin/models/en/activate", {"model": world.v2}, AUTH)
    assert status == 200, body
    # This replica answers with v2 at once; the other follows the announcement, then republishes at once.
    moved = until(
        lambda: replicas(world.management),
        lambda r: set(answering(r, "en").values()) == {world.v2},
        "both replicas answer en with v2",
    )
    for record in moved["replicas"]:
        assert record["models"]["en"]["swap"] == {"model": world.v2, "phase": "live"}
    assert answering(moved, "pl") == answering(both, "pl")  # other languages keep their model

    status, body = post_json(world.management + "/admin/models/en/rollback", {}, AUTH)
    assert status == 200, body
    until(
        lambda: answering(replicas(other.url), "en"),
        lambda models: set(models.values()) == {world.v1},
        "both replicas back on v1",
    )


def test_without_redis_a_replica_lists_itself_and_its_heartbeat_comes_back(world: ConsoleWorld) -> None:
    warning = "cannot publish its heartbeat"
    world.redis.stop()
    try:
        body = replicas(world.management)
        assert names(body) == [body["self"]] and body["self"].startswith("console-a:")
        assert "Redis is unavailable" in body["error"]
        assert body["replicas"][0]["models"]["en"]["model"] == world.v1  # fresh from this process
        until(world.gw.log.read_text, lambda log: warning in log, "the failed heartbeat is logged")
    finally:
        world.redis.start()  # same port, empty: both replicas publish again by themselves
    until(lambda: replicas(world.management), lambda r: len(r["replicas"]) == 2, "both replicas listed again")
    log = until(world.gw.log.read_text, lambda log: "heartbeat published again" in log, "recovery logged")
    assert log.count(warning) == 1  # once per outage, not once per heartbeat


def test_a_killed_replica_expires_and_a_stopped_one_withdraws(world: ConsoleWorld) -> None:
    other = world.others[0]
    killed = f"console-b:{other.proc.pid}"
    assert killed in names(replicas(world.management))
    other.proc.send_signal(signal.SIGKILL)  # no goodbye: its record lives until its TTL runs out
    other.proc.wait()
    until(lambda: names(replicas(world.management)), lambda n: killed not in n, "the killed one drops off")

    client = redis.Redis.from_url(world.redis.url)
    try:
        assert [k.decode() for k in client.scan_iter(match="*:replicas:*")] == [
            f"gateway:production:replicas:console-a:{world.gw.proc.pid}"
        ]
        world.gw.stop()  # SIGTERM: it removes its own record on the way out
        assert list(client.scan_iter(match="*:replicas:*")) == []
    finally:
        client.close()
