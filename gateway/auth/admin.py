"""Admin authentication: a bearer token compared in constant time, enforced on every /admin route."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway import appkeys, metrics
from gateway.errors import AuthError

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
ADMIN_PREFIX = "/admin"
# Embedded `gateway serve --local-console` without admin.token: a random token printed at start,
# accepted only from this machine (see gateway/console/__init__.py).
LOCAL_CONSOLE_TOKEN = web.AppKey("local_console_token", str)


def admin_enabled(app: web.Application) -> bool:
    """Whether /admin routes exist: an admin token is configured, or a local console token was made."""
    return bool(app[appkeys.SETTINGS].admin.token) or LOCAL_CONSOLE_TOKEN in app


def _expected_token(request: web.Request) -> str | None:
    token = request.app[appkeys.SETTINGS].admin.token
    if token:
        return token
    local = request.app.get(LOCAL_CONSOLE_TOKEN)
    return local if local is not None and _loopback(request.remote) else None


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:  # a unix socket or something else without an IP address
        return False


def require_admin(request: web.Request) -> None:
    """Raise AuthError unless the request carries the configured admin bearer token."""
    token = _expected_token(request)
    if not token or len(token) < MIN_TOKEN_CHARS:
        raise AuthError("admin routes are off: set admin.token (GATEWAY_ADMIN_TOKEN)")
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        metrics.AUTH_FAILURES.labels("admin", "missing_token").inc()
        raise AuthError("missing bearer token")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        metrics.AUTH_FAILURES.labels("admin", "wrong_token").inc()
        raise AuthError("wrong bearer token")


def refusal_response(status: int, reason: str) -> web.Response:
    """A JSON `{"error": reason}` refusal; 401s say which scheme to use."""
    headers = {"WWW-Authenticate": 'Bearer realm="gateway"'} if status == 401 else None
    return web.Response(
        body=orjson.dumps({"error": reason}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _is_admin(request: web.Request) -> bool:
    # Judge by the route that will run, so every /admin handler is covered whoever registered it.
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


@web.middleware
async def admin_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """/admin routes: 404 while admin is off (no token configured), 401 without the right bearer token."""
    if _is_admin(request):
        if not admin_enabled(request.app):
            raise web.HTTPNotFound()
        try:
            require_admin(request)
        except AuthError as exc:
            logger.info("refused %s %s: %s", request.method, request.path[:200], exc)
            return refusal_response(401, str(exc))
    return await handler(request)
