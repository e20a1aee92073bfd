"""Operator endpoints: liveness, readiness, per-bot status and ping, Prometheus metrics."""

from __future__ import annotations

import os

from aiohttp import web

from gateway import appkeys, exposition, worker_state
from gateway.agents import monitor
from gateway.auth.admin import require_admin
from gateway.errors import AuthError, UnknownBot
from gateway.routing import surface
from gateway.routing.webhook import error_response, json_response


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive (no I/O); `pid` tells which worker answered."""
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 once every configured bot has a model, else 503 naming those still missing.

    With workers: 200 once every worker taking traffic is ready, whichever worker answers.
    """
    pool = request.app[appkeys.POOL]
    bots = {lang: bot.describe() for lang, bot in pool.bots.items()}
    waiting = pool.not_ready()
    ready = not waiting
    extra: dict[str, object] = {}
    worker = request.app.get(worker_state.WORKER)
    if worker is not None:
        ready, extra = worker_state.aggregate(worker.directory, list(pool.bots))
    body = {
        "status": "ready" if ready else "not ready",
        "waiting": waiting,
        "bots": bots,
        "pid": os.getpid(),
        **extra,
    }
    if surface.public_only(request):  # model names and errors only on the management listener
        del body["bots"]
    return json_response(body, 200 if ready else 503)


async def list_bots(request: web.Request) -> web.Response:
    """GET /bots: each bot's language, locales, model, state and last probe."""
    pool = request.app[appkeys.POOL]
    return json_response({"bots": [bot.describe() for bot in pool.bots.values()]})


async def ping_bot(request: web.Request) -> web.Response:
    """GET /bots/{lang}/ping: run the probe text (or ?text=) through the bot on a throwaway tracker."""
    app = request.app
    pool = app[appkeys.POOL]
    lang = request.match_info["lang"]
    try:
        bot = pool.get(lang)
    except UnknownBot as exc:
        return error_response(404, str(exc))
    custom = request.query.get("text", "")[: app[appkeys.SETTINGS].server.max_text_chars]
    if custom and custom != bot.settings.probe:
        # Free text runs a real turn on any bot: only for operators (the probe text is a health check).
        try:
            require_admin(request)
        except AuthError as exc:
            raise AuthError(f"?text= needs the admin token: {exc}") from None
    # Only the configured probe text counts as a health probe; free text is a diagnostic.
    result = await monitor.probe(
        pool,
        lang,
        app[appkeys.SETTINGS].monitor.timeout_seconds,
        custom or None,
        record=not custom or custom == bot.settings.probe,
    )
    body = {"lang": lang, **result.describe()}
    if not result.ok:
        body["error"] = f"bot {lang} failed its probe: {result.error}"
    return json_response(body, 200 if result.ok else 503)


async def prometheus(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format; reads counters only, never waits on a bot."""
    return web.Response(body=exposition.render(), headers={"Content-Type": exposition.CONTENT_TYPE})
