"""Child processes of a benchmark: start, wait until they answer, measure RSS and CPU, stop for sure."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # the process is gone
        return None
    # The name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text.rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(parents.get(current, []))
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    """Sum of the resident set sizes of `pids` (shared pages counted once per process, like `ps`)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        total += int(fields[1]) * _PAGE
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time used so far by `pids`."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


class Service:
    """One child process with its output in a log file; `stop()` is idempotent and always reaps it.

    `owns` is a temporary folder of this process (its config, its model links) removed on stop; the log
    is removed too, unless the process ended by itself (then it is kept and its path reported).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        owns: Path | None = None,
    ) -> None:
        self.name = name
        self.owns = owns
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                list(argv), env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc.poll() is None else []

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        ended_by_itself = self.proc.poll() is not None
        if not ended_by_itself:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for pid in reversed(tree(self.proc.pid)):
                    _kill(pid)
                self.proc.wait()
        if self.owns is not None:
            shutil.rmtree(self.owns, ignore_errors=True)
        if not ended_by_itself:
            self.log.unlink(missing_ok=True)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """GET `url` on a new connection; (status, JSON body or None). Status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def wait_until(services: Sequence[Service], ready: Callable[[], bool], timeout: float) -> float:
    """Poll `ready` until true; seconds since the first service started. Raises on death or timeout."""
    first = min(service.started for service in services)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for service in services:
            service.check_alive()
        if ready():
            return time.perf_counter() - first
        time.sleep(0.05)
    logs = "\n".join(f"--- {s.name} ({s.log})\n{s.tail()}" for s in services)
    raise TimeoutError(f"not ready after {timeout:.0f}s:\n{logs}")


class Redis:
    """A private redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        self.service = Service("redis", argv)
        wait_until([self.service], lambda: self.command("PING") == "PONG", 10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> Any:
        """One command over a raw socket (inline protocol); the decoded reply, or None if unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall((" ".join(words) + "\r\n").encode())
                reply = sock.recv(65536).decode(errors="replace")
        except OSError:
            return None
        kind, rest = reply[:1], reply[1:].split("\r\n", 1)[0]
        return int(rest) if kind == ":" else rest

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
