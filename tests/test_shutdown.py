"""Graceful shutdown of a real gateway process: SIGTERM stops accepting, drains in-flight requests, exits 0.

A request is held in flight by sending its body in two parts: the handler is running (reading the
body) when SIGTERM arrives, and finishes only when the test sends the rest.
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from pathlib import Path

from tests.support import GatewayProcess, builder_request, free_port, responses


def partial_request(port: int, body: bytes, split: int) -> socket.socket:
    """Open a connection and send the headers and the first `split` bytes of a webhook POST."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        "POST /webhook/google HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:split])
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the HTTP/1.1 response on `sock` (the server closes the connection)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def healthz(gw: GatewayProcess) -> int:
    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=10) as resp:
        return int(resp.status)


def wait_until_refused(port: int) -> bool:
    """True once new connections to `port` are refused (the listening socket is closed)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_the_in_flight_request_then_exits_0(models_dir: Path) -> None:
    port = free_port()
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "120",
    }
    with GatewayProcess.start(port, env) as gw:
        body = json.dumps(builder_request("hello", "en-US")).encode()
        sock = partial_request(port, body, len(body) // 2)
        try:
            # A request on another connection, answered after the first one's headers were read.
            assert healthz(gw) == 200
            gw.proc.send_signal(signal.SIGTERM)
            assert wait_until_refused(port), "the gateway kept accepting connections after SIGTERM"
            assert gw.proc.poll() is None, "the gateway exited with a request in flight"

            sock.sendall(body[len(body) // 2 :])
            status, payload = read_response(sock)
        finally:
            sock.close()
        assert status == 200
        answer = json.loads(payload)
        assert answer["prompt"]["firstSimple"]["speech"] in responses("en", "utter_greet")
        assert gw.proc.wait(timeout=120) == 0
        log = gw.log.read_text()
        assert "1 request(s) in flight" in log
        assert "drained: no request in flight" in log
        assert "shutdown complete" in log


def test_sigterm_cuts_off_requests_that_outlive_the_shutdown_timeout(tmp_path: Path) -> None:
    port = free_port()
    env = {
        # No models: the process starts at once; the stuck request never reaches a bot anyway.
        "GATEWAY_BOTS_MODELS_DIR": str(tmp_path / "no-models"),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "1",
    }
    with GatewayProcess.start(port, env, wait_ready=False) as gw:
        deadline = time.monotonic() + 120
        while True:
            try:
                assert healthz(gw) == 200
                break
            except OSError:
                assert time.monotonic() < deadline, gw.log.read_text()
                time.sleep(0.2)
        body = json.dumps(builder_request("hello", "en-US")).encode()
        sock = partial_request(port, body, 10)
        try:
            assert healthz(gw) == 200
            gw.proc.send_signal(signal.SIGTERM)
            # The client never sends the rest: the gateway gives up after the timeout and exits cleanly.
            assert gw.proc.wait(timeout=120) == 0
            try:
                leftover = sock.recv(65536)
            except ConnectionResetError:
                leftover = b""
            assert leftover == b""  # closed without an answer
        finally:
            sock.close()
        log = gw.log.read_text()
        assert "still running after 1.0s: cutting them off" in log
        assert "shutdown complete" in log
