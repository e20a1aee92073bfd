"""Liveness, readiness and per-bot status endpoints."""

from __future__ import annotations

import os
import time

from aiohttp import web

from gateway import appkeys
from gateway.errors import BotNotReady, UnknownBot
from gateway.routing.webhook import error_response, json_response


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: the process is alive (no I/O); `pid` tells which worker answered."""
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 once every configured bot has a model, else 503 naming those still missing."""
    pool = request.app[appkeys.POOL]
    bots = {lang: bot.describe() for lang, bot in pool.bots.items()}
    waiting = pool.not_ready()
    body = {
        "status": "ready" if not waiting else "not ready",
        "waiting": waiting,
        "bots": bots,
        "pid": os.getpid(),
    }
    return json_response(body, 200 if not waiting else 503)


async def list_bots(request: web.Request) -> web.Response:
    """GET /bots: each bot's language, locales, model and state."""
    pool = request.app[appkeys.POOL]
    return json_response({"bots": [bot.describe() for bot in pool.bots.values()]})


async def ping_bot(request: web.Request) -> web.Response:
    """GET /bots/{lang}/ping: run the probe text (or ?text=) through the bot on a throwaway tracker."""
    pool = request.app[appkeys.POOL]
    lang = request.match_info["lang"]
    try:
        bot = pool.get(lang)
    except UnknownBot as exc:
        return error_response(404, str(exc))
    text = request.query.get("text") or bot.settings.probe
    started = time.perf_counter()
    try:
        messages = await pool.ping(lang, text[: request.app[appkeys.SETTINGS].server.max_text_chars])
    except BotNotReady as exc:
        return error_response(503, str(exc))
    latency = time.perf_counter() - started
    texts = [m["text"] for m in messages if m.get("text")]
    model = bot.model
    body = {
        "lang": lang,
        "model": model.name if model else None,
        "text": text,
        "reply": texts,
        "latency_seconds": round(latency, 4),
    }
    return json_response(body, 200 if texts else 503)
