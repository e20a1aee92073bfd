"""Signed models through real swaps: a gateway that trusts one Ed25519 key, moto S3 over HTTP, real Redis.

Only a model signed by the trusted key goes live; an unsigned one, one signed by another key and one whose
bytes changed after signing are refused with the reason on /readyz while the old model keeps answering.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import appkeys
from gateway.agents.signing import Ed25519Signer, generate_key_pair, load_signing_key
from gateway.app import create_app
from gateway.settings import load_settings
from gateway.storage.active_models import RedisActiveModels
from gateway.storage.model_store import sha256_file
from gateway.storage.redis_client import make_client
from gateway.storage.s3_model_store import S3ModelStore
from tests.support import RedisServer, S3Server, eventually
from tests.swaps.conftest import NEW_GREETING, OLD_GREETINGS, EnModels, SwapWorld, ready, say, swaps


def sign(signer: Ed25519Signer, path: Path, lang: str = "en") -> str:
    return signer.sign(lang, sha256_file(path))


@pytest.fixture
async def signed_world(
    redis_server: RedisServer,
    s3_server: S3Server,
    en_models: EnModels,
    model_paths: dict[str, Path],
    tmp_path: Path,
) -> AsyncIterator[tuple[SwapWorld, Ed25519Signer, Ed25519Signer]]:
    """S3 holding en v1 signed by the trusted key and active; the untrusted key of someone else."""
    trusted, other = tmp_path / "trusted.pem", tmp_path / "other.pem"
    generate_key_pair(trusted, tmp_path / "trusted.pem.pub")
    generate_key_pair(other, tmp_path / "other.pem.pub")
    # pl and de are local models here: they need their sidecars too, in a folder of their own.
    local = tmp_path / "models"
    signer = load_signing_key(trusted)
    for lang in ("pl", "de"):
        (local / lang).mkdir(parents=True)
        copy = local / lang / model_paths[lang].name
        copy.write_bytes(model_paths[lang].read_bytes())
        copy.with_name(copy.name + ".sig").write_text(sign(signer, copy, lang), encoding="ascii")
    settings = load_settings(
        env={},
        overrides={
            "project": f"signed{uuid.uuid4().hex[:8]}",
            "redis.url": redis_server.url,
            "bots.models_dir": str(local),
            "bots.train_missing": False,
            "monitor.interval_seconds": 0,
            "models.verify_key_file": str(tmp_path / "trusted.pem.pub"),
            **s3_server.overrides(),
        },
    )
    store = S3ModelStore(settings)
    await store.put("en", en_models.v1, signature=sign(signer, en_models.v1))
    client = make_client(redis_server.url, 2.0)
    await RedisActiveModels(client, settings).activate("en", en_models.ref(en_models.v1))
    try:
        yield SwapWorld(settings, client, redis_server, store, en_models), signer, load_signing_key(other)
    finally:
        await client.close(close_connection_pool=True)
        await store.close()


async def en_status(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/readyz")
    assert resp.status == 200  # a refused swap never takes the language down
    return (await resp.json())["bots"]["en"]  # type: ignore[no-any-return]


async def test_only_a_model_signed_by_a_trusted_key_goes_live(
    signed_world: tuple[SwapWorld, Ed25519Signer, Ed25519Signer], aiohttp_client: Any, tmp_path: Path
) -> None:
    world, signer, stranger = signed_world
    client: TestClient = await aiohttp_client(create_app(world.settings))
    await ready(client)  # v1 (signed, from S3) and the signed local pl and de models verified at start-up
    await eventually(lambda: client.app[appkeys.EVENTS].connected, what="event bus subscribed")
    assert (await en_status(client))["model"] == world.models.v1.name
    v2 = world.models.v2
    tampered = tmp_path / v2.name
    data = bytearray(v2.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit, after signing; the store records the new bytes' sha256
    tampered.write_bytes(bytes(data))

    cases = [
        (v2, None, "is unsigned"),
        (v2, sign(stranger, v2), "which this gateway does not trust"),
        (v2, sign(signer, v2, "pl"), "does not match the archive"),  # signed as a Polish model
        (tampered, sign(signer, v2), "does not match the archive"),
    ]
    for number, (source, signature, reason) in enumerate(cases, 1):
        rejected = swaps("en", "rejected")
        await world.store.put("en", source, signature=signature)
        await world.publish(v2.name)
        await eventually(lambda r=rejected: swaps("en", "rejected") > r, 60, f"case {number} refused")
        en = await en_status(client)
        assert en["model"] == world.models.v1.name, reason
        assert f"swap to {v2.name} failed (rejected): model {v2.name}" in en["last_error"]
        assert reason in en["last_error"]
        assert "--sign-key" in en["last_error"]
        assert await say(client, "hello") in OLD_GREETINGS

    await world.store.put("en", v2, signature=sign(signer, v2))
    await world.publish(v2.name)
    await eventually(lambda: _answering(client, v2.name), 120, "en swapped to the signed v2")
    assert await say(client, "hello") == NEW_GREETING
    assert (await en_status(client))["last_error"] is None


async def _answering(client: TestClient, name: str) -> bool:
    resp = await client.get("/bots")
    bots = {bot["lang"]: bot for bot in (await resp.json())["bots"]}
    return bool(bots["en"]["model"] == name)


async def test_an_unsigned_active_model_at_start_up_leaves_the_bot_not_ready_with_the_reason(
    signed_world: tuple[SwapWorld, Ed25519Signer, Ed25519Signer], aiohttp_client: Any
) -> None:
    world, _, _ = signed_world
    await world.store.put("en", world.models.v1)  # the signature is gone (replaced unsigned)
    client: TestClient = await aiohttp_client(create_app(world.settings))
    await client.app[appkeys.STARTUP]
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["waiting"] == ["en"]
    assert f"model {world.models.v1.name} is unsigned" in body["bots"]["en"]["last_error"]
    assert body["bots"]["pl"]["model"] is not None  # signed local models loaded
