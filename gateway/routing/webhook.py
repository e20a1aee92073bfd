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
from gateway.routing import access, google_auth, rich
from gateway.routing.actions_builder import ActionsBuilderCodec
from gateway.routing.body import read_json
from gateway.routing.conversation_v2 import ConversationV2Codec
from gateway.routing.dialogflow import DialogflowCodec
from gateway.routing.protocol import JSON, Codec, Reply, Turn, TurnKind

logger = logging.getLogger(__name__)

# Most specific shape first: a Dialogflow body nests an AppRequest, an AppRequest has no handler.
CODECS: tuple[Codec, ...] = (DialogflowCodec(), ConversationV2Codec(), ActionsBuilderCodec())


def detect(body: JSON) -> Codec:
    """The codec whose shape `body` has, or BadRequest."""
    for codec in CODECS:
        if codec.matches(body):
            return codec
    raise BadRequest(
        "unrecognised webhook body: expected an Actions Builder, conversation v2 or Dialogflow request"
    )


def json_response(body: Any, status: int = 200) -> web.Response:
    """orjson-encoded JSON response."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status)


async def google_webhook(request: web.Request) -> web.Response:
    """POST /webhook/google (alias /google_action)."""
    started = asyncio.get_running_loop().time()
    refused = await google_auth.refusal(request)  # before the body is read: strangers get nothing parsed
    if refused is not None:
        return refused
    return await webhook_turn(request, started)


async def webhook_turn(request: web.Request, started: float) -> web.Response:
    """One webhook exchange once the caller is trusted (Google, or the console's simulator)."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    note = access.webhook_exchange(request)
    try:
        body = await read_json(request, settings.server.max_body_bytes, settings.server.read_timeout_seconds)
        codec = detect(body)
        note.channel = codec.channel
        turn = codec.decode(body)
    except BadRequest as exc:
        return error_response(exc.status, exc.reason)
    route = app[appkeys.ROUTER].route(turn.locale)
    if turn.kind is TurnKind.HEALTH_CHECK:
        # Never touches a bot or a tracker; shapes that need a prompt get the polite goodbye.
        prompts = settings.bots[route.lang].prompts
        return json_response(codec.encode(turn, Reply([{"text": prompts.cancel}], end_conversation=True)))
    if route.is_fallback:
        metrics.LOCALE_FALLBACKS.labels(metrics.locale_label(route.locale or "none")).inc()
        logger.info("locale %r matched no bot; using default %s", turn.locale, route.lang)
    bot = app[appkeys.POOL].get(route.lang)
    note.lang, note.locale, note.text = bot.lang, route.locale, turn.text
    note.model = bot.model.name if bot.model else None
    reply = await answer(app, bot, turn, started)
    return json_response(codec.encode(turn, reply))


async def answer(app: web.Application, bot: Bot, turn: Turn, started: float | None = None) -> Reply:
    """The bot's reply to `turn`, or the gateway's own prompt when the bot cannot give one in time.

    The deadline counts from `started` (the request's arrival, loop time). Past it the user hears
    the timeout prompt while the turn finishes in the background, so the tracker stays whole.
    """
    settings = app[appkeys.SETTINGS]
    prompts = bot.settings.prompts
    if turn.kind is TurnKind.CANCEL:
        return Reply([{"text": prompts.cancel}], end_conversation=True)
    text = bot.settings.welcome if turn.kind is TurnKind.WELCOME else user_text(turn.text)
    text = text[: settings.server.max_text_chars]
    if turn.kind is TurnKind.NO_INPUT or not text.strip():
        # Silence is not an utterance: reprompt without a turn; the last reprompt ends it.
        return Reply([{"text": prompts.no_input}], end_conversation=turn.final)
    now = asyncio.get_running_loop().time()
    remaining = settings.server.deadline_seconds - (now - (now if started is None else started))
    sender = sender_id(bot.lang, turn.session_id)
    pool = app[appkeys.POOL]
    task = asyncio.create_task(pool.respond(bot.lang, sender, text, {"intent": turn.intent}))
    try:
        # shield: the deadline cancels our wait, never the turn itself.
        messages = await asyncio.wait_for(asyncio.shield(task), max(remaining, 0.0))
    except asyncio.TimeoutError:
        _keep_in_background(app, task)
        metrics.DEADLINE_OVERRUNS.labels(bot.lang).inc()
        logger.warning("bot %s: turn for %s passed the deadline", bot.lang, turn.session_id)
        return Reply([{"text": prompts.timeout}])
    except asyncio.CancelledError:
        _keep_in_background(app, task)  # the request went away; the turn still completes
        raise
    except BotNotReady:
        metrics.UNAVAILABLE.labels(bot.lang, "not_ready").inc()
        return Reply([{"text": prompts.unavailable}])
    except StorageError as exc:
        metrics.UNAVAILABLE.labels(bot.lang, "storage").inc()
        logger.error("bot %s: %s", bot.lang, exc)
        return Reply([{"text": prompts.unavailable}])
    except Exception:  # a bug inside the bot must not become a 5xx for Google; it is logged in full
        logger.exception("bot %s: turn for %s failed", bot.lang, turn.session_id)
        return Reply([{"text": prompts.unavailable}])
    messages = never_silent(messages, prompts.empty)
    return Reply(messages, end_conversation=_ends(messages, settings.ending_actions))


def never_silent(messages: list[JSON], empty_prompt: str) -> list[JSON]:
    """`messages` with the language's empty prompt added when none of them says anything."""
    # Images, chips and custom payloads alone are no prompt: Google needs a simple response first.
    return messages if rich.texts(messages) else [*messages, {"text": empty_prompt}]


def sender_id(lang: str, session_id: str) -> str:
    """The Rasa sender of a Google session, namespaced by language: a locale switch cannot mix trackers."""
    return f"{lang}:{session_id}"


def user_text(raw: str) -> str:
    """What the user said, without the leading '/' of Rasa's intent shortcut ("/inform{...}").

    Users must not pick intents or set slots directly; Rasa strips whitespace before looking for
    the '/', so whitespace and slashes are stripped together until neither leads.
    """
    text = raw
    while (stripped := text.strip().lstrip("/")) != text:
        text = stripped
    return text


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


def _keep_in_background(app: web.Application, task: asyncio.Task[Any]) -> None:
    """Hold a reference to a turn that outlived its request until it finishes (cleanup awaits it)."""
    background = app[appkeys.BACKGROUND]
    background.add(task)
    task.add_done_callback(_finish_background(background))


def _finish_background(background: set[asyncio.Task[Any]]) -> Any:
    def done(task: asyncio.Task[Any]) -> None:
        background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("late turn failed: %s", task.exception())

    return done
