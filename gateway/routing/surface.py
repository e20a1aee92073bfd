"""Which listener serves what: the public port (webhooks, health) and the optional management port.

The public port is the one Google, ngrok or a load balancer reaches. Without a management listener
(`server.management_port` unset, the laptop default) one port serves every route. With one, the
public port answers only the webhooks, /healthz and /readyz; /metrics, /bots, /admin/* and the
console live on the management port only, and webhooks are not served there. Anything else on the
public port is a 404, so a route added later is private until it is listed here.

One application serves both listeners (one runner, two sites; every worker binds both with
SO_REUSEPORT). A request's listener is told by the local port its connection was accepted on, which
no client header can forge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import appkeys

# Every enabled channel's routes (webhooks and their GET status pages): filled in by
# gateway.routing.webhook.install, since channels and their paths come from settings.
CHANNEL_PATHS = web.AppKey("channel_paths", frozenset[str])
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def management_enabled(request: web.Request) -> bool:
    return request.app[appkeys.SETTINGS].server.management_port is not None


def on_management_listener(request: web.Request) -> bool:
    """Whether `request` came in on the management listener (False when there is none)."""
    port = request.app[appkeys.SETTINGS].server.management_port
    if port is None or request.transport is None:
        return False
    sockname = request.transport.get_extra_info("sockname")
    return isinstance(sockname, tuple) and len(sockname) >= 2 and sockname[1] == port


def public_only(request: web.Request) -> bool:
    """A request on the public listener while a management listener exists: tell it nothing internal."""
    return management_enabled(request) and not on_management_listener(request)


def _route_path(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


@web.middleware
async def listener_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """404 for management routes on the public listener, and for webhooks on the management one."""
    if management_enabled(request):
        path = _route_path(request)
        channels = request.app.get(CHANNEL_PATHS, frozenset())
        if on_management_listener(request):
            allowed = path not in channels
        else:
            allowed = path in channels or path in HEALTH_PATHS
        if not allowed:
            raise web.HTTPNotFound()
    return await handler(request)
