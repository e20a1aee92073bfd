"""Model signatures: Ed25519 (publishers hold the private key, gateways public keys) and shared-key HMAC.

Every check runs on real trained archives, before anything in them is opened; refusals name the model
and what to do, and never carry key material.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import cli
from gateway.agents.archive import recorded_signature, sign_archive, verify_archive
from gateway.agents.pool import AgentPool, BotState
from gateway.agents.signing import (
    HmacSigner,
    Verifier,
    generate_key_pair,
    load_public_keys,
    load_signing_key,
    signer_for,
    verifier_for,
)
from gateway.errors import ConfigError, ModelRejected, ModelSignatureInvalid
from gateway.settings import load_settings
from gateway.storage.trackers import tracker_stores_for
from tests.security.conftest import gateway_settings
from tests.security.test_model_archives import build, hostile_members, member
from tests.support import responses

HMAC_KEY = "shared-model-signing-key-0123456789"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(source: Path, folder: Path) -> Path:
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    return target


def key_pair(folder: Path, name: str = "signing.pem") -> tuple[Path, Path]:
    private = folder / name
    public = folder / (name + ".pub")
    generate_key_pair(private, public)
    return private, public


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return key_pair(tmp_path / "keys")


def test_ed25519_signature_by_a_trusted_key_passes(
    tmp_path: Path, model_paths: dict[str, Path], keys: tuple[Path, Path]
) -> None:
    private, public = keys
    path = copy(model_paths["en"], tmp_path)
    signer = load_signing_key(private)
    signature = sign_archive(path, "en", signer)
    assert recorded_signature(path) == signature  # the <model>.sig sidecar
    body = json.loads(signature)
    assert body["alg"] == "ed25519" and body["key_id"] == signer.key_id and body["v"] == 1
    verifier = Verifier(load_public_keys(public))
    assert verify_archive(path, sha256(path), verifier, signature, "en") == sha256(path)
    assert verify_archive(path, None, verifier, None, "en") == sha256(path)  # read from the sidecar


@pytest.mark.parametrize("case", ["tampered", "other language", "untrusted key", "missing", "garbage"])
def test_ed25519_refusals_name_the_model_and_what_to_do(
    tmp_path: Path, model_paths: dict[str, Path], keys: tuple[Path, Path], case: str
) -> None:
    private, public = keys
    path = copy(model_paths["en"], tmp_path)
    signature: str | None = load_signing_key(private).sign("en", sha256(path))
    lang = "en"
    if case == "tampered":  # one byte changed after signing (the gateway sees no recorded sha256)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        expected = "does not match the archive"
    elif case == "other language":
        lang = "pl"
        expected = "does not match the archive"
    elif case == "untrusted key":
        other, _ = key_pair(tmp_path / "other")
        signature = load_signing_key(other).sign("en", sha256(path))
        expected = "which this gateway does not trust"
    elif case == "missing":
        signature = None
        expected = "is unsigned"
    else:
        signature = '{"alg": "rsa", "sig": "AAAA"}'
        expected = "signature is malformed"
    with pytest.raises(ModelSignatureInvalid) as caught:
        verify_archive(path, None, Verifier(load_public_keys(public)), signature, lang)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(f"model {path.name}")
    assert "--sign-key" in message  # what to do
    assert private.read_text() not in message and str(private) not in message


def test_the_signature_is_checked_before_any_member(
    tmp_path: Path, model_paths: dict[str, Path], keys: tuple[Path, Path]
) -> None:
    _, public = keys
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = build(
        tmp_path / "hostile.tar.gz", [hostile_members(outside)["traversal"]], base=model_paths["en"]
    )
    with pytest.raises(ModelSignatureInvalid, match="unsigned"):
        verify_archive(hostile, sha256(hostile), Verifier(load_public_keys(public)), None, "en")
    assert list(outside.iterdir()) == []


def test_several_trusted_keys_let_keys_rotate(tmp_path: Path, model_paths: dict[str, Path]) -> None:
    old_private, old_public = key_pair(tmp_path, "old.pem")
    new_private, new_public = key_pair(tmp_path, "new.pem")
    bundle = tmp_path / "trusted.pub"
    bundle.write_text(old_public.read_text() + "\n" + new_public.read_text(), encoding="ascii")
    keys = load_public_keys(bundle)
    assert len(keys) == 2
    path = copy(model_paths["en"], tmp_path)
    for private in (old_private, new_private):
        signature = load_signing_key(private).sign("en", sha256(path))
        assert verify_archive(path, None, Verifier(keys), signature, "en") == sha256(path)
    retired = Verifier(load_public_keys(new_public))  # the old key removed after the rotation
    with pytest.raises(ModelSignatureInvalid, match="does not trust"):
        verify_archive(path, None, retired, load_signing_key(old_private).sign("en", sha256(path)), "en")


def test_hmac_signatures_with_the_shared_key(tmp_path: Path, model_paths: dict[str, Path]) -> None:
    path = copy(model_paths["en"], tmp_path)
    signature = HmacSigner(HMAC_KEY).sign("en", sha256(path))
    assert json.loads(signature)["alg"] == "hmac-sha256"
    assert HMAC_KEY not in signature
    verifier = Verifier(hmac_key=HMAC_KEY)
    assert verify_archive(path, sha256(path), verifier, signature, "en") == sha256(path)
    with pytest.raises(ModelSignatureInvalid, match="unsigned"):
        verify_archive(path, sha256(path), verifier, None, "en")
    other = HmacSigner(HMAC_KEY + "-other").sign("en", sha256(path))
    with pytest.raises(ModelSignatureInvalid, match="HMAC signature does not match"):
        verify_archive(path, sha256(path), verifier, other, "en")
    # An HMAC signature means nothing to a gateway that trusts only Ed25519 keys.
    _, public = key_pair(tmp_path / "keys")
    with pytest.raises(ModelSignatureInvalid, match=r"models\.hmac_key is not set here"):
        verify_archive(path, None, Verifier(load_public_keys(public)), signature, "en")


def test_without_trusted_keys_unsigned_models_load(model_paths: dict[str, Path]) -> None:
    path = model_paths["en"]
    assert verify_archive(path, None, Verifier(), None, "en") == sha256(path)


def test_settings_choose_the_signer_and_the_verifier(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    settings = load_settings(
        env={"GATEWAY_MODELS_SIGNING_KEY_FILE": str(private), "GATEWAY_MODELS_VERIFY_KEY_FILE": str(public)}
    )
    signer = signer_for(settings.models)
    assert signer is not None and signer.key_id == load_signing_key(private).key_id
    assert verifier_for(settings.models).required
    hmac_only = load_settings(env={"GATEWAY_MODELS_HMAC_KEY": HMAC_KEY}).models
    assert isinstance(signer_for(hmac_only), HmacSigner)
    assert signer_for(load_settings(env={}).models) is None
    assert not verifier_for(load_settings(env={}).models).required
    assert HMAC_KEY not in repr(signer_for(hmac_only)) and "PRIVATE" not in repr(signer)


@pytest.mark.parametrize("case", ["missing", "empty", "private key", "not ed25519 public", "garbage"])
def test_bad_verify_key_files_are_configuration_errors(
    tmp_path: Path, keys: tuple[Path, Path], case: str
) -> None:
    private, _ = keys
    path = tmp_path / "trusted.pub"
    if case == "empty":
        path.write_text("", encoding="ascii")
    elif case == "private key":
        path.write_bytes(private.read_bytes())
    elif case == "not ed25519 public":
        from cryptography.hazmat.primitives.asymmetric import ec

        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        path.write_bytes(
            other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    elif case == "garbage":
        path.write_text(
            "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n", encoding="ascii"
        )
    settings = load_settings(env={"GATEWAY_MODELS_VERIFY_KEY_FILE": str(path)})
    with pytest.raises(ConfigError, match=r"models\.verify_key_file: .*trusted\.pub"):
        verifier_for(settings.models)


def test_bad_signing_keys_are_configuration_errors_without_their_content(tmp_path: Path) -> None:
    secret = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(secret)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key") as caught:
        load_signing_key(encrypted)
    assert secret.decode() not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_signing_key(tmp_path / "absent.pem", "--sign-key")


def test_keygen_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    private = tmp_path / "keys" / "model-signing.pem"
    assert cli.main(["keygen", str(private)]) == 0
    public = private.with_name("model-signing.pem.pub")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    signer = load_signing_key(private)
    assert list(load_public_keys(public)) == [signer.key_id]
    out = capsys.readouterr().out
    assert signer.key_id in out and "verify_key_file" in out
    assert private.read_text().splitlines()[1] not in out
    # Never overwrites a key.
    before = private.read_bytes()
    assert cli.main(["keygen", str(private)]) == 2
    assert private.read_bytes() == before
    assert "already exists" in capsys.readouterr().err
    # A private key others can read still works, with a warning that names the file only.
    caplog.set_level(logging.WARNING)
    private.chmod(0o644)
    load_signing_key(private)
    assert "readable by other users" in caplog.text and before.decode().splitlines()[1] not in caplog.text


def _pool(verifier: Verifier) -> AgentPool:
    settings = gateway_settings()
    return AgentPool(settings.bots, tracker_stores_for(settings), verifier=verifier)


async def test_pool_with_trusted_keys_loads_only_signed_models(
    tmp_path: Path, model_paths: dict[str, Path], keys: tuple[Path, Path]
) -> None:
    private, public = keys
    pool = _pool(Verifier(load_public_keys(public), HMAC_KEY))
    path = copy(model_paths["en"], tmp_path)
    with pytest.raises(ModelSignatureInvalid, match="unsigned"):
        await pool.load("en", path)
    assert pool.get("en").model is None
    assert pool.get("en").state is BotState.FAILED
    assert "unsigned" in (pool.get("en").last_error or "")
    with pytest.raises(ModelRejected, match="does not match"):
        await pool.load("en", path, signature=load_signing_key(private).sign("de", sha256(path)))
    loaded = await pool.load("en", path, sha256(path), load_signing_key(private).sign("en", sha256(path)))
    assert pool.get("en").model is loaded
    # With both configured, either kind of signature is accepted.
    pl = copy(model_paths["pl"], tmp_path)
    await pool.load("pl", pl, None, HmacSigner(HMAC_KEY).sign("pl", sha256(pl)))
    messages = await pool.respond("en", f"t-{uuid.uuid4().hex}", "hello")
    assert any(m.get("text") in responses("en", "utter_greet") for m in messages)


def test_member_checks_still_run_after_a_valid_signature(
    tmp_path: Path, model_paths: dict[str, Path], keys: tuple[Path, Path]
) -> None:
    private, public = keys
    outside = tmp_path / "outside"
    outside.mkdir()
    path = build(
        tmp_path / "signed-hostile.tar.gz",
        [member("components/ok.json"), hostile_members(outside)["symlink"]],
    )
    signature = load_signing_key(private).sign("en", sha256(path))  # a compromised publisher signs anything
    with pytest.raises(ModelRejected, match="is a link"):
        verify_archive(path, None, Verifier(load_public_keys(public)), signature, "en")
