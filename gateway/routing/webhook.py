"""The Google webhook handler: decode, route by locale, run the turn under a deadline, encode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys, metrics
from gateway.agents.pool import Bot
from gateway.errors import BadRequest, BotNotReady, StorageError
from gateway.routing import access
from gateway.routing.actions_builder import ActionsBuilderCodec
from gateway.routing.body import read_json
from gateway.routing.protocol import JSON, Codec, Reply, Turn, TurnKind

logger = logging.getLogger(__name__)

CODECS: tuple[Codec, ...] = (ActionsBuilderCodec(),)


def detect(body: JSON) -> Codec:
    """The codec whose shape `body` has, or BadRequest."""
    for codec in CODECS:
        if codec.matches(body):
            return codec
    raise BadRequest("unrecognised webhook body: expected an Actions on Google conversation request")


def json_response(body: Any, status: int = 200) -> web.Response:
    """orjson-encoded JSON response."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status)


async def google_webhook(request: web.Request) -> web.Response:
    """POST /webhook/google (alias /google_action)."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    note = access.webhook_exchange(request)
    try:
        body = await read_json(request, settings.server.max_body_bytes)
        codec = detect(body)
        note.channel = codec.channel
        turn = codec.decode(body)
    except BadRequest as exc:
        return error_response(exc.status, exc.reason)
    if turn.kind is TurnKind.HEALTH_CHECK:
        return json_response(codec.encode(turn, Reply([])))
    route = app[appkeys.ROUTER].route(turn.locale)
    if route.is_fallback:
        metrics.LOCALE_FALLBACKS.labels(metrics.locale_label(route.locale or "none")).inc()
        logger.info("locale %r matched no bot; using default %s", turn.locale, route.lang)
    bot = app[appkeys.POOL].get(route.lang)
    note.lang, note.locale, note.text = bot.lang, route.locale, turn.text
    note.model = bot.model.name if bot.model else None
    reply = await answer(app, bot, turn)
    return json_response(codec.encode(turn, reply))


async def answer(app: web.Application, bot: Bot, turn: Turn) -> Reply:
    """The bot's reply to `turn`, or the gateway's own prompt when the bot cannot give one in time."""
    settings = app[appkeys.SETTINGS]
    prompts = bot.settings.prompts
    if turn.kind is TurnKind.CANCEL:
        return Reply([{"text": prompts.cancel}], end_conversation=True)
    text = bot.settings.welcome if turn.kind is TurnKind.WELCOME else turn.text
    text = text[: settings.server.max_text_chars]
    # Namespaced by language: a session that changes locale cannot corrupt another bot's tracker.
    sender_id = f"{bot.lang}:{turn.session_id}"
    pool = app[appkeys.POOL]
    task = asyncio.create_task(pool.respond(bot.lang, sender_id, text, {"intent": turn.intent}))
    try:
        messages = await asyncio.wait_for(asyncio.shield(task), settings.server.deadline_seconds)
    except asyncio.TimeoutError:
        # Let the turn finish so the tracker stays consistent; answer now.
        background = app[appkeys.BACKGROUND]
        background.add(task)
        task.add_done_callback(_finish_background(background))
        logger.warning("bot %s: turn for %s passed the deadline", bot.lang, turn.session_id)
        metrics.DEADLINE_OVERRUNS.labels(bot.lang).inc()
        return Reply([{"text": prompts.timeout}])
    except BotNotReady:
        metrics.UNAVAILABLE.labels(bot.lang, "not_ready").inc()
        return Reply([{"text": prompts.unavailable}])
    except StorageError as exc:
        logger.error("bot %s: %s", bot.lang, exc)
        metrics.UNAVAILABLE.labels(bot.lang, "storage").inc()
        return Reply([{"text": prompts.unavailable}])
    if not any(m.get("text") or m.get("image") or m.get("custom") for m in messages):
        messages = [*messages, {"text": prompts.empty}]
    return Reply(messages, end_conversation=_ends(messages, settings.ending_actions))


def _ends(messages: list[JSON], ending_actions: frozenset[str]) -> bool:
    for message in messages:
        if message.get("utter_action") in ending_actions:
            return True
        custom = message.get("custom")
        if isinstance(custom, dict):
            google = custom.get("google")
            if isinstance(google, dict) and google.get("expectUserResponse") is False:
                return True
    return False


def _finish_background(background: set[asyncio.Task[Any]]) -> Any:
    def done(task: asyncio.Task[Any]) -> None:
        background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("late turn failed: %s", task.exception())

    return done
