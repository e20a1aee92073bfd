"""Admin authentication: a bearer token compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway import appkeys
from gateway.errors import AuthError

MIN_TOKEN_CHARS = 16


def require_admin(request: web.Request) -> None:
    """Raise AuthError unless the request carries the configured admin bearer token."""
    token = request.app[appkeys.SETTINGS].admin.token
    if not token or len(token) < MIN_TOKEN_CHARS:
        raise AuthError("admin routes are off: set admin.token (GATEWAY_ADMIN_TOKEN)")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AuthError("missing bearer token")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AuthError("wrong bearer token")
