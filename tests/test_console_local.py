"""Without admin.token the console is not served, except for `gateway serve --local-console` (what
`make run` runs): a one-time URL printed at start whose token is accepted only from loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import ROOT
from tests.support import GatewayProcess, free_port

URL_LINE = re.compile(
    r"console \(this run, from this machine only\): (http://127\.0\.0\.1:(\d+)/console/#token=(\S+))"
)


def own_address() -> str:
    """This machine's address on its default route (not loopback): what another host would connect to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET: picks the route, sends nothing
        return str(probe.getsockname()[0])


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def local_gateway(models_dir: Path) -> Iterator[tuple[int, str]]:
    """`gateway serve --local-console` on all interfaces, no admin token; yields (port, printed token)."""
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("GATEWAY_ADMIN_TOKEN", None)
    cmd = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--local-console",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    gw = GatewayProcess(port, proc, Path(os.devnull))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the process exits
            match = URL_LINE.search(line)
            if match:
                assert int(match.group(2)) == port
                break
        else:
            pytest.fail(f"gateway exited with {proc.wait()} without printing the console URL")
        # Keep reading its output, so a full pipe never blocks the gateway's logging.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        gw.wait_ready(180)
        yield port, match.group(3)
    finally:
        gw.stop()


def test_the_printed_token_opens_the_console_from_this_machine_only(local_gateway: tuple[int, str]) -> None:
    port, token = local_gateway
    local = f"http://127.0.0.1:{port}"
    status, page = get(local + "/console/")
    assert status == 200 and b'src="app.js"' in page
    assert get(local + "/admin/status", token)[0] == 200
    assert get(local + "/admin/conversations/en", token)[0] == 200
    assert get(local + "/admin/status", "x" * 32)[0] == 401
    assert get(local + "/admin/status")[0] == 401

    remote = f"http://{own_address()}:{port}"
    assert get(remote + "/healthz")[0] == 200  # reachable from elsewhere ...
    status, body = get(remote + "/admin/status", token)
    assert status == 401 and b"admin routes are off" in body  # ... but the token is not accepted there


def test_embedded_the_replica_list_is_this_process(local_gateway: tuple[int, str]) -> None:
    port, token = local_gateway
    status, raw = get(f"http://127.0.0.1:{port}/admin/replicas", token)
    assert status == 200, raw
    body = json.loads(raw)
    assert (body["shared"], body["error"]) == (False, None)  # no Redis: nothing to share, nothing missing
    [record] = body["replicas"]
    assert record["replica"] == body["self"] == f"{socket.gethostname()}:{record['replica'].split(':')[-1]}"
    for lang in ("en", "pl", "de"):
        assert record["models"][lang]["state"] == "ready"
        assert record["models"][lang]["model"].endswith(".tar.gz")


def test_without_an_admin_token_there_is_no_console(gateway: GatewayProcess) -> None:
    paths = ("/console/", "/console/app.js", "/admin/conversations/en", "/admin/swaps", "/admin/replicas")
    for path in paths:
        assert get(gateway.url + path)[0] == 404, path
