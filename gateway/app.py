"""The aiohttp application: routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from gateway import appkeys
from gateway.agents.inference import InferenceThread
from gateway.agents.pool import AgentPool
from gateway.errors import BadRequest, TrainingError
from gateway.routing import health, webhook
from gateway.routing.locale import LocaleRouter
from gateway.settings import Settings
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
    app.cleanup_ctx.append(_agent_pool(resolve_models))
    app.cleanup_ctx.append(_background_turns)

    app.router.add_post("/webhook/google", webhook.google_webhook)
    app.router.add_post("/google_action", webhook.google_webhook)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/bots", health.list_bots)
    app.router.add_get("/bots/{lang}/ping", health.ping_bot)
    return app


def _agent_pool(resolve_models: ModelResolver) -> Callable[[web.Application], AsyncIterator[None]]:
    async def agent_pool(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        inference = InferenceThread() if settings.server.inference == "thread" else None
        if inference is not None:
            inference.start()
        pool = AgentPool(
            settings.bots,
            tracker_stores_for(settings),
            running_turns=settings.server.running_turns,
            inference=inference,
        )
        app[appkeys.POOL] = pool
        # Load in the background: the server answers /healthz (and 503 on /readyz) meanwhile.
        task = asyncio.create_task(_load_initial(pool, resolve_models(settings)), name="initial-load")
        app[appkeys.STARTUP] = task
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if inference is not None:
            await inference.stop()

    return agent_pool


async def _load_initial(pool: AgentPool, models: Mapping[str, Path | None]) -> None:
    found = {lang: path for lang, path in models.items() if path is not None}
    for lang in pool.bots:
        if lang not in found:
            pool.mark_failed(lang, f"no model for {lang}: train one with `gateway train {lang}`")
            logger.error("bot %s: no model found; it will answer with its 'unavailable' prompt", lang)
    errors = await pool.load_all(found)
    for lang, error in errors.items():
        if error is None:
            logger.info("bot %s ready (%s)", lang, found[lang].name)


async def _background_turns(app: web.Application) -> AsyncIterator[None]:
    yield
    pending = app[appkeys.BACKGROUND]
    if pending:
        timeout = app[appkeys.SETTINGS].server.shutdown_timeout_seconds
        _, late = await asyncio.wait(set(pending), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
