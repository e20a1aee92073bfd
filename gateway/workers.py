"""Worker processes: N copies of the server sharing one port (SO_REUSEPORT) under a small supervisor.

Each worker is a full gateway (its own event loop and its own copy of every bot), so N workers use N
cores. The kernel spreads new connections over the workers' listening sockets. Conversations move
between workers freely because trackers live in Redis (settings refuse workers > 1 without it).

The supervisor owns a private directory (PROMETHEUS_MULTIPROC_DIR for its workers, removed when it
stops): the workers' metrics files, merged by whichever worker answers /metrics, and the roster and
states behind /readyz (gateway/worker_state.py). A worker that replaces a dead one listens only once its
bots are loaded, so webhooks keep going to the live workers meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from gateway import worker_state
from gateway.errors import ConfigError
from gateway.settings import Settings

logger = logging.getLogger(__name__)

# A worker that dies sooner than this after it started is crash-looping: stop everything instead.
MIN_UPTIME_SECONDS = 10.0
_POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1
_DIRECTORY_PREFIX = "gateway-workers-"


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    listen: str  # worker_state.AT_START or WHEN_READY


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket holding `port` (a free one when 0) with SO_REUSEPORT, so every worker can bind it too.

    Bound but never listening: it receives no connections, it only keeps the number ours. Close it
    when the workers are gone.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run_supervisor(settings: Settings, global_args: Sequence[str], *, train: bool) -> int:
    """`gateway serve` with server.workers > 1: train missing bots, hold the port, supervise the workers.

    `global_args` are the options given before `serve` (--config, --env), passed on to every child.
    """
    base = [sys.executable, "-m", "gateway", *global_args]
    if train:
        # In a child: training imports Rasa and TensorFlow, which the supervisor would keep for nothing.
        done = subprocess.run([*base, "train", "all"], check=False)
        if done.returncode != 0:  # the child said why; its exit code says what kind of failure
            return done.returncode
    server = settings.server
    try:
        holder = reserve_port(server.host, server.port)
    except OSError as exc:
        from gateway.server import listen_error

        raise ConfigError(listen_error(server.host, server.port, exc)) from exc
    with holder, _reserve_management(settings):
        port = int(holder.getsockname()[1])
        command = [*base, "serve", "--host", server.host, "--port", str(port), "--workers",
                   str(server.workers), "--no-train", "--worker-of", str(os.getpid())]  # fmt: skip
        logger.info("serving on http://%s:%d with %d workers", server.host, port, server.workers)
        directory = private_directory(Path(tempfile.gettempdir()))
        try:
            return supervise(server.workers, command, server.shutdown_timeout_seconds, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _reserve_management(settings: Settings) -> Iterator[None]:
    """Hold the management port too (every worker binds it with SO_REUSEPORT), when there is one."""
    host, port = settings.server.management_host, settings.server.management_port
    if host is None or port is None:
        yield
        return
    try:
        holder = reserve_port(host, port)
    except OSError as exc:
        from gateway.server import listen_error

        raise ConfigError(listen_error(host, port, exc, "management")) from exc
    with holder:
        logger.info("management on http://%s:%d", host, port)
        yield


def private_directory(parent: Path) -> Path:
    """A new directory for this supervisor's workers, named after its pid; the directories of
    supervisors that are gone (killed with SIGKILL, so they could not clean up) are removed first."""
    for stale in parent.glob(f"{_DIRECTORY_PREFIX}*-*"):
        pid = stale.name.removeprefix(_DIRECTORY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)) and stale.stat().st_uid == os.getuid():
            logger.info("removing %s, left by a supervisor that is gone", stale)
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_DIRECTORY_PREFIX}{os.getpid()}-", dir=parent))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def supervise(count: int, command: Sequence[str], shutdown_timeout: float, directory: Path) -> int:
    """Run `count` workers of `command` until a signal or a crash loop; returns the exit code.

    `directory`: private to this supervisor (metrics files, roster, worker states); the caller removes it.
    """
    workers: list[_Worker] = []
    stopping: list[float] = []  # when the first stop signal arrived
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}

    def spawn(index: int, listen: str) -> _Worker:
        args = [*command, "--worker-dir", str(directory)]
        if listen == worker_state.WHEN_READY:
            args.append("--listen-when-ready")
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which forwards one SIGTERM,
        # instead of every worker getting SIGINT and then SIGTERM in the middle of its cleanup.
        proc = subprocess.Popen(args, start_new_session=True, env=env)
        logger.info("worker %d started (pid %d)", index, proc.pid)
        return _Worker(index, proc, time.monotonic(), listen)

    def publish_roster() -> None:
        running = [worker for worker in workers if worker.proc.returncode is None]
        try:
            worker_state.write_roster(
                directory, [worker_state.RosterEntry(w.proc.pid, w.index, w.listen) for w in running]
            )
        except OSError as exc:  # /readyz keeps the last roster: at worst 503 for a dead worker
            logger.error("cannot write the worker roster in %s: %s", directory, exc.strerror)

    def forget(worker: _Worker) -> None:
        # Its counters and histograms stay (totals never go down); its live gauges and state go.
        mark_process_dead(worker.proc.pid, str(directory))
        worker_state.forget(directory, worker.proc.pid)

    def stop_all(signum: int, frame: FrameType | None = None) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            logger.info("supervisor: %s, stopping %d workers", signal.Signals(signum).name, len(workers))
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        # The first workers listen at once, so /healthz answers while they load (and /readyz says 503).
        workers.extend(spawn(index, worker_state.AT_START) for index in range(count))
        publish_roster()
        while any(worker.proc.poll() is None for worker in workers):
            time.sleep(_POLL_SECONDS)
            if stopping:
                if time.monotonic() - stopping[0] > shutdown_timeout + 5.0:
                    _kill_remaining(workers)
                continue
            for position, worker in enumerate(workers):
                status = worker.proc.poll()
                if status is None:
                    continue
                publish_roster()  # first out of the roster, so /readyz never waits for a dead worker
                forget(worker)
                uptime = time.monotonic() - worker.started
                if uptime < MIN_UPTIME_SECONDS:
                    logger.error(
                        "worker %d (pid %d) exited with %s after %.1fs; stopping the others",
                        worker.index, worker.proc.pid, status, uptime,
                    )  # fmt: skip
                    code = status if status > 0 else 1  # killed by a signal: plain failure
                    stop_all(signal.SIGTERM)
                    break
                logger.error("worker %d (pid %d) exited with %s; starting a new one", worker.index,
                             worker.proc.pid, status)  # fmt: skip
                # Listen once loaded while others listen; with none listening, at once (503 on /readyz).
                others_listen = worker_state.serving(directory) > 0
                workers[position] = spawn(
                    worker.index, worker_state.WHEN_READY if others_listen else worker_state.AT_START
                )
                publish_roster()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _kill_remaining(workers)
    if code == 0 and any(worker.proc.returncode not in (0, -signal.SIGTERM) for worker in workers):
        code = 1
    logger.info("supervisor: all workers stopped")
    return code


def _kill_remaining(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.proc.poll() is None:
            logger.error("worker %d (pid %d) did not stop in time; killing it", worker.index, worker.proc.pid)
            worker.proc.kill()
            worker.proc.wait()


def become_worker(supervisor_pid: int) -> None:
    """Make this process end with its supervisor, even when the supervisor is killed with SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != supervisor_pid:  # the supervisor died before we asked to follow it
        raise SystemExit(1)
