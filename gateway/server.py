"""Serving the app: answer until SIGTERM/SIGINT, then stop accepting, drain, and close every resource.

Why not `web.run_app`: on shutdown aiohttp 3.9 cancels the body read of requests still uploading
and runs `on_shutdown` before in-flight handlers finish. Here the listening socket closes first,
in-flight requests get `server.shutdown_timeout_seconds` to finish, and only then does the runner
clean up (idle connections, then the app's cleanup contexts: agent pool, Redis, S3, in reverse order).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway import appkeys
from gateway.errors import ConfigError
from gateway.settings import ServerSettings

logger = logging.getLogger(__name__)

# Time the runner may spend closing connections after the drain (keep-alive sockets, late writes).
_CLOSE_SECONDS = 2.0


def run(app: web.Application, settings: ServerSettings, *, reuse_port: bool = False) -> None:
    """Serve `app` on settings.host:port until SIGTERM or SIGINT, then shut down gracefully.

    `reuse_port`: a worker sharing the port with its siblings (SO_REUSEPORT, `--workers N`).
    """
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional on platforms without it
        pass
    asyncio.run(serve(app, settings, reuse_port=reuse_port))


async def serve(app: web.Application, settings: ServerSettings, *, reuse_port: bool = False) -> None:
    """Run the app until a stop signal; returns after the graceful shutdown."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_CLOSE_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(listen_error(settings.host, settings.port, exc)) from exc
        if not reuse_port:  # workers: the supervisor says it once
            logger.info("serving on http://%s:%d", settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await drain(app, site, settings.shutdown_timeout_seconds)
    finally:
        await runner.cleanup()
        logger.info("shutdown complete")


def listen_error(host: str, port: int, exc: OSError) -> str:
    """Why the gateway cannot listen, and what to change (a configuration error: exit code 2)."""
    return (
        f"cannot listen on {host}:{port}: {exc.strerror or exc}: choose another server.port "
        "(GATEWAY_SERVER_PORT, --port) or server.host, or stop what holds it"
    )


async def drain(app: web.Application, site: web.BaseSite, timeout: float) -> None:
    """Stop accepting connections, then wait up to `timeout` s for in-flight requests."""
    in_flight = app[appkeys.IN_FLIGHT]
    logger.info(
        "shutting down: not accepting; %d request(s) in flight (waiting up to %.1fs)",
        in_flight.count,
        timeout,
    )
    await site.stop()
    if await in_flight.wait_idle(timeout):
        logger.info("drained: no request in flight")
    else:
        logger.warning("%d request(s) still running after %.1fs: cutting them off", in_flight.count, timeout)
