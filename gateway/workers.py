"""Worker processes: N copies of the server sharing one port (SO_REUSEPORT) under a small supervisor.

Each worker is a full gateway (its own event loop and its own copy of every bot), so N workers use N
cores. The kernel spreads new connections over the workers' listening sockets. Conversations move
between workers freely because trackers live in Redis (settings refuse workers > 1 without it).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from gateway.errors import ConfigError
from gateway.settings import Settings

logger = logging.getLogger(__name__)

# A worker that dies sooner than this after it started is crash-looping: stop everything instead.
MIN_UPTIME_SECONDS = 10.0
_POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float


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
    with holder:
        port = int(holder.getsockname()[1])
        command = [*base, "serve", "--host", server.host, "--port", str(port), "--workers",
                   str(server.workers), "--no-train", "--worker-of", str(os.getpid())]  # fmt: skip
        logger.info("serving on http://%s:%d with %d workers", server.host, port, server.workers)
        return supervise(server.workers, command, server.shutdown_timeout_seconds)


def supervise(count: int, command: Sequence[str], shutdown_timeout: float) -> int:
    """Run `count` workers of `command` until a signal or a crash loop; returns the exit code."""
    workers: list[_Worker] = []
    stopping: list[float] = []  # when the first stop signal arrived

    def spawn(index: int) -> _Worker:
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which forwards one SIGTERM,
        # instead of every worker getting SIGINT and then SIGTERM in the middle of its cleanup.
        proc = subprocess.Popen(list(command), start_new_session=True)
        logger.info("worker %d started (pid %d)", index, proc.pid)
        return _Worker(index, proc, time.monotonic())

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
        workers.extend(spawn(index) for index in range(count))
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
                workers[position] = spawn(worker.index)
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
