"""The web console at /console/: static files from this package, served only where /admin is served.

Plain HTML, CSS and JavaScript modules (no build step, nothing fetched from elsewhere). The page holds
the admin token in sessionStorage and sends it as a bearer header to the /admin JSON API; every
answer carries a strict Content-Security-Policy, so no inline script or foreign origin can run.
"""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from aiohttp import web

from gateway.auth.admin import LOCAL_CONSOLE_TOKEN
from gateway.routing import admin

STATIC = Path(str(resources.files(__package__) / "static"))
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https:",  # image cards point at the bots' https images
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def add_routes(router: web.UrlDispatcher) -> None:
    """Serve /console/ (call only where /admin routes are registered)."""
    router.add_get("/console", _redirect)
    router.add_get("/console/", _file)
    router.add_get("/console/{name}", _file)


def enable_local(app: web.Application) -> str:
    """Embedded mode without admin.token: make a one-time token accepted only from 127.0.0.1.

    Returns the token for the start-up line; it dies with the process.
    """
    token = secrets.token_urlsafe(24)
    app[LOCAL_CONSOLE_TOKEN] = token
    admin.add_routes(app.router)
    add_routes(app.router)
    return token


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def _file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    path = STATIC / name
    kind = TYPES.get(path.suffix)
    # Only plain names of files shipped here: no path separators, no dot files, known types.
    if kind is None or "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8", headers=HEADERS)
