"""A gateway for the console's tests: Redis, a management listener, an admin token, two English models."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.storage.model_store import sha256_file
from tests.conftest import LANGS, model_cache
from tests.support import GatewayProcess, RedisServer, free_port, train_variant

TOKEN = "console-tests-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW_GREETING = "Hi from the second English model."
# The second model greets with a picture too (the simulator's image card). example.com is reserved: no
# real image lives there; the browser tests answer for it (see test_console_browser.py).
GREETING_IMAGE = "https://example.com/console-tests/greeting.svg"


@dataclass(frozen=True)
class ConsoleWorld:
    gw: GatewayProcess
    redis: RedisServer
    management: str  # base URL of the management listener: /admin and /console live there
    v1: str  # the English model answering at start
    v2: str  # another stored English model
    corrupt: str  # a truncated English archive: activating it is refused
    others: tuple[GatewayProcess, ...] = ()  # more replicas sharing the Redis and the model store


CORRUPT = "19980101T000000Z-corrupt00000.tar.gz"


def models_with_variant(models: dict[str, Path], folder: Path) -> tuple[Path, str]:
    """A models dir with every current model plus a second English one (older name: v1 stays current)."""
    v2 = train_variant("en", "utter_greet", NEW_GREETING, model_cache(), image=GREETING_IMAGE)
    for lang in LANGS:
        (folder / lang).mkdir(parents=True)
        shutil.copy2(models[lang], folder / lang / models[lang].name)
    older = "19990101T000000Z-" + v2.name.split("-", 1)[1]
    shutil.copy2(v2, folder / "en" / older)
    data = v2.read_bytes()
    (folder / "en" / CORRUPT).write_bytes(data[: len(data) // 2])  # a truncated upload
    # Test records (`gateway test` verdicts) beside the English models: v2 passed, v1 failed.
    for name, passed in ((older, True), (models["en"].name, False)):
        record = {
            "passed": passed,
            "sha256": sha256_file(folder / "en" / name),
            "failures": [] if passed else ["stories: 1 of 9 failed"],
            "tested_at": "2026-01-01T00:00:00Z",
        }
        stem = name.removesuffix(".tar.gz")
        (folder / "en" / f"{stem}.tests.json").write_text(json.dumps(record), encoding="utf-8")
    return folder, older


@contextlib.contextmanager
def console_world(
    models: dict[str, Path], folder: Path, replicas: int = 1, extra_env: Mapping[str, str] | None = None
) -> Iterator[ConsoleWorld]:
    """The gateway (replica `console-a`) and `replicas - 1` more (`console-b`...) on one Redis and store."""
    models_dir, v2 = models_with_variant(models, folder)
    management_port = free_port()
    redis = RedisServer().start()
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_ADMIN_TOKEN": TOKEN,
        "GATEWAY_REDIS_URL": redis.url,
        **(extra_env or {}),
    }
    management = {
        "GATEWAY_SERVER_MANAGEMENT_HOST": "127.0.0.1",
        "GATEWAY_SERVER_MANAGEMENT_PORT": str(management_port),
    }
    try:
        with contextlib.ExitStack() as stack:
            gw = stack.enter_context(
                GatewayProcess.start(
                    free_port(), {**env, **management, "GATEWAY_SERVER_REPLICA_NAME": "console-a"}
                )
            )
            others = tuple(
                stack.enter_context(
                    GatewayProcess.start(
                        free_port(), {**env, "GATEWAY_SERVER_REPLICA_NAME": f"console-{chr(ord('a') + n)}"}
                    )
                )
                for n in range(1, replicas)
            )
            yield ConsoleWorld(
                gw,
                redis,
                f"http://127.0.0.1:{management_port}",
                models["en"].name,
                v2,
                CORRUPT,
                others,
            )
    finally:
        redis.stop()
