"""Admin API behind the console: conversations (list, transcript, erase), recent swaps, replicas, the
simulator."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway import appkeys
from gateway.agents.pool import Bot
from gateway.delivery.records import RECORD_SUFFIX
from gateway.errors import BadRequest, StorageError
from gateway.model_names import MODEL_SUFFIX
from gateway.routing import access, webhook
from gateway.routing.webhook import json_response
from gateway.storage.conversations import transcript
from gateway.storage.model_store import ModelInfo, ModelStore
from gateway.storage.replicas import REPLICAS

if TYPE_CHECKING:
    from gateway.storage.event_log import EventLogTrackerStore

logger = logging.getLogger(__name__)

MAX_PAGE = 200
MAX_SENDER_CHARS = 512
RESTART = "/restart"  # Rasa's default intent: the restart rule runs action_restart (a `restart` event)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name}={value} is out of range {low}..{high}")
    return value


async def test_verdict(store: ModelStore, lang: str, info: ModelInfo) -> dict[str, Any] | None:
    """What `gateway test` recorded beside a stored model: passed, failed (why) or stale; None untested."""
    try:
        data = await store.get_companion(lang, info.name.removesuffix(MODEL_SUFFIX) + RECORD_SUFFIX)
    except StorageError as exc:
        return {"verdict": "unknown", "detail": str(exc)}
    if data is None:
        return None
    try:
        record = orjson.loads(data)
        passed, failures, sha256 = (
            bool(record["passed"]),
            list(record.get("failures") or []),
            record["sha256"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return {"verdict": "unreadable", "detail": f"{type(exc).__name__}: {exc}"}
    tested_at = record.get("tested_at")
    if info.sha256 and sha256 != info.sha256:
        return {"verdict": "stale", "detail": "recorded for other bytes", "tested_at": tested_at}
    detail = "; ".join(str(f) for f in failures)[:300]
    return {"verdict": "passed" if passed else "failed", "detail": detail, "tested_at": tested_at}


def _store(bot: Bot) -> EventLogTrackerStore:
    # Imported on use: event_log imports Rasa, which `import gateway.app` should not pay for.
    from gateway.storage.event_log import EventLogTrackerStore

    store = bot.tracker_store
    if not isinstance(store, EventLogTrackerStore):
        raise BadRequest(f"the tracker store of {bot.lang} cannot list conversations", status=501)
    return store


def _sender(request: web.Request) -> str:
    sender = request.match_info["sender"]
    if not sender or len(sender) > MAX_SENDER_CHARS:
        raise BadRequest(f"conversation id must be 1..{MAX_SENDER_CHARS} characters")
    return sender


async def list_conversations(request: web.Request) -> web.Response:
    """GET /admin/conversations/{lang}?offset=&limit=: stored conversations, newest first, one page."""
    bot = request.app[appkeys.POOL].get(request.match_info["lang"])
    offset = _int_param(request, "offset", 0, 0, 1_000_000)
    limit = _int_param(request, "limit", 20, 1, MAX_PAGE)
    store = _store(bot)
    summaries, truncated = await store.conversations()
    page = summaries[offset : offset + limit]
    return json_response(
        {
            "lang": bot.lang,
            "backend": store.backend,
            "total": len(summaries),
            "truncated": truncated,
            "offset": offset,
            "limit": limit,
            "conversations": [s.to_json() for s in page],
        }
    )


async def show_conversation(request: web.Request) -> web.Response:
    """GET /admin/conversations/{lang}/{sender}: one conversation as a transcript (every session)."""
    bot = request.app[appkeys.POOL].get(request.match_info["lang"])
    sender = _sender(request)
    events = await _store(bot).events(sender)
    if events is None:
        return webhook.error_response(404, f"no stored conversation {sender!r} for {bot.lang}")
    return json_response({"lang": bot.lang, "sender_id": sender, "transcript": transcript(events)})


async def erase_conversation(request: web.Request) -> web.Response:
    """DELETE /admin/conversations/{lang}/{sender}: erase a conversation on request."""
    bot = request.app[appkeys.POOL].get(request.match_info["lang"])
    sender = _sender(request)
    if not await _store(bot).erase(sender):
        return webhook.error_response(404, f"no stored conversation {sender!r} for {bot.lang}")
    logger.info("admin: erased conversation %s of %s", sender, bot.lang)
    return json_response({"lang": bot.lang, "sender_id": sender, "erased": True})


async def recent_swaps(request: web.Request) -> web.Response:
    """GET /admin/swaps: the swaps this process ran lately, newest first, and each language's latest."""
    pool = request.app[appkeys.POOL]
    progress = pool.progress
    return json_response(
        {"current": {lang: progress.current(lang) for lang in pool.bots}, "recent": progress.recent()}
    )


async def list_replicas(request: web.Request) -> web.Response:
    """GET /admin/replicas: every live gateway process sharing this one's Redis (this one alone when
    embedded), each with the model it answers with per language; `error` says why others may be missing."""
    replicas = request.app[REPLICAS]
    records, error = await replicas.list()
    return json_response(
        {
            "self": replicas.id,
            "shared": replicas.client is not None,
            "heartbeat_seconds": replicas.interval,
            "error": error,
            "replicas": records,
        }
    )


async def simulate(request: web.Request) -> web.Response:
    """POST /admin/simulate: a webhook body, answered by the webhook's own path, with what answered it.

    The admin token stands in for Google's token, so the console works on the management listener
    (which does not serve /webhook/google) and with Google verification on. With `?restart=true` the
    message turn is Rasa's /restart instead of its text (the Restart button): typed text never picks an
    intent, so this is the one way to restart a conversation, and only with the admin token.
    """
    started = asyncio.get_running_loop().time()
    restart = request.query.get("restart", "false")
    if restart not in ("true", "false"):
        raise BadRequest(f"query parameter restart={restart[:40]!r} must be true or false")
    payload = RESTART if restart == "true" else ""
    answer = await webhook.webhook_turn(request, started, payload=payload)
    note = access.exchange_of(request)
    body = answer.body if isinstance(answer.body, bytes) else b"null"
    return json_response(
        {
            "status": answer.status,
            "response": orjson.loads(body),
            "lang": note.lang,
            "locale": note.locale,
            "model": note.model,
            "latency_ms": round((asyncio.get_running_loop().time() - started) * 1000, 1),
            "request_id": note.request_id,
        }
    )
