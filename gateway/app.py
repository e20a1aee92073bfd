"""The aiohttp application: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from gateway import appkeys
from gateway.agents.model_updates import model_updates
from gateway.agents.pool import AgentPool
from gateway.errors import BadRequest, TrainingError
from gateway.routing import admin, health, webhook
from gateway.routing.locale import LocaleRouter
from gateway.settings import Settings
from gateway.storage.redis_client import redis_client
from gateway.storage.trackers import tracker_stores_for
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
    app = web.Application(
        middlewares=[errors_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.ROUTER] = LocaleRouter(
        {lang: bot.locales for lang, bot in settings.bots.items()}, settings.default_bot
    )
    app[appkeys.BACKGROUND] = set()
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_agent_pool)
    app.cleanup_ctx.append(_background_turns)
    app.cleanup_ctx.append(model_updates(resolve_models))

    app.router.add_post("/webhook/google", webhook.google_webhook)
    app.router.add_post("/google_action", webhook.google_webhook)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/bots", health.list_bots)
    app.router.add_get("/bots/{lang}/ping", health.ping_bot)
    if settings.admin.token:
        admin.add_routes(app.router)
    return app


async def _redis(app: web.Application) -> AsyncIterator[None]:
    async with redis_client(app[appkeys.SETTINGS]) as client:
        app[appkeys.REDIS] = client
        yield


async def _agent_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    app[appkeys.POOL] = AgentPool(settings.bots, tracker_stores_for(settings))
    yield


async def _background_turns(app: web.Application) -> AsyncIterator[None]:
    yield
    pending = app[appkeys.BACKGROUND]
    if pending:
        timeout = app[appkeys.SETTINGS].server.shutdown_timeout_seconds
        _, late = await asyncio.wait(set(pending), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
