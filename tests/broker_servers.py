"""Private RabbitMQ and PostgreSQL servers for the event broker tests (free ports, temporary dirs).

Never the machine's shared servers on their standard ports: the tests stop and restart these. A missing
server binary fails the test with what to install; it never skips (CI runs on this kind of machine).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support import free_port


def _find(name: str, *folders: str) -> str | None:
    for folder in folders:
        for candidate in sorted(glob.glob(os.path.join(folder, name)), reverse=True):
            if os.access(candidate, os.X_OK):
                return candidate
    return shutil.which(name)


class RabbitMQServer:
    """`rabbitmq-server` as its own Erlang node (unique name, own ports, cookie and data in a temp dir)."""

    def __init__(self) -> None:
        server = _find("rabbitmq-server", "/usr/lib/rabbitmq/bin")
        ctl = _find("rabbitmqctl", "/usr/lib/rabbitmq/bin")
        if server is None or ctl is None:
            pytest.fail(
                "rabbitmq-server/rabbitmqctl not found: the event broker tests need RabbitMQ installed "
                "(Debian/Ubuntu: apt-get install rabbitmq-server); they start a private node themselves"
            )
        self.server, self.ctl = server, ctl
        self.port = free_port()
        self.node = f"gwtest-{uuid.uuid4().hex[:10]}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="rabbitmq-test-"))
        (self.dir / "home").mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            # The Erlang cookie lives in $HOME: a private one, readable by the node and rabbitmqctl.
            "HOME": str(self.dir / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),  # absent: defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [self.ctl, "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> RabbitMQServer:
        with (self.dir / "server.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [self.server], env=self.env, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while True:
            # Fails at once until the node registered with epmd; then waits for the boot to finish.
            done = self._ctl("await_startup", "--timeout", "60")
            if done.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"rabbitmq-server {self.node} did not start ({done.stderr.decode()[-500:]}); "
                    f"see {self.dir / 'server.out'} and {self.dir / 'log'}"
                )
            time.sleep(0.5)

    def pause(self) -> None:
        """Stop RabbitMQ itself (connections closed, port closed), keeping its Erlang node: an outage
        that costs seconds, not a node boot."""
        done = self._ctl("stop_app")
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl stop_app failed: {done.stderr.decode()[-500:]}")

    def resume(self) -> None:
        done = self._ctl("start_app")
        if done.returncode:
            raise RuntimeError(f"rabbitmqctl start_app failed: {done.stderr.decode()[-500:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._ctl("stop")
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, sockets in its own dir."""

    def __init__(self) -> None:
        bins = "/usr/lib/postgresql/*/bin"
        initdb, pg_ctl = _find("initdb", bins), _find("pg_ctl", bins)
        if initdb is None or pg_ctl is None:
            pytest.fail(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: the sql event broker test needs "
                "them (Debian/Ubuntu: apt-get install postgresql); it starts a private cluster itself"
            )
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="postgres-test-"))
        self.data = self.dir / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres system user
            runuser = shutil.which("runuser")
            if runuser is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
                pytest.fail("running as root needs `runuser` and a `postgres` user to run PostgreSQL")
            shutil.chown(self.dir, "postgres")
            self.prefix = [runuser, "-u", "postgres", "--"]
        self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, timeout=120, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.decode()[-800:]}")

    def endpoint(self) -> dict[str, object]:
        """Rasa's sql event_broker entry for this server."""
        return {
            "type": "sql",
            "dialect": "postgresql",
            "url": "127.0.0.1",
            "port": self.port,
            "db": "postgres",
            "username": "postgres",
            "password": "unused-with-trust-auth",
        }

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
