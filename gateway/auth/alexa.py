"""Amazon's request verification for Alexa skills hosted as web services.

Every rule from "Host a Custom Skill as a Web Service": the SignatureCertChainUrl must be
https://s3.amazonaws.com/echo.api/... (host case-insensitive, path case-sensitive after removing dot
segments, port 443 if any); the certificate chain it serves must lead to a trusted root, its signing
certificate must be valid now and name echo-api.amazon.com; `Signature-256` must be the RSA-SHA256
signature of the exact body bytes; the request timestamp must be within 150 seconds; and the
applicationId must be the configured skill's.

Production trusts certifi's roots and fetches over the public internet. Tests cannot reach Amazon, so
they put an `AlexaTrust` on the app (TRUST) with their own root and an aiohttp resolver and TLS context that
send s3.amazonaws.com to a local HTTPS server: the URL rules and every check stay exactly the same.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import certifi
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gateway.errors import Refused

logger = logging.getLogger(__name__)

CERT_HOST = "s3.amazonaws.com"
CERT_PATH_PREFIX = "/echo.api/"
SIGNING_NAME = "echo-api.amazon.com"
CERT_URL_HEADER = "SignatureCertChainUrl"
SIGNATURE_HEADER = "Signature-256"
MAX_SKEW_SECONDS = 150.0
MAX_CHAIN_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
# A verified chain is reused for this long at most (and never past its signing certificate's expiry).
CACHE_SECONDS = 3600.0
MAX_CACHED_URLS = 16


@dataclass(frozen=True)
class AlexaTrust:
    """Where chains are fetched from and what they must lead to; tests replace it (see the module doc)."""

    roots: tuple[x509.Certificate, ...]
    resolver: aiohttp.abc.AbstractResolver | None = None
    ssl: Any = True  # aiohttp's `ssl` argument: True = the system's default verification

    @classmethod
    def public(cls) -> AlexaTrust:
        with open(certifi.where(), "rb") as bundle:
            return cls(tuple(x509.load_pem_x509_certificates(bundle.read())))


TRUST = web.AppKey("alexa_trust", AlexaTrust)


def cert_url(raw: str) -> str:
    """The normalised certificate URL, or Refused when it breaks Amazon's rules."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise Refused("bad_cert_url", "malformed SignatureCertChainUrl") from None
    path = posixpath.normpath(parts.path) if parts.path else ""
    if parts.path.endswith("/") and not path.endswith("/"):
        path += "/"
    if (
        parts.scheme.lower() != "https"
        or (parts.hostname or "").lower() != CERT_HOST
        or port not in (None, 443)
        or not path.startswith(CERT_PATH_PREFIX)
        or parts.username is not None
    ):
        raise Refused(
            "bad_cert_url", "SignatureCertChainUrl is not an https://s3.amazonaws.com/echo.api/ URL"
        )
    return urlunsplit(("https", CERT_HOST, path, parts.query, ""))


def check_timestamp(value: str, now: float | None = None) -> None:
    """Refused unless the request's ISO-8601 timestamp is within 150 s of now."""
    try:
        stamp = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused("bad_timestamp", "request.timestamp is not an ISO-8601 time") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    if abs((now if now is not None else time.time()) - stamp.timestamp()) > MAX_SKEW_SECONDS:
        raise Refused("stale_timestamp", f"request.timestamp is more than {MAX_SKEW_SECONDS:g} s from now")


@dataclass
class _Chain:
    key: RSAPublicKey
    until: float


@dataclass
class AlexaVerifier:
    """Checks requests for one skill; verified chains are cached per URL."""

    skill_id: str
    trust: AlexaTrust
    _session: aiohttp.ClientSession | None = None
    _chains: dict[str, _Chain] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> AlexaVerifier:
        connector = aiohttp.TCPConnector(resolver=self.trust.resolver, ssl=self.trust.ssl, limit=4)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def signing_key(self, raw_url: str) -> RSAPublicKey:
        """The verified signing certificate's key for `raw_url` (Refused when any rule fails)."""
        url = cert_url(raw_url)
        cached = self._chains.get(url)
        if cached is not None and cached.until > time.time():
            return cached.key
        async with self._lock:  # one fetch per URL at a time; strangers cannot fan out downloads
            cached = self._chains.get(url)
            if cached is not None and cached.until > time.time():
                return cached.key
            chain = self._verify_chain(await self._fetch(url))
            if len(self._chains) >= MAX_CACHED_URLS:
                self._chains.clear()
            self._chains[url] = chain
            return chain.key

    async def _fetch(self, url: str) -> bytes:
        if self._session is None:
            raise Refused(
                "not_configured", "cannot verify the request: verification is not ready", status=503
            )
        try:
            async with self._session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise Refused("cert_unavailable", f"certificate chain URL answered {resp.status}")
                data = await resp.content.read(MAX_CHAIN_BYTES + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("cannot fetch the Alexa certificate chain %s: %s", url, type(exc).__name__)
            raise Refused("cert_unavailable", "cannot fetch the certificate chain", status=503) from None
        if len(data) > MAX_CHAIN_BYTES:
            raise Refused("bad_chain", "certificate chain is too large")
        return data

    def _verify_chain(self, pem: bytes) -> _Chain:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise Refused("bad_chain", "certificate chain does not parse") from None
        leaf, intermediates = certs[0], certs[1:]
        verifier = (
            PolicyBuilder()
            .store(Store(list(self.trust.roots)))
            .time(datetime.datetime.now(datetime.timezone.utc))
            .build_server_verifier(x509.DNSName(SIGNING_NAME))
        )
        try:
            verifier.verify(leaf, intermediates)  # chain of trust, validity dates and the SAN
        except VerificationError as exc:
            logger.info("Alexa certificate chain refused: %s", exc)
            raise Refused("untrusted_chain", f"certificate chain is not trusted for {SIGNING_NAME}") from None
        key = leaf.public_key()
        if not isinstance(key, RSAPublicKey):
            raise Refused("bad_chain", "signing certificate has no RSA key")
        until = min(time.time() + CACHE_SECONDS, leaf.not_valid_after_utc.timestamp())
        return _Chain(key, until)

    @staticmethod
    def check_signature(key: RSAPublicKey, signature: str, body: bytes) -> None:
        """Refused unless `signature` (base64) is the RSA-SHA256 signature of `body`."""
        try:
            raw = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise Refused("bad_signature", "Signature-256 is not base64") from None
        try:
            key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise Refused("bad_signature", "Signature-256 does not match the body") from None

    def check_application(self, application_id: str) -> None:
        if application_id != self.skill_id:
            raise Refused("wrong_application", "applicationId is not this skill's (channels.alexa.skill_id)")
