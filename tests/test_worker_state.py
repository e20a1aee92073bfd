"""Readiness over workers (gateway/worker_state.py): the rules /readyz applies to the shared files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from gateway.worker_state import (
    AT_START,
    WHEN_READY,
    RosterEntry,
    WorkerState,
    aggregate,
    forget,
    serving,
    write_roster,
)

LANGS = ["de", "en"]


def _state(directory: Path, pid: int, *, ready: bool, listening: bool) -> None:
    """What worker `pid` publishes (see WorkerState.publish)."""
    state = {"ready": ready, "listening": listening, "waiting": [] if ready else LANGS}
    (directory / f"worker-{pid}.json").write_bytes(orjson.dumps(state))


def test_not_ready_until_every_worker_listening_from_the_start_is_ready(tmp_path: Path) -> None:
    write_roster(tmp_path, [RosterEntry(11, 0, AT_START), RosterEntry(12, 1, AT_START)])
    _state(tmp_path, 11, ready=True, listening=True)
    ready, details = aggregate(tmp_path, LANGS)
    assert not ready
    assert details["waiting"] == LANGS  # worker 12 has not reported: it waits for every bot
    assert [w["state"] for w in details["workers"]] == ["ready", "starting"]

    _state(tmp_path, 12, ready=False, listening=True)
    assert aggregate(tmp_path, LANGS)[0] is False
    _state(tmp_path, 12, ready=True, listening=True)
    ready, details = aggregate(tmp_path, LANGS)
    assert ready and details["waiting"] == []
    assert serving(tmp_path) == 2


def test_a_replacement_loading_behind_a_closed_port_leaves_the_pod_ready(tmp_path: Path) -> None:
    write_roster(tmp_path, [RosterEntry(11, 0, AT_START), RosterEntry(13, 1, WHEN_READY)])
    _state(tmp_path, 11, ready=True, listening=True)
    _state(tmp_path, 13, ready=False, listening=False)
    ready, details = aggregate(tmp_path, LANGS)
    assert ready
    replacement = details["workers"][1]
    assert (replacement["state"], replacement["listening"], replacement["takes_traffic"]) == (
        "loading",
        False,
        False,
    )
    assert serving(tmp_path) == 1


def test_a_worker_whose_initial_load_failed_takes_traffic_and_is_not_ready(tmp_path: Path) -> None:
    write_roster(tmp_path, [RosterEntry(11, 0, AT_START), RosterEntry(13, 1, WHEN_READY)])
    _state(tmp_path, 11, ready=True, listening=True)
    _state(tmp_path, 13, ready=False, listening=True)  # listens once its load is over, a bot failed
    ready, details = aggregate(tmp_path, LANGS)
    assert not ready and details["waiting"] == LANGS
    assert serving(tmp_path) == 2


def test_no_worker_serving_is_not_ready(tmp_path: Path) -> None:
    assert aggregate(tmp_path, LANGS)[0] is False  # no roster yet
    write_roster(tmp_path, [RosterEntry(13, 0, WHEN_READY)])
    _state(tmp_path, 13, ready=False, listening=False)
    assert aggregate(tmp_path, LANGS)[0] is False
    assert serving(tmp_path) == 0
    forget(tmp_path, 13)
    forget(tmp_path, 13)  # twice: no error
    assert not (tmp_path / "worker-13.json").exists()


async def test_a_worker_waits_for_readiness_or_a_stop_before_listening(tmp_path: Path) -> None:
    gated = WorkerState(tmp_path, listen_when_ready=True)
    stop = asyncio.Event()
    waiting = asyncio.create_task(gated.may_listen(stop))
    await asyncio.sleep(0)
    assert not waiting.done()
    gated.loaded.set()  # the initial load is over (a bot that failed to load does not keep it out)
    assert await waiting is True
    gated.listening()
    assert '"listening":true' in (tmp_path / f"worker-{os.getpid()}.json").read_text()

    stopped = WorkerState(tmp_path, listen_when_ready=True)
    stop.set()
    assert await stopped.may_listen(stop) is False
    assert await WorkerState(tmp_path, listen_when_ready=False).may_listen(asyncio.Event()) is True
