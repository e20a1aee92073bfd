"""Security fixtures: RSA keys generated here, tokens shaped like Google's, a local JWKS endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import appkeys
from gateway.app import create_app
from gateway.settings import Settings, load_settings

PROJECT_ID = "rasa-gateway-test-123"
ISSUER = "https://accounts.google.com"


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its kid, as Google publishes them."""

    kid: str
    private: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**data, "kid": self.kid, "alg": "RS256", "use": "sig"}


def new_key(kid: str | None = None) -> SigningKey:
    """A fresh 2048-bit key (Google's size)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"kid-{uuid.uuid4().hex[:12]}", private)


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a valid Google webhook token; `name=None` drops a claim."""
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": ISSUER,
        "aud": PROJECT_ID,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def sign(key: SigningKey, payload: Mapping[str, Any] | None = None, kid: str | None = "same") -> str:
    """An RS256 token signed by `key`; its header names `kid` ('same' = the key's own, None = no kid)."""
    headers = {} if kid is None else {"kid": key.kid if kid == "same" else kid}
    return jwt.encode(dict(payload or claims()), key.private, algorithm="RS256", headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes = b"") -> str:
    """A hand-made JWT (PyJWT refuses to make the hostile ones)."""
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def hs256_with_public_key(key: SigningKey, payload: Mapping[str, Any]) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the RSA public key."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(payload).encode())
    mac = hmac.new(key.public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


@dataclass
class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its hits; tests change `keys` to rotate."""

    keys: list[SigningKey]
    cache_control: str = "public, max-age=300, must-revalidate"
    status: int = 200
    padding: int = 0  # extra bytes in the document (big responses arrive in many segments)
    hits: int = 0
    server: TestServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/oauth2/v3/certs"))

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        body: dict[str, Any] = {"keys": [key.jwk() for key in self.keys]}
        if self.padding:
            body["padding"] = "p" * self.padding
        return web.json_response(body, status=self.status, headers={"Cache-Control": self.cache_control})


@pytest.fixture(scope="session")
def google_key() -> SigningKey:
    """The key 'Google' signs with in these tests."""
    return new_key()


@pytest.fixture(scope="session")
def stranger_key() -> SigningKey:
    """A key nobody published."""
    return new_key()


@pytest.fixture
async def jwks(google_key: SigningKey) -> Any:
    """A running local JWKS endpoint serving `google_key`."""
    state = JwksServer([google_key])
    app = web.Application()
    app.router.add_get("/oauth2/v3/certs", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.server = server
    try:
        yield state
    finally:
        await server.close()


def write_jwks(path: Path, keys: list[SigningKey]) -> Path:
    """A JWKS file for offline mode."""
    path.write_text(json.dumps({"keys": [key.jwk() for key in keys]}), encoding="utf-8")
    return path


def gateway_settings(**overrides: Any) -> Settings:
    """Embedded settings for an in-process gateway (no monitor, no training), plus dotted `overrides`."""
    return load_settings(
        env={}, overrides={"monitor.interval_seconds": 0, "bots.train_missing": False, **overrides}
    )


async def start_gateway(
    aiohttp_client: Any, settings: Settings, models: Mapping[str, Path] | None = None
) -> TestClient:
    """An in-process gateway over real HTTP; only `models` are loaded (none by default: bots answer
    with their 'unavailable' prompt, which is all a refusal test needs)."""
    chosen = dict(models or {})
    app = create_app(settings, resolve_models=lambda _: chosen)
    client: TestClient = await aiohttp_client(app)
    if chosen:
        await app[appkeys.STARTUP]
    return client
