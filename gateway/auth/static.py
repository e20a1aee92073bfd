"""Shared-secret checks (bearer token, basic auth, static headers), all compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from gateway.errors import Refused


def _same(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer(authorization: str, token: str) -> None:
    """Refused unless `authorization` is `Bearer <token>`."""
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Refused("missing_token", "missing bearer token (Authorization: Bearer <token>)")
    if not _same(presented.strip(), token):
        raise Refused("wrong_token", "wrong bearer token")


def basic(authorization: str, username: str, password: str) -> None:
    """Refused unless `authorization` is HTTP basic auth with exactly these credentials."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Refused("missing_credentials", "missing basic auth credentials (Authorization: Basic ...)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Refused("malformed_credentials", "malformed basic auth credentials") from None
    user, sep, secret = decoded.partition(":")
    # Both halves are always compared: the time taken says nothing about which one was wrong.
    user_ok = _same(user, username)
    secret_ok = _same(secret, password)
    if not (sep and user_ok and secret_ok):
        raise Refused("wrong_credentials", "wrong basic auth credentials")


def headers(presented: Mapping[str, str], expected: Mapping[str, str]) -> None:
    """Refused unless every expected header is present with its exact value (names case-insensitive)."""
    missing = [name for name in expected if name not in presented]
    if missing:
        raise Refused("missing_header", "missing required header " + ", ".join(sorted(missing)))
    results = [_same(presented[name], value) for name, value in expected.items()]
    if not all(results):
        raise Refused("wrong_header", "wrong value of a required header")
