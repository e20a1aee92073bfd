"""Google's token-signing keys: a JWKS URL cached per Cache-Control, or a local file for offline use."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1 << 20
# Cache lifetime when the response names none, and the bounds we keep any max-age within.
DEFAULT_MAX_AGE_SECONDS = 300.0
MIN_MAX_AGE_SECONDS = 60.0
MAX_MAX_AGE_SECONDS = 86400.0
# Tokens naming an unknown kid trigger at most one refetch per this many seconds: Google rotates keys
# rarely, while anyone can send made-up kids.
UNKNOWN_KID_REFRESH_SECONDS = 30.0
# After a failed fetch, the next attempt waits this long (requests meanwhile use the keys we have).
RETRY_AFTER_FAILURE_SECONDS = 5.0

_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)

Keys = dict[str, RSAPublicKey]


class KeysUnusable(Exception):
    """A key source could not be read or held no usable RSA key (internal to this module)."""


def max_age(cache_control: str | None) -> float:
    """Seconds a JWKS response may be cached, from its Cache-Control header, kept within sane bounds."""
    if not cache_control:
        return DEFAULT_MAX_AGE_SECONDS
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return MIN_MAX_AGE_SECONDS
    match = _MAX_AGE_RE.search(cache_control)
    seconds = float(match.group(1)) if match else DEFAULT_MAX_AGE_SECONDS
    return min(max(seconds, MIN_MAX_AGE_SECONDS), MAX_MAX_AGE_SECONDS)


def parse_keys(data: Any) -> Keys:
    """RSA public keys by kid from a JWKS (`{"keys": [...]}`) or Google's PEM form (`{kid: certificate}`)."""
    keys: Keys = {}
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        for jwk in data["keys"]:
            kid, key = _from_jwk(jwk)
            if key is not None:
                keys[kid] = key
    elif isinstance(data, dict):
        for kid, pem in data.items():
            key = _from_pem(pem)
            if key is not None and kid:
                keys[str(kid)] = key
    if not keys:
        raise KeysUnusable(f"no usable {ALGORITHM} key (RSA, at least {MIN_KEY_BITS} bits, with a kid)")
    return keys


def _from_jwk(jwk: Any) -> tuple[str, RSAPublicKey | None]:
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        return "", None
    if jwk.get("kty") != "RSA" or jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        return jwk["kid"], None
    try:
        key = jwt.PyJWK(jwk, ALGORITHM).key
    except (jwt.PyJWTError, ValueError, TypeError):
        logger.warning("ignoring malformed signing key %r", jwk["kid"][:64])
        return jwk["kid"], None
    return jwk["kid"], _usable(key)


def _from_pem(pem: Any) -> RSAPublicKey | None:
    if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem:
        return None
    try:
        return _usable(x509.load_pem_x509_certificate(pem.encode()).public_key())
    except ValueError:
        logger.warning("ignoring a certificate that does not parse")
        return None


def _usable(key: Any) -> RSAPublicKey | None:
    # A private key in a JWKS is a publisher's mistake, not something to verify with.
    if isinstance(key, RSAPublicKey) and key.key_size >= MIN_KEY_BITS:
        return key
    return None


