"""Model signatures: publishers sign archives, gateways verify them before anything in them is opened.

Two algorithms:
- `ed25519` (preferred): publishers hold the private key (`models.signing_key_file`), gateways only the
  public keys they trust (`models.verify_key_file`, one or more PEM blocks: list old and new keys to rotate),
  so a compromised gateway cannot sign a model.
- `hmac-sha256`: one shared `models.hmac_key` that both signs and verifies (simple, but every gateway
  holding it could sign).

A signature is detached JSON text kept with the archive (local store: `<model>.tar.gz.sig`; S3: the
object's `signature` metadata):

    {"v": 1, "alg": "ed25519", "key_id": "3f2a9c0d1e7b6a55", "sig": "<base64>"}

It signs `rasa-gateway-model/v1\\n<lang>\\n<sha256 hex of the archive>`: the archive is read once (for its
sha256), and an archive signed for one language cannot be served as another. Key material never reaches a
log line or an error message; key ids (a hash of the public key) may.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import ConfigError, ModelSignatureInvalid
from gateway.settings import ModelSettings

logger = logging.getLogger(__name__)

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
HMAC_KEY_ID = "models.hmac_key"
MAX_SIGNATURE_CHARS = 1024  # S3 user metadata is capped at 2 KB; a real signature is ~140 characters
_PEM_PUBLIC_RE = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
SIGN_HINT = (
    "sign it with `gateway publish <lang> <model> --sign-key <private key>` (or set models.signing_key_file)"
)


def signed_message(lang: str, sha256: str) -> bytes:
    """The bytes a signature covers."""
    return f"rasa-gateway-model/v1\n{lang}\n{sha256.lower()}".encode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short public name for a key: 16 hex characters of the sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _dump(alg: str, kid: str, sig: str) -> str:
    return json.dumps({"v": 1, "alg": alg, "key_id": kid, "sig": sig}, separators=(",", ":"))


class Signer(Protocol):
    """Whatever signs archives on a publisher."""

    @property
    def key_id(self) -> str:
        """The public name of the signing key."""

    def sign(self, lang: str, sha256: str) -> str:
        """The signature text for an archive of `lang` with this sha256."""


@dataclass(frozen=True)
class Ed25519Signer:
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def key_id(self) -> str:
        return key_id(self.private_key.public_key())

    def sign(self, lang: str, sha256: str) -> str:
        raw = self.private_key.sign(signed_message(lang, sha256))
        return _dump(ED25519, self.key_id, base64.b64encode(raw).decode("ascii"))


@dataclass(frozen=True)
class HmacSigner:
    key: str = field(repr=False)
    key_id: str = HMAC_KEY_ID

    def sign(self, lang: str, sha256: str) -> str:
        mac = hmac.new(self.key.encode(), signed_message(lang, sha256), hashlib.sha256).hexdigest()
        return _dump(HMAC_SHA256, self.key_id, mac)


@dataclass(frozen=True)
class Verifier:
    """What a gateway trusts: Ed25519 public keys by key id, and/or the shared HMAC key."""

    public_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict, repr=False)
    hmac_key: str | None = field(default=None, repr=False)

    @property
    def required(self) -> bool:
        return bool(self.public_keys) or self.hmac_key is not None

    def trusted(self) -> str:
        """What this gateway accepts, for error messages (key ids only)."""
        parts = []
        if self.public_keys:
            parts.append(f"Ed25519 keys {', '.join(sorted(self.public_keys))} (models.verify_key_file)")
        if self.hmac_key is not None:
            parts.append("HMAC with models.hmac_key")
        return " or ".join(parts)

    def verify(self, model: str, lang: str, sha256: str, signature: str | None) -> str | None:
        """Check `signature` of archive `model`; returns the signing key id, else ModelSignatureInvalid.

        Without trusted keys nothing is required and None is returned.
        """
        if not self.required:
            return None
        if signature is None:
            raise ModelSignatureInvalid(
                f"model {model} is unsigned, but this gateway accepts only models signed with "
                f"{self.trusted()}: {SIGN_HINT}"
            )
        alg, kid, sig = parse_signature(model, signature)
        message = signed_message(lang, sha256)
        if alg == HMAC_SHA256:
            if self.hmac_key is None:
                raise ModelSignatureInvalid(
                    f"model {model} carries an HMAC signature, but models.hmac_key is not set here "
                    f"(accepted: {self.trusted()}): {SIGN_HINT}"
                )
            expected = hmac.new(self.hmac_key.encode(), message, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sig.lower().encode("ascii"), expected.encode("ascii")):
                raise ModelSignatureInvalid(
                    f"model {model}: HMAC signature does not match (tampered, signed with another key or "
                    f"for another language): {SIGN_HINT}"
                )
            return HMAC_KEY_ID
        public = self.public_keys.get(kid)
        if public is None:
            raise ModelSignatureInvalid(
                f"model {model} is signed by Ed25519 key {kid}, which this gateway does not trust "
                f"(accepted: {self.trusted() or 'none'}): add its public key to models.verify_key_file or "
                f"{SIGN_HINT}"
            )
        try:
            public.verify(base64.b64decode(sig, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            raise ModelSignatureInvalid(
                f"model {model}: Ed25519 signature by key {kid} does not match the archive (tampered, or "
                f"signed for another language): {SIGN_HINT}"
            ) from None
        return kid


def parse_signature(model: str, text: str) -> tuple[str, str, str]:
    """(alg, key_id, sig) of a signature text, or ModelSignatureInvalid saying what is wrong with it."""

    def bad(why: str) -> ModelSignatureInvalid:
        return ModelSignatureInvalid(f"model {model}: its signature is malformed ({why}): {SIGN_HINT}")

    if len(text) > MAX_SIGNATURE_CHARS:
        raise bad(f"longer than {MAX_SIGNATURE_CHARS} characters")
    try:
        data = json.loads(text)
    except ValueError:
        raise bad("not JSON") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    alg, kid, sig = data.get("alg"), data.get("key_id"), data.get("sig")
    if alg not in (ED25519, HMAC_SHA256):
        raise bad(f"alg must be {ED25519!r} or {HMAC_SHA256!r}")
    if not isinstance(kid, str) or not isinstance(sig, str) or not sig or not (kid + sig).isascii():
        raise bad("key_id and sig must be ASCII strings")
    return alg, kid[:64], sig


def load_signing_key(path: Path, setting: str = "models.signing_key_file") -> Ed25519Signer:
    """The Ed25519 private key in `path` (unencrypted PEM, as `gateway keygen` writes), or ConfigError."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):  # never echo the file's content: it is the secret
        raise ConfigError(
            f"{setting}: {path} is not an unencrypted PEM private key; create one with `gateway keygen`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{setting}: {path} holds a {type(key).__name__}, not an Ed25519 private key")
    if mode & 0o077:
        logger.warning("%s %s is readable by other users: chmod 600 it", setting, path)
    return Ed25519Signer(key)


