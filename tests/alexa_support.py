"""Amazon's side of Alexa request signing, made locally: a root CA, an intermediate, the echo-api.amazon.com
signing certificate, and an HTTPS server answering for s3.amazonaws.com (reached through an aiohttp
resolver and TLS context that trust only this root, so the gateway's URL rules stay Amazon's)."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.auth.alexa import AlexaTrust

SKILL_ID = "amzn1.ask.skill.11111111-2222-3333-4444-555555555555"
CERT_PATH = "/echo.api/echo-api-cert-12.pem"
CERT_URL = "https://s3.amazonaws.com" + CERT_PATH


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    *,
    ca: bool,
    dns: list[str] | None = None,
    days: tuple[int, int] = (-1, 365),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns or []]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Amazon:
    """The test's 'Amazon': its root, the signing chain, and extra (bad) chains served at other paths."""

    root: x509.Certificate
    root_key: rsa.RSAPrivateKey
    signing_key: rsa.RSAPrivateKey
    chains: dict[str, bytes] = field(default_factory=dict)
    hits: int = 0

    @classmethod
    def make(cls) -> Amazon:
        root_key, mid_key, leaf_key = _key(), _key(), _key()
        root = _cert("Test Amazon Root CA", root_key, None, ca=True, days=(-1, 3650))
        mid = _cert("Test Amazon Intermediate", mid_key, (root, root_key), ca=True, days=(-1, 1825))
        leaf = _cert("echo-api.amazon.com", leaf_key, (mid, mid_key), ca=False, dns=["echo-api.amazon.com"])
        amazon = cls(root, root_key, leaf_key)
        amazon.chains[CERT_PATH] = _pem(leaf, mid)
        expired = _cert(
            "echo-api.amazon.com",
            leaf_key,
            (mid, mid_key),
            ca=False,
            dns=["echo-api.amazon.com"],
            days=(-30, -1),
        )
        amazon.chains["/echo.api/expired.pem"] = _pem(expired, mid)
        other_name = _cert("evil.example.com", leaf_key, (mid, mid_key), ca=False, dns=["evil.example.com"])
        amazon.chains["/echo.api/other-name.pem"] = _pem(other_name, mid)
        stranger_key = _key()
        stranger = _cert("Someone Else's Root", stranger_key, None, ca=True)
        untrusted = _cert(
            "echo-api.amazon.com", leaf_key, (stranger, stranger_key), ca=False, dns=["echo-api.amazon.com"]
        )
        amazon.chains["/echo.api/untrusted.pem"] = _pem(untrusted, stranger)
        amazon.chains["/echo.api/garbage.pem"] = b"-----BEGIN CERTIFICATE-----\nnot a certificate\n"
        return amazon

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.signing_key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()

    def headers(self, body: bytes, url: str = CERT_URL) -> dict[str, str]:
        return {
            "SignatureCertChainUrl": url,
            "Signature-256": self.sign(body),
            "Content-Type": "application/json",
        }

    def server_context(self, tmp: Path) -> ssl.SSLContext:
        """TLS for the local s3.amazonaws.com: a certificate for that name from the same root."""
        key = _key()
        cert = _cert("s3.amazonaws.com", key, (self.root, self.root_key), ca=False, dns=["s3.amazonaws.com"])
        cert_file, key_file = tmp / "s3.pem", tmp / "s3.key"
        cert_file.write_bytes(_pem(cert))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        return context

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        chain = self.chains.get(request.path)
        if chain is None:
            raise web.HTTPNotFound()
        return web.Response(body=chain, content_type="application/x-pem-file")

    def trust(self, port: int) -> AlexaTrust:
        client = ssl.create_default_context(cadata=_pem(self.root).decode())
        return AlexaTrust(roots=(self.root,), resolver=LocalS3(port), ssl=client)


class LocalS3(AbstractResolver):
    """Resolves s3.amazonaws.com:443 to the local server; any other host does not exist."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        if host != "s3.amazonaws.com" or port != 443:
            raise OSError(f"{host}:{port} is not reachable in tests")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def alexa_request(
    kind: str = "IntentRequest",
    text: str = "",
    locale: str = "en-US",
    session: str | None = None,
    intent: str = "CatchAllIntent",
    timestamp: float | None = None,
    application_id: str = SKILL_ID,
) -> dict[str, Any]:
    """A request shaped like the Alexa Skills Kit request JSON reference."""
    stamp = datetime.datetime.fromtimestamp(timestamp or time.time(), datetime.timezone.utc)
    application = {"applicationId": application_id}
    request: dict[str, Any] = {
        "type": kind,
        "requestId": f"amzn1.echo-api.request.{uuid.uuid4()}",
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "locale": locale,
    }
    if kind == "IntentRequest":
        slots = {"query": {"name": "query", "value": text, "confirmationStatus": "NONE"}} if text else {}
        request["intent"] = {"name": intent, "confirmationStatus": "NONE", "slots": slots}
    if kind == "SessionEndedRequest":
        request["reason"] = "USER_INITIATED"
    return {
        "version": "1.0",
        "session": {
            "new": kind == "LaunchRequest",
            "sessionId": session or f"amzn1.echo-api.session.{uuid.uuid4()}",
            "application": application,
            "attributes": {},
            "user": {"userId": "amzn1.ask.account.TESTUSER"},
        },
        "context": {
            "System": {
                "application": application,
                "user": {"userId": "amzn1.ask.account.TESTUSER"},
                "device": {"deviceId": "amzn1.ask.device.TESTDEVICE", "supportedInterfaces": {}},
                "apiEndpoint": "https://api.amazonalexa.com",
            }
        },
        "request": request,
    }


def body_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()
