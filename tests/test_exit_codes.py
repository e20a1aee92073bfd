"""Exit codes CI can act on (README "Commands"): 0 ok, 1 a quality gate failed, 2 usage or
configuration error, 3 infrastructure unreachable.

Codes 1 and 2 of train/test/pipeline are asserted in tests/test_delivery.py (`test_clear_errors`, failed
stories and accuracy), of publish/models/activate/rollback/promote in tests/test_release.py; this file
adds serve's, and a real Redis that was running and is stopped for every command that needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import exit_codes
from gateway.errors import (
    ActiveModelConflict,
    BotFolderMissing,
    ConfigError,
    DeliveryError,
    EventBusError,
    ModelNotFound,
    ModelRejected,
    ModelStoreError,
    TrackerStoreUnavailable,
    TrainingError,
)
from gateway.settings import ROOT
from tests.support import RedisServer, free_port
from tests.test_delivery import gateway


def test_each_error_class_maps_to_its_exit_code() -> None:
    wrapped = DeliveryError("pipeline stopped at pl (publish): Redis at ... is unreachable")
    wrapped.__cause__ = EventBusError("Redis at ... is unreachable")
    gate = DeliveryError("pipeline stopped at pl (test): tests failed")
    gate.__cause__ = DeliveryError("tests failed")
    assert {
        "stories failed": exit_codes.for_error(DeliveryError("tests failed for pl")),
        "stale verdict": exit_codes.for_error(ModelRejected("changed after it was tested")),
        "training failed": exit_codes.for_error(TrainingError("rasa train failed")),
        "pipeline gate": exit_codes.for_error(gate),
        "raced by another admin": exit_codes.for_error(ActiveModelConflict("no longer")),
        "bad setting": exit_codes.for_error(ConfigError("server.port")),
        "no bot folder": exit_codes.for_error(BotFolderMissing("bot folder x does not exist")),
        "no such model": exit_codes.for_error(ModelNotFound("model x not found")),
        "redis down": exit_codes.for_error(EventBusError("unreachable")),
        "store down": exit_codes.for_error(ModelStoreError("endpoint")),
        "trackers down": exit_codes.for_error(TrackerStoreUnavailable("redis")),
        "pipeline publish": exit_codes.for_error(wrapped),
    } == {
        "stories failed": 1,
        "stale verdict": 1,
        "training failed": 1,
        "pipeline gate": 1,
        "raced by another admin": 1,
        "bad setting": 2,
        "no bot folder": 2,
        "no such model": 2,
        "redis down": 3,
        "store down": 3,
        "trackers down": 3,
        "pipeline publish": 3,
    }


@pytest.fixture(scope="module")
def stopped_redis() -> Iterator[str]:
    """The URL of a real redis-server that ran on its port and was stopped (connections refused)."""
    server = RedisServer().start()
    server.stop()
    yield server.url


@pytest.mark.parametrize(
    "args",
    [
        ("models", "en"),
        ("publish", "en"),
        ("activate", "en", "20240101T000000Z-0123456789ab.tar.gz"),
        ("rollback", "en"),
        ("promote", "en"),
        ("pipeline", "--lang", "en"),  # checks Redis and the store before minutes of training
    ],
)
def test_commands_exit_3_when_redis_is_down(
    args: tuple[str, ...], stopped_redis: str, models_dir: Path, tmp_path: Path
) -> None:
    env = {
        "GATEWAY_REDIS_URL": stopped_redis,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_MODELS_PATH": str(tmp_path / "store"),
    }
    done = gateway(*args, env=env)
    assert done.returncode == exit_codes.UNREACHABLE, done.stdout + done.stderr
    assert f"Redis at {stopped_redis} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--no-train", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_serve_exits_2_on_a_bad_setting() -> None:
    """Exit 0 after SIGTERM is asserted in tests/test_shutdown.py; exit 2 on a port someone else holds
    in tests/test_workers.py. Serving never exits 3: without Redis it answers "temporarily
    unavailable" and reconnects by itself (tests/test_redis_webhook.py)."""
    bad = serve("--port", str(free_port()), env={"GATEWAY_SERVER_DEADLINE_SECONDS": "soon"})
    assert bad.returncode == exit_codes.USAGE, bad.stderr
    assert "configuration error: invalid setting server.deadline_seconds='soon'" in bad.stderr
    assert "Traceback" not in bad.stderr
