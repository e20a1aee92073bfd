"""Admin API for models (bearer token): list, activate, roll back. Registered only when admin.token is set."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import appkeys, metrics
from gateway.agents.loader import LoadedModel
from gateway.agents.pool import Bot
from gateway.auth.admin import require_admin
from gateway.errors import (
    ActiveModelConflict,
    AuthError,
    BadRequest,
    EventBusError,
    GatewayError,
    ModelError,
    ModelNotFound,
    StorageError,
    UnknownBot,
)
from gateway.routing import admin_console
from gateway.routing.body import read_json
from gateway.routing.webhook import error_response, json_response
from gateway.storage.events import announce
from gateway.storage.model_store import ModelRef

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]
ADMIN_MAX_BODY = 4096


def add_routes(router: web.UrlDispatcher) -> None:
    """Register /admin/models routes, and the console's (conversations, swaps, replicas, simulator)."""
    router.add_get("/admin/models", _admin(list_models))
    router.add_post("/admin/models/{lang}/activate", _admin(activate))
    router.add_post("/admin/models/{lang}/rollback", _admin(rollback))
    router.add_get("/admin/swaps", _admin(admin_console.recent_swaps))
    router.add_get("/admin/replicas", _admin(admin_console.list_replicas))
    router.add_post("/admin/simulate", _admin(admin_console.simulate))
    router.add_get("/admin/conversations/{lang}", _admin(admin_console.list_conversations))
    conversation = "/admin/conversations/{lang}/{sender:.+}"
    router.add_get(conversation, _admin(admin_console.show_conversation))
    router.add_delete(conversation, _admin(admin_console.erase_conversation))


def _admin(handler: Handler) -> Handler:
    """Check the bearer token first; map gateway errors to JSON 4xx/5xx answers."""

    async def guarded(request: web.Request) -> web.Response:
        try:
            require_admin(request)
        except AuthError as exc:
            reason = "missing_token" if "Authorization" not in request.headers else "wrong_token"
            metrics.AUTH_FAILURES.labels("admin", reason).inc()
            logger.warning("admin: refused %s %s: %s", request.method, request.path, exc)
            return error_response(401, str(exc))
        try:
            return await handler(request)
        except BadRequest as exc:
            return error_response(exc.status, exc.reason)
        except UnknownBot as exc:
            return error_response(404, str(exc))
        except ModelNotFound as exc:
            return error_response(404, str(exc))
        except ActiveModelConflict as exc:
            return error_response(409, str(exc))
        except ModelError as exc:  # refused: corrupt, wrong checksum, failed load or probe
            return error_response(422, str(exc))
        except StorageError as exc:  # store or Redis unreachable
            return error_response(503, str(exc))

    return guarded


def _bot(request: web.Request) -> Bot:
    return request.app[appkeys.POOL].get(request.match_info["lang"])


def _ref(model: LoadedModel | None) -> ModelRef | None:
    return ModelRef(model.name, model.sha256) if model is not None else None


async def list_models(request: web.Request) -> web.Response:
    """GET /admin/models: per language the answering model, the previous one, the durable active
    record, the last error and the archives in the store."""
    app = request.app
    store, active = app[appkeys.MODEL_STORE], app[appkeys.ACTIVE_MODELS]
    out: dict[str, Any] = {}
    for lang, bot in app[appkeys.POOL].bots.items():
        entry = bot.describe()
        entry["swapping"] = app[appkeys.SWAPPER].busy(lang)
        entry["swap"] = app[appkeys.POOL].progress.current(lang)  # loading, warming, live or refused
        try:
            record = await active.get(lang)
            entry["active"] = record.to_json() if record else None
        except EventBusError as exc:
            entry["active"], entry["active_error"] = None, str(exc)
        try:
            stored = await store.list_models(lang)
            current = bot.model.name if bot.model else None
            entry["available"] = [
                {
                    **info.to_json(),
                    "answering": info.name == current,
                    "tests": await admin_console.test_verdict(store, lang, info),
                }
                for info in stored
            ]
        except StorageError as exc:
            entry["available"], entry["store_error"] = None, str(exc)
        out[lang] = entry
    events = {"connected": app[appkeys.EVENTS].connected}
    return json_response({"store": app[appkeys.MODEL_STORE].kind, "events": events, "models": out})


async def activate(request: web.Request) -> web.Response:
    """POST /admin/models/{lang}/activate {"model": name[, "sha256": hex]}: load here first (a model that
    fails is refused with 422 and nothing is announced), then record it as active and announce it."""
    bot = _bot(request)
    body = await read_json(request, ADMIN_MAX_BODY)
    try:
        ref = ModelRef(body.get("model"), body.get("sha256"))  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    previous = _ref(bot.model)
    model = await request.app[appkeys.SWAPPER].swap(bot.lang, ref)
    record = await _announce(request, bot.lang, model, previous)
    logger.info("admin: %s activated %s", bot.lang, model.name)
    return json_response({"lang": bot.lang, **model.describe(), "active": record})


async def rollback(request: web.Request) -> web.Response:
    """POST /admin/models/{lang}/rollback: go back to the model active before the current one."""
    app = request.app
    bot = _bot(request)
    active = app[appkeys.ACTIVE_MODELS]
    record = await active.get(bot.lang)
    if record is not None:
        if not record.history:
            raise BadRequest(
                f"nothing to roll back to for {bot.lang}: {record.current.model} is the oldest", status=409
            )
        target, expected = record.history[0], record.current
    elif bot.previous is not None:  # nothing recorded yet (e.g. embedded start-up): use what ran before
        target, expected = ModelRef(bot.previous.name, bot.previous.sha256), None
    else:
        raise BadRequest(f"nothing to roll back to for {bot.lang}: no earlier model is known", status=409)
    current = _ref(bot.model)
    model = await app[appkeys.SWAPPER].swap(bot.lang, target)
    if expected is None:
        body = await _announce(request, bot.lang, model, current)
    else:
        rolled = await active.rollback(bot.lang, expected)
        await _publish(request, bot.lang, rolled.current)
        body = rolled.to_json()
    logger.info("admin: %s rolled back to %s", bot.lang, model.name)
    return json_response({"lang": bot.lang, **model.describe(), "active": body})


async def _announce(
    request: web.Request, lang: str, model: LoadedModel, previous: ModelRef | None
) -> dict[str, Any]:
    app = request.app
    ref = ModelRef(model.name, model.sha256)
    try:
        record = await announce(app[appkeys.EVENTS], app[appkeys.ACTIVE_MODELS], lang, ref, previous)
    except GatewayError as exc:
        raise EventBusError(
            f"{ref.model} answers here but could not be recorded and announced, so gateways (this one "
            f"included, at its next reconcile) keep the recorded active model: {exc}"
        ) from exc
    return record.to_json()


async def _publish(request: web.Request, lang: str, ref: ModelRef) -> None:
    try:
        await request.app[appkeys.EVENTS].publish(lang, ref)
    except EventBusError as exc:
        raise EventBusError(f"{ref.model} is active but could not be announced: {exc}") from exc
