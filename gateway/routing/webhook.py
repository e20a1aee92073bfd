"""The webhook handler of every channel: admit, read, decode, route by locale, answer in time, encode."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway import appkeys, metrics
from gateway.agents.pool import Bot
from gateway.auth.admin import refusal_response
from gateway.channels import chips, passthrough, rich, system_intents
from gateway.channels.channel import Channel
from gateway.channels.dialogflow_es_channel import DialogflowEsChannel
from gateway.channels.google import GoogleChannel
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.channels.registry import enabled_channels
from gateway.errors import ActionFailed, BadRequest, BotNotReady, Refused, StorageError
from gateway.routing import access, surface
from gateway.routing.body import parse_json, read_bytes

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200) -> web.Response:
    """orjson-encoded JSON response."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, reason: str) -> web.Response:
    return json_response({"error": reason}, status)


def install(app: web.Application) -> None:
    """Serve every enabled channel: its routes, and its resources as one cleanup context."""
    channels = enabled_channels(app[appkeys.SETTINGS])
    paths: set[str] = set()
    for channel in channels:
        for path in channel.post_paths:
            app.router.add_post(path, _handler(channel))
            paths.add(path)
        for path, body in channel.get_routes.items():
            app.router.add_get(path, _fixed(body))
            paths.add(path)
    app[surface.CHANNEL_PATHS] = frozenset(paths)  # what the public listener serves besides health

    async def channel_resources(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for channel in channels:
                await stack.enter_async_context(channel.running(app))
            yield

    app.cleanup_ctx.append(channel_resources)


def _handler(channel: Channel) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await channel_webhook(request, channel)

    return handle


def _fixed(body: JSON) -> Handler:
    async def fixed(request: web.Request) -> web.StreamResponse:
        return json_response(body)

    return fixed


async def channel_webhook(request: web.Request, channel: Channel) -> web.Response:
    """POST on one of `channel`'s paths."""
    started = asyncio.get_running_loop().time()
    try:
        await channel.admit(request)  # before the body is read: strangers get nothing parsed
    except Refused as exc:
        return _refused(request, channel, exc)
    return await webhook_turn(request, started, channel)


async def webhook_turn(
    request: web.Request, started: float, channel: Channel | None = None, payload: str = ""
) -> web.Response:
    """One webhook exchange once the caller is admitted (a channel's own check, or the console's
    simulator, which speaks Google's shape). `payload`: a Rasa message the gateway sends in place of a
    message turn's text (the simulator's Restart; never from the request body)."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    if channel is None:
        channel = GoogleChannel(settings)
    note = access.webhook_exchange(request)
    note.channel = channel.name
    try:
        raw = await read_bytes(request, settings.server.max_body_bytes, settings.server.read_timeout_seconds)
        body = parse_json(raw)
        await channel.accept(request, raw, body)
        codec, turn = channel.decode(request, body)
        note.channel = codec.channel
        if payload and turn.kind is TurnKind.MESSAGE:
            turn = dataclasses.replace(turn, payload=payload)
        memory_key = chips.key_of(settings.google.memory_key)
        turn = chips.recall(turn, memory_key)  # a tapped chip reaches the bot as its button's payload
    except Refused as exc:
        return _refused(request, channel, exc)
    except BadRequest as exc:
        return error_response(exc.status, exc.reason)
    if turn.kind is TurnKind.ENDED:
        return json_response(codec.encode(turn, Reply([], end_conversation=True)))
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
    reply = await answer(app, bot, turn, started, namespace=channel.namespace, input_channel=channel.name)
    reply = chips.prepare(reply, turn, bot.settings.prompts, memory_key)
    return json_response(codec.encode(turn, reply))


def _refused(request: web.Request, channel: Channel, exc: Refused) -> web.Response:
    metrics.AUTH_FAILURES.labels(channel.name, exc.label).inc()
    logger.info("refused webhook request on %s: %s", request.path[:200], exc.label)
    return refusal_response(exc.status, f"unauthorized: {exc.text}")


async def answer(
    app: web.Application,
    bot: Bot,
    turn: Turn,
    started: float | None = None,
    *,
    namespace: str = "",
    input_channel: str = "google",
) -> Reply:
    """The bot's reply to `turn`, or the gateway's own prompt when the bot cannot give one in time.

    The deadline counts from `started` (the request's arrival, loop time). Past it the user hears
    the timeout prompt while the turn finishes in the background, so the tracker stays whole.
    """
    settings = app[appkeys.SETTINGS]
    prompts = bot.settings.prompts
    if turn.kind is TurnKind.CANCEL:
        return Reply([{"text": prompts.cancel}], end_conversation=True)
    if turn.kind is TurnKind.WELCOME:
        text = bot.settings.welcome
    elif turn.payload:
        text = turn.payload  # built by the gateway, not typed: the one way a payload reaches the bot
        if bot.model is not None and bot.model.agent.domain is not None:
            text = system_intents.for_domain(text, bot.model.agent.domain.intents)
    else:
        text = user_text(turn.text)[: settings.server.max_text_chars]
    if turn.kind is TurnKind.NO_INPUT or not text.strip():
        # Silence is not an utterance: reprompt without a turn; the last reprompt ends it.
        return Reply([{"text": prompts.no_input}], end_conversation=turn.final)
    now = asyncio.get_running_loop().time()
    remaining = settings.server.deadline_seconds - (now - (now if started is None else started))
    sender = sender_id(bot.lang, turn.session_id, namespace)
    pool = app[appkeys.POOL]
    metadata = {"intent": turn.intent, **turn.context}  # tracker.latest_message["metadata"] in actions
    task = asyncio.create_task(pool.respond(bot.lang, sender, text, metadata, input_channel))
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
    except ActionFailed as exc:  # the turn was dropped whole (gateway/agents/action_guard.py)
        metrics.UNAVAILABLE.labels(bot.lang, "action").inc()
        logger.warning("bot %s: %s", bot.lang, exc)
        return Reply([{"text": prompts.unavailable}])
    except StorageError as exc:
        metrics.UNAVAILABLE.labels(bot.lang, "storage").inc()
        logger.error("bot %s: %s", bot.lang, exc)
        return Reply([{"text": prompts.unavailable}])
    except Exception:  # a bug inside the bot must not become a 5xx for Google; it is logged in full
        logger.exception("bot %s: turn for %s failed", bot.lang, turn.session_id)
        return Reply([{"text": prompts.unavailable}])
    messages = never_silent(messages, prompts.empty, google=input_channel in _GOOGLE_SHAPED)
    return Reply(messages, end_conversation=_ends(messages, settings.ending_actions))


# Channels whose codecs answer in Google's shapes, where custom.google is passed through.
_GOOGLE_SHAPED = frozenset({GoogleChannel.name, DialogflowEsChannel.name})


def never_silent(messages: list[JSON], empty_prompt: str, *, google: bool = False) -> list[JSON]:
    """`messages` with the language's empty prompt added when none of them says anything."""
    # Images, chips and custom payloads alone are no prompt: Google needs a simple response first. On
    # the channels answering in Google's shapes (`google`), a custom.google simple response is one.
    if rich.texts(messages) or (google and passthrough.speaks(messages)):
        return messages
    return [*messages, {"text": empty_prompt}]


def sender_id(lang: str, session_id: str, namespace: str = "") -> str:
    """The Rasa sender of a session, namespaced by channel and language: trackers never mix.

    Google's namespace is empty (`en:<session>`, as before channels existed); the others end in ':' and
    are longer than any language code, so no session id on one channel can name another's tracker.
    """
    return f"{namespace}{lang}:{session_id}"


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
        if isinstance(custom, dict) and passthrough.ends(custom.get("google")):
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
