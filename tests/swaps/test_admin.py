"""Admin model API: list, activate, roll back; bearer token; embedded and Redis + S3 modes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import appkeys, metrics
from gateway.app import create_app
from gateway.settings import load_settings
from tests.support import eventually
from tests.swaps.conftest import (
    ADMIN_TOKEN,
    NEW_GREETING,
    OLD_GREETINGS,
    EnModels,
    SwapWorld,
    admin_headers,
    answering,
    ready,
    say,
)


async def admin(
    client: TestClient, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN
) -> tuple[int, Any]:
    headers = admin_headers(token) if token else {}
    resp = await client.request(method, path, json=body, headers=headers)
    return resp.status, await resp.json()


async def test_admin_needs_the_bearer_token(world: SwapWorld, gateway_client: TestClient) -> None:
    def failures(reason: str) -> float:
        labels = {"kind": "admin", "reason": reason}
        return metrics.REGISTRY.get_sample_value("gateway_auth_failures_total", labels) or 0.0

    missing, wrong = failures("missing_token"), failures("wrong_token")
    status, body = await admin(gateway_client, "GET", "/admin/models", token=None)
    assert (status, body) == (401, {"error": "missing bearer token"})
    v2 = {"model": world.models.v2.name}
    status, body = await admin(gateway_client, "POST", "/admin/models/en/activate", v2, "x" * 40)
    assert (status, body) == (401, {"error": "wrong bearer token"})
    status, _ = await admin(gateway_client, "POST", "/admin/models/en/rollback", token="Basic abc")
    assert status == 401
    assert (failures("missing_token"), failures("wrong_token")) == (missing + 1, wrong + 2)
    assert await answering(gateway_client, "en") == world.models.v1.name  # nothing happened


async def test_list_shows_answering_active_and_stored_models(
    world: SwapWorld, gateway_client: TestClient
) -> None:
    status, body = await admin(gateway_client, "GET", "/admin/models")
    assert status == 200
    assert body["store"] == "s3"
    en = body["models"]["en"]
    models = world.models
    assert (en["model"], en["sha256"], en["state"]) == (models.v1.name, models.ref(models.v1).sha256, "ready")
    assert en["active"]["model"] == models.v1.name
    assert [(m["model"], m["answering"]) for m in en["available"]] == [
        (models.v1.name, True),
        (models.v2.name, False),
        (models.corrupt.name, False),
    ]
    assert all(m["sha256"] and m["size"] > 0 for m in en["available"])
    assert body["models"]["pl"]["available"] == [] and body["models"]["pl"]["model"]  # local fallback
    assert en["loaded_at"] and en["last_error"] is None


async def test_activate_and_roll_back_across_the_store(world: SwapWorld, gateway_client: TestClient) -> None:
    client, models = gateway_client, world.models
    status, body = await admin(client, "POST", "/admin/models/en/activate", {"model": models.v2.name})
    assert status == 200, body
    assert (body["model"], body["sha256"]) == (models.v2.name, models.ref(models.v2).sha256)
    assert body["active"]["model"] == models.v2.name
    assert [h["model"] for h in body["active"]["history"]] == [models.v1.name]
    assert await say(client, "hello") == NEW_GREETING
    record = await world.active().get("en")  # durable, for processes started later
    assert record is not None and record.current.model == models.v2.name

    status, body = await admin(client, "POST", "/admin/models/en/activate", {"model": models.corrupt.name})
    assert status == 422 and models.corrupt.name in body["error"]
    assert await say(client, "hello") == NEW_GREETING  # refused: v2 keeps answering
    record = await world.active().get("en")
    assert record is not None and record.current.model == models.v2.name  # nothing announced

    status, body = await admin(client, "POST", "/admin/models/en/rollback")
    assert status == 200, body
    assert body["model"] == models.v1.name and body["active"]["history"] == []
    assert await say(client, "hello") in OLD_GREETINGS
    status, body = await admin(client, "POST", "/admin/models/en/rollback")
    assert status == 409 and "nothing to roll back" in body["error"]
    assert await answering(client, "en") == models.v1.name


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/admin/models/en/activate", {"model": "../../etc/passwd.tar.gz"}, 400),
        ("/admin/models/en/activate", {"model": "models/en/x.tar.gz"}, 400),
        ("/admin/models/en/activate", {"model": 42}, 400),
        ("/admin/models/en/activate", {"model": "x.tar.gz", "sha256": "zz"}, 400),
        ("/admin/models/en/activate", {}, 400),
        ("/admin/models/en/activate", ["x.tar.gz"], 400),
        ("/admin/models/en/activate", {"model": "20300101T000000Z-nothere00000.tar.gz"}, 404),
        ("/admin/models/xx/activate", {"model": "x.tar.gz"}, 404),
        ("/admin/models/xx/rollback", None, 404),
    ],
)
async def test_bad_admin_requests_get_a_json_reason(
    world: SwapWorld, gateway_client: TestClient, path: str, body: Any, status: int
) -> None:
    got, answer = await admin(gateway_client, "POST", path, body)
    assert got == status
    assert isinstance(answer["error"], str) and answer["error"]
    assert await answering(gateway_client, "en") == world.models.v1.name


async def test_activate_on_one_gateway_swaps_the_others_through_the_event(
    world: SwapWorld, gateway_client: TestClient, aiohttp_client: Any
) -> None:
    other: TestClient = await aiohttp_client(create_app(world.settings))
    await ready(other)
    await eventually(lambda: other.app[appkeys.EVENTS].connected, what="second gateway subscribed")
    status, _ = await admin(
        gateway_client, "POST", "/admin/models/en/activate", {"model": world.models.v2.name}
    )
    assert status == 200
    await eventually(lambda: _answers(other, NEW_GREETING), what="the other gateway swapped")


async def _answers(client: TestClient, text: str) -> bool:
    return await say(client, "hello") == text


@pytest.fixture
def local_store(tmp_path: Path, en_models: EnModels, model_paths: dict[str, Path]) -> Path:
    """A local model folder as `gateway train` leaves it: every bot, plus the retrained English one."""
    for lang, path in model_paths.items():
        (tmp_path / lang).mkdir()
        shutil.copy(path, tmp_path / lang / path.name)
    shutil.copy(en_models.v2, tmp_path / "en" / en_models.v2.name)
    return tmp_path


async def test_embedded_mode_activates_and_rolls_back_from_the_local_folder(
    local_store: Path, en_models: EnModels, aiohttp_client: Any
) -> None:
    settings = load_settings(
        overrides={
            "bots.models_dir": str(local_store),
            "admin.token": ADMIN_TOKEN,
            "monitor.interval_seconds": 0,
        }
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    await ready(client)
    # No Redis, nothing recorded: the model trained from the current sources answers.
    assert await answering(client, "en") == en_models.v1.name
    status, body = await admin(client, "GET", "/admin/models")
    assert status == 200 and body["store"] == "local" and body["models"]["en"]["active"] is None
    status, body = await admin(client, "POST", "/admin/models/en/activate", {"model": en_models.v2.name})
    assert status == 200, body
    assert [h["model"] for h in body["active"]["history"]] == [en_models.v1.name]
    assert await say(client, "hello") == NEW_GREETING
    status, body = await admin(client, "POST", "/admin/models/en/rollback")
    assert status == 200 and body["model"] == en_models.v1.name
    assert await say(client, "hello") in OLD_GREETINGS


async def test_admin_routes_are_off_without_a_token(settings: Any, aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(create_app(settings))
    for method, path in (("GET", "/admin/models"), ("POST", "/admin/models/en/rollback")):
        resp = await client.request(method, path, headers=admin_headers())
        assert resp.status == 404