def load_public_keys(path: Path, setting: str = "models.verify_key_file") -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in `path` (one or more PEM blocks), by key id; ConfigError if none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    keys: dict[str, Ed25519PublicKey] = {}
    for number, block in enumerate(_PEM_PUBLIC_RE.findall(data), 1):
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError):
            raise ConfigError(f"{setting}: public key #{number} in {path} is not a valid PEM key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{setting}: public key #{number} in {path} is not an Ed25519 key")
        keys[key_id(key)] = key
    if not keys:
        raise ConfigError(
            f"{setting}: {path} holds no '-----BEGIN PUBLIC KEY-----' block; use the .pub file that "
            "`gateway keygen` wrote"
        )
    return keys


def verifier_for(models: ModelSettings) -> Verifier:
    """What a gateway with these settings trusts (nothing: signatures are not required)."""
    keys = load_public_keys(models.verify_key_file) if models.verify_key_file is not None else {}
    return Verifier(keys, models.hmac_key)


def signer_for(models: ModelSettings, key_file: Path | None = None) -> Ed25519Signer | HmacSigner | None:
    """How a publisher signs: `key_file` (--sign-key), else models.signing_key_file, else models.hmac_key."""
    if key_file is not None:
        return load_signing_key(key_file, "--sign-key")
    if models.signing_key_file is not None:
        return load_signing_key(models.signing_key_file)
    if models.hmac_key is not None:
        return HmacSigner(models.hmac_key)
    return None


def generate_key_pair(private_path: Path, public_path: Path) -> str:
    """Write a new Ed25519 key pair (private key mode 0600, never overwritten); returns its key id."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} already exists: choose another name or remove it first")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + 0600 at creation: the key is never readable by others, not even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(key.public_key())
