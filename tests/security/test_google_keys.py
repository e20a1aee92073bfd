"""The signing-key cache against a real local JWKS endpoint: max-age, unknown kids, bad documents."""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from gateway.auth import google_keys
from gateway.auth.google_keys import GoogleKeys, KeysUnusable, max_age, parse_keys
from gateway.errors import ConfigError
from tests.security.conftest import JwksServer, SigningKey, new_key


class Clock:
    """A monotonic clock the test moves by hand (so expiry needs no sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("public, max-age=19591, must-revalidate, no-transform", 19591.0),
        ('max-age="120"', 120.0),
        (None, google_keys.DEFAULT_MAX_AGE_SECONDS),
        ("public", google_keys.DEFAULT_MAX_AGE_SECONDS),
        ("max-age=0", google_keys.MIN_MAX_AGE_SECONDS),
        ("no-store", google_keys.MIN_MAX_AGE_SECONDS),
        ("max-age=99999999", google_keys.MAX_MAX_AGE_SECONDS),
    ],
)
def test_cache_lifetime_follows_cache_control_within_bounds(header: str | None, seconds: float) -> None:
    assert max_age(header) == seconds


async def test_keys_expire_after_max_age_and_refetch(jwks: JwksServer, google_key: SigningKey) -> None:
    jwks.cache_control = "public, max-age=120"
    clock = Clock()
    async with GoogleKeys(url=jwks.url, clock=clock) as keys:
        assert len(await keys.lookup(google_key.kid)) == 1
        clock.now += 119
        assert len(await keys.lookup(google_key.kid)) == 1
        assert jwks.hits == 1
        clock.now += 2  # past max-age
        assert len(await keys.lookup(google_key.kid)) == 1
        assert jwks.hits == 2


async def test_unknown_kid_refresh_is_rate_limited(jwks: JwksServer, google_key: SigningKey) -> None:
    clock = Clock()
    async with GoogleKeys(url=jwks.url, clock=clock) as keys:
        await keys.lookup(google_key.kid)
        assert await keys.lookup("made-up-1") == []
        assert jwks.hits == 2
        assert await keys.lookup("made-up-2") == []
        assert jwks.hits == 2
        clock.now += google_keys.UNKNOWN_KID_REFRESH_SECONDS
        assert await keys.lookup("made-up-3") == []
        assert jwks.hits == 3


async def test_failed_fetch_is_retried_after_a_pause_not_per_request(
    jwks: JwksServer, google_key: SigningKey
) -> None:
    jwks.status = 503
    clock = Clock()
    async with GoogleKeys(url=jwks.url, clock=clock) as keys:
        assert await keys.lookup(google_key.kid) == []
        assert await keys.lookup(None) == []
        assert jwks.hits == 1
        jwks.status = 200
        clock.now += google_keys.RETRY_AFTER_FAILURE_SECONDS
        assert len(await keys.lookup(google_key.kid)) == 1
        assert jwks.hits == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        b'{"keys": "nope"}',
        b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}',
        b'{"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"}]}',
        b'{"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": "AA", "y": "AA"}]}',
    ],
)
def test_documents_without_a_usable_rsa_key_are_refused(body: bytes) -> None:
    with pytest.raises(KeysUnusable):
        parse_keys(json.loads(body) if body.startswith((b"{", b"[")) else body)


def test_private_or_short_keys_are_not_used_for_verification() -> None:
    key = new_key()
    private_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.private))  # includes "d"
    with pytest.raises(KeysUnusable):
        parse_keys({"keys": [{**private_jwk, "kid": "leaked"}]})
    good = parse_keys({"keys": [key.jwk()]})
    assert list(good) == [key.kid]


def test_google_pem_certificate_form_is_understood() -> None:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.google.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    keys = parse_keys({key.kid: pem, "junk": "not a certificate"})
    assert list(keys) == [key.kid]


async def test_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    async with GoogleKeys(file=tmp_path / "missing.json") as keys:
        with pytest.raises(ConfigError, match=r"google\.jwks_file=.*cannot read"):
            await keys.refresh(strict=True)


async def test_a_burst_of_first_requests_fetches_once(jwks: JwksServer, google_key: SigningKey) -> None:
    async with GoogleKeys(url=jwks.url) as keys:
        results = await asyncio.gather(*(keys.lookup(google_key.kid) for _ in range(20)))
    assert all(len(found) == 1 for found in results)
    assert jwks.hits == 1


async def test_large_documents_are_read_whole_and_oversized_ones_refused(
    jwks: JwksServer, google_key: SigningKey
) -> None:
    clock = Clock()
    jwks.padding = 600_000  # arrives in many TCP segments
    async with GoogleKeys(url=jwks.url, clock=clock) as keys:
        assert len(await keys.lookup(google_key.kid)) == 1
    jwks.padding = google_keys.MAX_JWKS_BYTES + 1
    async with GoogleKeys(url=jwks.url, clock=clock) as keys:
        assert await keys.lookup(google_key.kid) == []
        assert not keys.loaded
