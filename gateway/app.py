"""The aiohttp application: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from gateway import appkeys, console
from gateway.agents.custom_actions import ActionClient, BotActions
from gateway.agents.inference import InferenceThread
from gateway.agents.model_updates import model_updates
from gateway.agents.monitor import Monitor
from gateway.agents.pool import AgentPool
from gateway.agents.signing import verifier_for
from gateway.auth import admin as auth
from gateway.auth import google as google_auth
from gateway.brokers.context import event_brokers
from gateway.errors import AuthError, BadRequest, TrainingError
from gateway.routing import access, admin, admin_status, encoding, health, limits, surface, webhook
from gateway.routing.inflight import InFlight
from gateway.routing.locale import LocaleRouter
from gateway.settings import Settings
from gateway.storage.redis_client import redis_client
from gateway.storage.redis_locks import conversation_locks
from gateway.storage.replicas import replica_heartbeat
from gateway.storage.trackers import tracker_stores_for
from gateway.storage.turn_buffer import TurnBuffer
from gateway.training import current_model, model_files

logger = logging.getLogger(__name__)

ModelResolver = Callable[[Settings], Mapping[str, Path | None]]


def newest_local_models(settings: Settings) -> dict[str, Path | None]:
    """Per bot: the model trained from its current sources, else the newest archive in models/<lang>/."""
    out: dict[str, Path | None] = {}
    for lang, bot in settings.bots.items():
        folder = settings.models_dir / lang
        try:
            current = current_model(bot.project_dir, folder)
        except TrainingError:  # no sources here (e.g. a container with models only)
            current = None
        files = model_files(folder)
        out[lang] = current or (files[-1] if files else None)
    return out


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error leaves as JSON `{"error": reason}`; internals never reach the client."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return webhook.error_response(exc.status, exc.reason)
    except AuthError as exc:
        return auth.refusal_response(401, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return webhook.error_response(exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:  # the last line of defence: log it, answer without details
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return webhook.error_response(500, "internal error; see the gateway log")


def create_app(settings: Settings, resolve_models: ModelResolver = newest_local_models) -> web.Application:
    """Build the application; resources start and stop with it."""
    google_auth.preflight(settings)  # a bad key file stops start-up here, with one clear line
    limits.install_protocol_error_filter()
    in_flight = InFlight()
    app = web.Application(
        # In-flight tracking is outermost so shutdown waits for every request; the access log comes
        # next so it sees the final status of every request, errors included.
        middlewares=[
            in_flight.middleware,
            access.access_middleware,
            errors_middleware,
            surface.listener_guard,  # with a management listener: which routes each port serves
            encoding.identity_only,  # compressed bodies: 415 before anything reads them
            auth.admin_guard,
        ],
        client_max_size=settings.server.max_body_bytes,
        handler_args={**limits.handler_args(settings), **encoding.handler_args()},
    )
    app[appkeys.IN_FLIGHT] = in_flight
    app[appkeys.SETTINGS] = settings
    app[appkeys.ROUTER] = LocaleRouter(
        {lang: bot.locales for lang, bot in settings.bots.items()}, settings.default_bot
    )
    app[appkeys.BACKGROUND] = set()
    # Reads every bot's endpoints.yml and imports in-process action code: errors stop start-up here.
    app[appkeys.ACTION_CLIENT] = ActionClient()
    app[appkeys.BOT_ACTIONS] = {
        lang: BotActions(bot, app[appkeys.ACTION_CLIENT]) for lang, bot in settings.bots.items()
    }
    # First: a bad google.jwks_file stops start-up before any model is loaded.
    app.cleanup_ctx.append(google_auth.google_verification)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_action_client)
    app.cleanup_ctx.append(_agent_pool)
    app.cleanup_ctx.append(event_brokers)  # closes after the background turns stored their events
    app.cleanup_ctx.append(_background_turns)
    # Initial load, model store, events and swaps; sets app[STARTUP], which the monitor waits for.
    app.cleanup_ctx.append(model_updates(resolve_models))
    app.cleanup_ctx.append(_health_monitor)
    app.cleanup_ctx.append(replica_heartbeat)  # which model this process answers with, for the console

    webhook.install(app)  # every enabled channel's routes and resources (gateway/channels/registry.py)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/bots", health.list_bots)
    app.router.add_get("/bots/{lang}/ping", health.ping_bot)
    # auth.admin_guard answers 404 for /admin/* while admin.token is unset, 401 without the token.
    app.router.add_get("/admin/status", admin_status.admin_status)
    app.router.add_get("/metrics", health.prometheus)
    if settings.admin.token:
        admin.add_routes(app.router)
        console.add_routes(app.router)
    return app


async def _redis(app: web.Application) -> AsyncIterator[None]:
    async with redis_client(app[appkeys.SETTINGS]) as client:
        app[appkeys.REDIS] = client
        yield


async def _action_client(app: web.Application) -> AsyncIterator[None]:
    async with app[appkeys.ACTION_CLIENT]:
        yield


async def _agent_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    client = app[appkeys.REDIS]
    inference = InferenceThread() if settings.server.inference == "thread" else None
    if inference is not None:
        inference.start()
    turns = TurnBuffer()  # shared: each turn's tracker read and write ride on its lock's round trips
    app[appkeys.POOL] = AgentPool(
        settings.bots,
        tracker_stores_for(settings, client, turns),
        conversation_locks(settings, client, turns),
        verifier=verifier_for(settings.models),
        running_turns=settings.server.running_turns,
        inference=inference,
        graph_runner=settings.server.graph_runner,
        max_batch=settings.server.max_batch,
        actions=app[appkeys.BOT_ACTIONS],
    )
    yield
    if inference is not None:
        await inference.stop()


async def _health_monitor(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS].monitor
    if settings.interval_seconds <= 0:
        yield  # monitor off: gateway_bot_up moves only with /bots/{lang}/ping
        return
    monitor = Monitor(app[appkeys.POOL], settings)
    app[appkeys.MONITOR] = monitor
    task = asyncio.create_task(monitor.run(app[appkeys.STARTUP]), name="health-monitor")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _background_turns(app: web.Application) -> AsyncIterator[None]:
    yield
    pending = app[appkeys.BACKGROUND]
    if pending:
        timeout = app[appkeys.SETTINGS].server.shutdown_timeout_seconds
        _, late = await asyncio.wait(set(pending), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
