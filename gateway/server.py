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

from gateway import appkeys, worker_state
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if settings.management_port is not None:
            # Same app, second site: /metrics, /bots, /admin/* (see gateway/routing/surface.py). It
            # listens at once, even in a worker still loading: it takes no webhook traffic.
            host = settings.management_host or settings.host
            management = web.TCPSite(runner, host, settings.management_port, reuse_port=reuse_port or None)
            await _start(management, host, settings.management_port, "management")
            if not reuse_port:
                logger.info("management on http://%s:%d", host, settings.management_port)
        worker = app.get(worker_state.WORKER)
        if worker is not None and not await worker.may_listen(stop):
            return  # stopped before its bots were loaded: it never listened
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
        await _start(site, settings.host, settings.port, "public")
        if worker is not None:
            worker.listening()
        if not reuse_port:  # workers: the supervisor says it once
            logger.info("serving on http://%s:%d", settings.host, settings.port)
        await stop.wait()
        await drain(app, site, settings.shutdown_timeout_seconds)
    finally:
        await runner.cleanup()
        logger.info("shutdown complete")


async def _start(site: web.TCPSite, host: str, port: int, role: str) -> None:
    """Start listening; a port someone else holds is one clear line (exit code 2), not a traceback."""
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(listen_error(host, port, exc, role)) from exc


def listen_error(host: str, port: int, exc: OSError, role: str = "public") -> str:
    """Why the gateway cannot listen, and what to change (a configuration error: exit code 2)."""
    setting = (
        "server.port (GATEWAY_SERVER_PORT, --port) or server.host"
        if role == "public"
        else "server.management_port (GATEWAY_SERVER_MANAGEMENT_PORT) or server.management_host"
    )
    reason = exc.strerror or exc
    return (
        f"cannot listen on {host}:{port} ({role}): {reason}: choose another {setting}, or stop what holds it"
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
