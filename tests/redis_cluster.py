"""A private Redis Cluster for tests: redis-server nodes with --cluster-enabled yes on free ports, joined by
`redis-cli --cluster create`, in a temp folder that is removed when the cluster stops.

Nodes can be killed (SIGKILL, like a crashed host) and restarted: a restarted node finds its nodes.conf
and rejoins, as a replica of whoever took over its slots.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from redis.crc import key_slot

# Short enough for a quick failover, long enough that a busy 2-core machine does not fail nodes over.
NODE_TIMEOUT_MS = 2000


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too, so at most 55535."""
    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


def command(port: int, *args: str, timeout: float = 5.0) -> str:
    """One redis-cli command against 127.0.0.1:port; its output ('' when the node does not answer)."""
    try:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


class RedisClusterNodes:
    """`masters` primaries, each with `replicas_per_master` replicas, on 127.0.0.1."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        self.replicas_per_master = replicas_per_master
        self.ports: list[int] = []
        while len(self.ports) < masters * (1 + replicas_per_master):
            port = cluster_port()
            if not {port, port + 10000, port - 10000} & set(self.ports):
                self.ports.append(port)
        self.dir = Path(tempfile.mkdtemp(prefix="redis-cluster-test-"))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The URL of one node (any node will do for a cluster client)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> RedisClusterNodes:
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            replicas = ["--cluster-replicas", str(self.replicas_per_master)]
            created = subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, *replicas, "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica may take over however long it was cut off (no writes are lost in these tests).
                "--cluster-replica-validity-factor", "0",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(node_dir),
                "--logfile", str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.procs[port].poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        log = node_dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RuntimeError(f"redis-server on {port} did not start:\n{tail}")

    def running(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def healthy(self) -> bool:
        """Every node runs, sees the whole cluster, all slots served, each master with its replicas."""
        running = self.running()
        if len(running) != len(self.ports):
            return False
        for port in running:
            info = command(port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(self.ports)}" not in info:
                return False
        nodes = command(running[0], "CLUSTER", "NODES").splitlines()
        if any("fail" in line.split()[2] or "disconnected" in line for line in nodes):
            return False
        masters = [line for line in nodes if "master" in line.split()[2] and len(line.split()) > 8]
        replicas = [
            int(line.split()[1].split(":")[1].split("@")[0]) for line in nodes if "slave" in line.split()[2]
        ]
        if len(replicas) != len(masters) * self.replicas_per_master:
            return False
        # Replicas have their primary's data (a failover before the first sync would lose it).
        return all("master_link_status:up" in command(port, "INFO", "replication") for port in replicas)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Block until `healthy` (the bound only stops a broken cluster from hanging the tests)."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test Redis Cluster did not become healthy; logs in {self.dir}")
            time.sleep(0.1)

    def master_of(self, key: str) -> int:
        """The port of the primary that serves `key`'s slot now."""
        slot = key_slot(key.encode())
        for port in self.running():
            for line in command(port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for part in fields[8:]:
                    low, _, high = part.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return int(fields[1].split(":")[1].split("@")[0])
            break
        raise LookupError(f"no primary serves slot {slot} of {key}")

    def replica_of(self, master_port: int) -> int:
        """The port of a replica of the primary on `master_port`."""
        lines = command(master_port, "CLUSTER", "NODES").splitlines()
        master_id = next(line.split()[0] for line in lines if f":{master_port}@" in line.split()[1])
        for line in lines:
            fields = line.split()
            if "slave" in fields[2] and fields[3] == master_id:
                return int(fields[1].split(":")[1].split("@")[0])
        raise LookupError(f"the primary on {master_port} has no replica")

    def kill(self, port: int) -> None:
        """SIGKILL the node on `port`: no goodbye to clients or to the other nodes."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
