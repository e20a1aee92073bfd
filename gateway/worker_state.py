"""Worker readiness shared through the supervisor's private directory (`--workers N`).

The supervisor writes the roster (`workers.json`): each worker's pid, its index and whether it listens
from the start (the first workers, so /healthz answers during the initial load) or only once its
initial load is over (a worker that replaces a dead one while others listen: it takes no webhook
before it can answer; with no other worker listening, it listens at once so the port keeps answering
/healthz). Each worker writes its own state (`worker-<pid>.json`: ready, listening, languages still
loading). Whichever worker answers /readyz, on whichever port, reads them all: ready once every worker
that takes traffic is ready. A replacement still loading takes no traffic, so it does not make the pod
unready; /readyz lists it as loading. Files are replaced atomically (write, then rename), so a reader
never sees half of one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys

logger = logging.getLogger(__name__)

ROSTER = "workers.json"
AT_START = "at_start"
WHEN_READY = "when_ready"
# How often a worker looks whether its bots are loaded (until they are; then never again).
_READY_POLL_SECONDS = 0.2


def _state_file(directory: Path, pid: int) -> Path:
    return directory / f"worker-{pid}.json"


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class RosterEntry:
    """One worker as the supervisor started it."""

    pid: int
    index: int
    listen: str  # AT_START or WHEN_READY


def write_roster(directory: Path, workers: list[RosterEntry]) -> None:
    """The supervisor's view: which workers run now (called after every start and exit)."""
    _write_json(directory / ROSTER, [vars(worker) for worker in workers])


def read_roster(directory: Path) -> list[RosterEntry]:
    """The workers running now; empty before the supervisor wrote the roster."""
    return [RosterEntry(**entry) for entry in _read_json(directory / ROSTER) or []]


def forget(directory: Path, pid: int) -> None:
    """Remove a worker's state file (the worker when it stops, the supervisor when it exited)."""
    try:
        _state_file(directory, pid).unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("cannot remove the state of worker %d: %s", pid, exc)


def serving(directory: Path) -> int:
    """How many workers of the roster listen (and so answer at least /healthz and /readyz)."""
    count = 0
    for entry in read_roster(directory):
        state = _read_json(_state_file(directory, entry.pid)) or {}
        count += bool(state.get("listening"))
    return count


def aggregate(directory: Path, langs: list[str]) -> tuple[bool, dict[str, Any]]:
    """(ready, details) over every worker: ready once each worker taking traffic has loaded its bots.

    Workers that take traffic are those listening from the start and those that reported listening;
    `langs` (every bot) is what a worker that has not reported yet is still waiting for.
    """
    workers: list[dict[str, Any]] = []
    waiting: set[str] = set()
    ready = True
    serving = 0
    for entry in read_roster(directory):
        state = _read_json(_state_file(directory, entry.pid)) or {}
        listening = bool(state.get("listening"))
        worker_ready = bool(state.get("ready"))
        takes_traffic = entry.listen == AT_START or listening
        if worker_ready and listening:
            serving += 1
        if takes_traffic and not worker_ready:
            ready = False
            waiting.update(state.get("waiting", langs))
        workers.append(
            {
                "pid": entry.pid,
                "index": entry.index,
                "state": "ready" if worker_ready else ("loading" if state else "starting"),
                "listening": listening,
                "takes_traffic": takes_traffic,
                "waiting": state.get("waiting", langs),
            }
        )
    if serving == 0:
        ready = False
    return ready, {"waiting": sorted(waiting), "workers": workers}


class WorkerState:
    """This worker's entry in the shared directory, and the gate it listens behind."""

    def __init__(self, directory: Path, *, listen_when_ready: bool) -> None:
        self.directory = directory
        self.listen_when_ready = listen_when_ready
        self.ready = asyncio.Event()  # every bot has a model
        self.loaded = asyncio.Event()  # the initial load is over, whatever its outcome
        self._listening = False
        self._waiting: list[str] = []

    def publish(self) -> None:
        state = {"ready": self.ready.is_set(), "listening": self._listening, "waiting": self._waiting}
        try:
            _write_json(_state_file(self.directory, os.getpid()), state)
        except OSError as exc:  # the others keep reading the last state: at worst 503, never a false 200
            logger.error("worker %d: cannot publish its state: %s", os.getpid(), exc)

    def listening(self) -> None:
        """The server calls this once its listener is bound."""
        self._listening = True
        self.publish()
        logger.info("worker %d: listening", os.getpid())

    async def may_listen(self, stop: asyncio.Event) -> bool:
        """True when the server may bind its listener now; False when `stop` came first.

        A gated worker waits for its initial load to be over: then it answers like its siblings
        (a bot whose model failed to load everywhere must not keep the replacement out for good).
        """
        if not self.listen_when_ready:
            return True
        logger.info("worker %d: loading its bots before taking traffic", os.getpid())
        loaded, stopped = asyncio.ensure_future(self.loaded.wait()), asyncio.ensure_future(stop.wait())
        await asyncio.wait({loaded, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (loaded, stopped):
            task.cancel()
        await asyncio.gather(loaded, stopped, return_exceptions=True)
        return self.loaded.is_set() and not stop.is_set()

    async def follow(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: publish this worker's state, then `ready` once every bot has a model."""
        self._waiting = app[appkeys.POOL].not_ready()
        self.publish()
        task = asyncio.create_task(self._until_ready(app), name="worker-ready")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        forget(self.directory, os.getpid())

    async def _until_ready(self, app: web.Application) -> None:
        await asyncio.wait({app[appkeys.STARTUP]})
        self.loaded.set()
        pool = app[appkeys.POOL]
        while waiting := pool.not_ready():  # a bot without a model yet: wait for a later swap
            if waiting != self._waiting:
                self._waiting = waiting
                self.publish()
            await asyncio.sleep(_READY_POLL_SECONDS)
        self._waiting = []
        self.ready.set()
        self.publish()
        logger.info("worker %d: every bot is loaded", os.getpid())


WORKER = web.AppKey("worker", WorkerState)


def install(app: web.Application, directory: Path, *, listen_when_ready: bool) -> WorkerState:
    """Make `app` a worker of the supervisor that owns `directory` (after create_app)."""
    state = WorkerState(directory, listen_when_ready=listen_when_ready)
    app[WORKER] = state
    app.cleanup_ctx.append(state.follow)
    return state
