"""Test helpers: free ports, gateway subprocesses and Actions on Google request builders."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.settings import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    """A `python -m gateway serve` child process on 127.0.0.1:port."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, port: int, env: Mapping[str, str], ready_timeout: float = 180.0, wait_ready: bool = True
    ) -> Iterator[GatewayProcess]:
        log = Path(tempfile.mkstemp(prefix=f"gateway-{port}-", suffix=".log")[1])
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        gw = cls(port, proc, log)
        try:
            if wait_ready:
                gw.wait_ready(ready_timeout)
            yield gw
        finally:
            gw.stop()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway on {self.port} not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_script(script: str, *args: str, timeout: float = 900) -> Any:
    """Run `script` in a fresh interpreter (TensorFlow quiet), check it succeeded; its last line, as JSON."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def builder_request(
    text: str = "",
    locale: str | None = "en-US",
    session_id: str | None = None,
    intent: str = "actions.intent.TEXT",
    handler: str = "main",
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Actions Builder conversation webhook request, shaped like Google's documented sample."""
    body: dict[str, Any] = {
        "handler": {"name": handler},
        "intent": {"name": intent, "params": {}, "query": text},
        "scene": {"name": "Conversation", "slotFillingStatus": "UNSPECIFIED", "slots": {}},
        "session": {
            "id": session_id or f"session-{uuid.uuid4().hex}",
            "params": params or {},
            "typeOverrides": [],
        },
        "user": {"params": {}, "verificationStatus": "VERIFIED"},
        "home": {"params": {}},
        "device": {"capabilities": ["SPEECH", "RICH_RESPONSE", "LONG_FORM_AUDIO"]},
    }
    if locale is not None:
        body["user"]["locale"] = locale
    return body


def responses(lang: str, name: str) -> list[str]:
    """The texts a bot's domain defines for response `name` (what a correct answer must be one of)."""
    domain = yaml.safe_load((ROOT / "bots" / lang / "domain.yml").read_text(encoding="utf-8"))
    return [variant["text"] for variant in domain["responses"][name]]


def post_json(url: str, body: Any, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """Blocking JSON POST (for use outside an event loop)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class RedisServer:
    """A private redis-server on a free port; tests may stop and restart it (same port) for faults."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class S3Server:
    """moto's standalone S3-compatible server on a free port, spoken to over real HTTP."""

    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Gateway settings (as environment) pointing the model store at this server."""
        return {
            "GATEWAY_MODELS_STORE": "s3",
            "GATEWAY_MODELS_S3_ENDPOINT_URL": self.url,
            "GATEWAY_MODELS_S3_ACCESS_KEY_ID": "testing",
            "GATEWAY_MODELS_S3_SECRET_ACCESS_KEY": "testing",
        }

    def overrides(self) -> dict[str, str]:
        """The same, as load_settings overrides."""
        return {
            "models.store": "s3",
            "models.s3_endpoint_url": self.url,
            "models.s3_access_key_id": "testing",
            "models.s3_secret_access_key": "testing",
        }

    def start(self) -> S3Server:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll `check` (sync or async) until it is true; fail after `timeout` seconds (not a timing assert:
    the bound only stops a broken test from hanging)."""
    import asyncio
    import inspect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.05)


def train_variant(
    lang: str,
    response: str,
    greeting: str,
    cache: Path,
    config_name: str = "config.yml",
    image: str | None = None,
) -> Path:
    """A copy of bot `lang` whose `response` says only `greeting` (and shows `image`, when given), trained
    once per content hash into `cache/variants/<lang>-<config>-<hash of the text>` (a distinguishable
    second model for swap tests)."""
    import hashlib
    import shutil

    from gateway.training import train_bot

    text = f"{response}\0{greeting}" + (f"\0{image}" if image else "")
    tag = hashlib.sha256(text.encode()).hexdigest()[:8]
    with tempfile.TemporaryDirectory(prefix=f"variant-{lang}-") as tmp:
        project = Path(tmp) / lang
        shutil.copytree(ROOT / "bots" / lang, project, ignore=shutil.ignore_patterns("tests", "results"))
        domain_file = project / "domain.yml"
        domain = yaml.safe_load(domain_file.read_text(encoding="utf-8"))
        domain["responses"][response] = [{"text": greeting, **({"image": image} if image else {})}]
        domain_file.write_text(yaml.safe_dump(domain, allow_unicode=True, sort_keys=False), encoding="utf-8")
        folder = cache / "variants" / f"{lang}-{Path(config_name).stem}-{tag}"
        return train_bot(lang, project, folder, config_name=config_name).path


class ActionServer:
    """`python -m rasa_sdk --actions actions` in bots/en on a fixed port (restartable, pausable)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"action-server-{port}-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def start(self) -> ActionServer:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.port)],
                cwd=ROOT / "bots" / "en",
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"action server exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise TimeoutError(f"action server not up:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
