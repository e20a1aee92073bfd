"""Signed releases through the real commands (`python -m gateway keygen|train|publish|activate|promote`) and
real gateway processes, with the local model store and a real redis-server.

- Ed25519: the gateway holds only the public key; `train --sign-key` signs the local models it starts
  with, `publish --sign-key` signs what it uploads (an unsigned or foreign-signed model is refused before
  upload), tampered bytes in the store are refused by the gateway while the old model answers, and
  `promote` carries the signature from staging to production.
- HMAC: a gateway with GATEWAY_MODELS_HMAC_KEY trains (or finds) its models, signs them and gets ready.
The module's tests run in file order on one gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway import appkeys
from gateway.app import create_app
from gateway.commands.train import train_langs
from gateway.settings import load_settings
from tests.conftest import model_cache
from tests.support import (
    GatewayProcess,
    RedisServer,
    builder_request,
    free_port,
    post_json,
    responses,
    train_variant,
)
from tests.swaps.conftest import NEW_GREETING
from tests.test_delivery import gateway

OLD_EN = set(responses("en", "utter_greet"))
HMAC_KEY = "release-hmac-key-0123456789abcdef"


@dataclass
class Signed:
    env: dict[str, str]  # what publishers and the gateway share (no key files)
    key: Path  # the publisher's private key
    stranger: Path  # somebody else's private key
    store: Path  # the production local store
    v1: Path
    v2: Path
    said: list[str]  # what keygen and train printed
    gw: GatewayProcess


def ok(*args: str, env: dict[str, str]) -> str:
    done = gateway(*args, env=env)
    assert done.returncode == 0, f"gateway {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def refused(*args: str, env: dict[str, str]) -> str:
    done = gateway(*args, env=env)
    assert done.returncode != 0, f"gateway {' '.join(args)} succeeded:\n{done.stdout}"
    assert "Traceback" not in done.stderr
    return done.stderr


def copies(model_paths: dict[str, Path], folder: Path) -> Path:
    """Private copies of the cached models (the bots' current models, by name): signing writes beside them."""
    for lang, source in model_paths.items():
        (folder / lang).mkdir(parents=True)
        shutil.copy2(source, folder / lang / source.name)
    return folder


def speech(gw: GatewayProcess, text: str = "hello", locale: str = "en-US") -> str:
    status, body = post_json(f"{gw.url}/webhook/google", builder_request(text, locale))
    assert status == 200, body
    return str(body["prompt"]["firstSimple"]["speech"])


def readyz(gw: GatewayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{gw.url}/readyz", timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]


def until(check: Any, what: str, timeout: float = 120) -> None:
    """Poll `check` until true (the bound only stops a broken test)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture(scope="module")
def signed(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    """keygen, `train all --sign-key` on private model copies, then a gateway trusting only that key."""
    root = tmp_path_factory.mktemp("signed")
    key, stranger = root / "keys" / "release.pem", root / "keys" / "stranger.pem"
    redis = RedisServer().start()
    env = {
        "GATEWAY_REDIS_URL": redis.url,
        "GATEWAY_PROJECT": f"sig{uuid.uuid4().hex[:8]}",
        "GATEWAY_BOTS_MODELS_DIR": str(copies(model_paths, root / "models")),
        "GATEWAY_MODELS_PATH": str(root / "store"),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_MODELS_VERIFY_KEY_FILE": str(root / "keys" / "release.pem.pub"),
    }
    variant = train_variant("en", "utter_greet", NEW_GREETING, model_cache())
    v2 = root / "v2" / variant.name
    v2.parent.mkdir()
    shutil.copy2(variant, v2)
    v1 = root / "models" / "en" / model_paths["en"].name
    try:
        said = [ok("keygen", str(key), env=env), ok("keygen", str(stranger), env=env)]
        said.append(ok("train", "all", "--sign-key", str(key), env=env))
        with GatewayProcess.start(free_port(), env) as gw:  # ready only if every signature checks
            yield Signed(env, key, stranger, root / "store", v1, v2, said, gw)
    finally:
        redis.stop()


def test_keygen_and_train_sign_the_local_models_the_gateway_starts_with(signed: Signed) -> None:
    assert str(signed.key) + ".pub" in signed.said[0]
    assert signed.key.stat().st_mode & 0o077 == 0
    assert signed.said[2].count("signed ") == 3
    models = Path(signed.env["GATEWAY_BOTS_MODELS_DIR"])
    for lang in ("en", "pl", "de"):
        (model,) = (models / lang).glob("*.tar.gz")
        assert json.loads((models / lang / (model.name + ".sig")).read_text())["alg"] == "ed25519"
    assert speech(signed.gw) in OLD_EN
    assert readyz(signed.gw)["status"] == "ready"


def test_publish_refuses_unsigned_and_foreign_signed_models(signed: Signed) -> None:
    err = refused("publish", "en", str(signed.v2), "--force", env=signed.env)
    assert f"model {signed.v2.name} is unsigned" in err and "--sign-key" in err
    err = refused(
        "publish", "en", str(signed.v2), "--force", "--sign-key", str(signed.stranger), env=signed.env
    )
    assert "which this gateway does not trust" in err
    assert not (signed.store / "en").exists() or not list((signed.store / "en").glob("*.tar.gz"))
    assert speech(signed.gw) in OLD_EN


def test_a_signed_publish_swaps_and_tampered_bytes_are_refused_while_the_old_model_answers(
    signed: Signed,
) -> None:
    out = ok("publish", "en", str(signed.v2), "--force", "--sign-key", str(signed.key), env=signed.env)
    assert "signed " in out
    assert (signed.store / "en" / (signed.v2.name + ".sig")).is_file()
    until(lambda: speech(signed.gw) == NEW_GREETING, "en swapped to the signed v2")
    ok("publish", "en", str(signed.v1), "--force", env=signed.env)  # carries the sidecar train wrote
    until(lambda: speech(signed.gw) in OLD_EN, "en back on v1")

    # Somebody with write access to the store changes v2's bytes (and its recorded sha256 to match).
    stored = signed.store / "en" / signed.v2.name
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    sha = hashlib.sha256(bytes(data)).hexdigest()
    stored.with_name(stored.name + ".sha256").write_text(f"{sha}  {stored.name}\n", encoding="ascii")
    ok("activate", "en", signed.v2.name, env=signed.env)

    def refusal() -> str:
        return str(readyz(signed.gw)["bots"]["en"]["last_error"] or "")

    until(lambda: "does not match the archive" in refusal(), "the tampered v2 refused")
    assert f"swap to {signed.v2.name} failed (rejected)" in refusal()
    assert readyz(signed.gw)["bots"]["en"]["model"] == signed.v1.name
    assert speech(signed.gw) in OLD_EN


def test_promote_carries_the_signature_from_staging_to_production(signed: Signed) -> None:
    ok(
        "--env",
        "staging",
        "publish",
        "en",
        str(signed.v2),
        "--force",
        "--sign-key",
        str(signed.key),
        env=signed.env,
    )
    out = ok("promote", "en", "--from", "staging", "--to", "production", "--force", env=signed.env)
    assert signed.v2.name in out
    staged = (signed.store / "staging" / "en" / (signed.v2.name + ".sig")).read_text()
    assert (signed.store / "en" / (signed.v2.name + ".sig")).read_text() == staged
    until(lambda: speech(signed.gw) == NEW_GREETING, "production swapped to the promoted v2")
    assert readyz(signed.gw)["bots"]["en"]["last_error"] is None
    log = signed.gw.log.read_text()
    assert "Traceback" not in log
    assert signed.key.read_text().splitlines()[1] not in log  # never any key material


async def test_a_gateway_with_an_hmac_key_signs_what_it_trains_and_gets_ready(
    model_paths: dict[str, Path], tmp_path: Path, aiohttp_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `gateway serve` does with bots.train_missing: train (here: find current) and sign, then serve."""
    settings = load_settings(
        env={
            "GATEWAY_BOTS_MODELS_DIR": str(copies(model_paths, tmp_path / "models")),
            "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
            "GATEWAY_MODELS_HMAC_KEY": HMAC_KEY,
        }
    )
    await asyncio.to_thread(train_langs, settings, "all")
    for lang in ("en", "pl", "de"):
        (sidecar,) = (tmp_path / "models" / lang).glob("*.tar.gz.sig")
        assert json.loads(sidecar.read_text())["alg"] == "hmac-sha256"
    client = await aiohttp_client(create_app(settings))
    await client.app[appkeys.STARTUP]
    resp = await client.get("/readyz")
    assert resp.status == 200, await resp.text()
    assert HMAC_KEY not in capsys.readouterr().out