def read_key_file(path: Path) -> Keys:
    """The keys in a local JWKS (or PEM-certificate) file, or KeysUnusable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeysUnusable(f"cannot read the file ({exc.strerror})") from None
    return parse_keys(_json(raw))


def check_key_file(path: Path) -> None:
    """ConfigError unless `path` holds at least one usable signing key (for start-up checks)."""
    try:
        read_key_file(path)
    except KeysUnusable as exc:
        raise ConfigError(f"google.jwks_file={path}: {exc}") from None


class GoogleKeys:
    """Signing keys by kid, refreshed when they expire or when a token names a kid we do not know.

    An async context manager: it owns the HTTP session it fetches with (URL mode).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (file is None):
            raise ValueError("GoogleKeys needs exactly one of url and file")
        self.url = url
        self.file = file
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._keys: Keys = {}
        self._expires_at = -math.inf
        self._attempted_at = -math.inf
        self._chased_at = -math.inf
        self._fetched_wall: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def source(self) -> str:
        return self.url if self.url is not None else str(self.file)

    @property
    def loaded(self) -> bool:
        """True once any key was loaded (stale keys keep verifying while a refresh fails)."""
        return bool(self._keys)

    async def __aenter__(self) -> GoogleKeys:
        if self.url is not None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
                headers={"Accept": "application/json"},
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def lookup(self, kid: str | None) -> list[RSAPublicKey]:
        """Keys that may have signed a token naming `kid` (every key when it names none)."""
        if self._lock.locked():  # a refresh is under way (e.g. the start-up prefetch): use its result
            async with self._lock:
                pass
        refreshed = False
        if self.stale:
            await self.refresh()
            refreshed = True
        found = self._match(kid)
        now = self._clock()
        chase = not found and kid is not None and not refreshed
        if chase and now - self._chased_at >= UNKNOWN_KID_REFRESH_SECONDS:
            self._chased_at = now
            logger.info("token names an unknown key id; refreshing keys from %s", self.source)
            await self.refresh()
            found = self._match(kid)
        return found

    @property
    def stale(self) -> bool:
        """Expired, and not just tried and failed (failed fetches are retried after a pause)."""
        now = self._clock()
        return now >= self._expires_at and now - self._attempted_at >= RETRY_AFTER_FAILURE_SECONDS

    def _match(self, kid: str | None) -> list[RSAPublicKey]:
        if kid is None:
            return list(self._keys.values())
        key = self._keys.get(kid)
        return [key] if key is not None else []

    async def refresh(self, *, strict: bool = False) -> None:
        """Reload the keys; on failure keep the old ones (or raise ConfigError when `strict`)."""
        if self._lock.locked() and not strict:
            async with self._lock:
                return  # joined the refresh already under way
        async with self._lock:
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys, seconds = await self._load()
            except KeysUnusable as exc:
                if strict:
                    raise ConfigError(f"google.jwks_file={self.file}: {exc}") from None
                logger.warning("cannot refresh Google signing keys from %s: %s", self.source, exc)
                return
            self._keys = keys
            self._expires_at = self._attempted_at + seconds
            self._fetched_wall = time.time()
            logger.info("loaded %d Google signing key(s) from %s", len(keys), self.source)

    async def _load(self) -> tuple[Keys, float]:
        if self.file is not None:
            keys = await asyncio.get_running_loop().run_in_executor(None, read_key_file, self.file)
            # A file changes only when its owner edits it; unknown kids still trigger a re-read.
            return keys, math.inf
        return await self._fetch()

    async def _fetch(self) -> tuple[Keys, float]:
        assert self.url is not None
        if self._session is None:
            raise KeysUnusable("key cache is not open (use it as an async context manager)")
        try:
            async with self._session.get(self.url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise KeysUnusable(f"HTTP {resp.status}")
                raw = await _read_at_most(resp.content, MAX_JWKS_BYTES + 1)
                cache_control = resp.headers.get("Cache-Control")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise KeysUnusable(f"{type(exc).__name__}") from None
        if len(raw) > MAX_JWKS_BYTES:
            raise KeysUnusable(f"response larger than {MAX_JWKS_BYTES} bytes")
        return parse_keys(_json(raw)), max_age(cache_control)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly state for the admin status page (key ids only, never key material)."""
        now = self._clock()
        return {
            # The URL, or only the file's name: admin answers do not show the host's folders.
            "source": self.url if self.url is not None else f"file:{self.file.name if self.file else ''}",
            "kids": sorted(self._keys),
            "fetched_at": self._fetched_wall,
            "expires_in_seconds": None
            if math.isinf(self._expires_at)
            else round(max(self._expires_at - now, 0.0), 1),
            "fetches": self.fetches,
        }


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to `limit` bytes; StreamReader.read(n) returns whatever has arrived so far, so loop."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise KeysUnusable("not valid JSON") from None
