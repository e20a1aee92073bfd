"""The access log: request id, one log line per request and the webhook request metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway import appkeys, metrics
from gateway.logs import REQUEST_ID

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# Client ids are echoed into headers and logs: printable, no spaces or separators that could forge lines.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
# Probed every few seconds by orchestrators and Prometheus: logged at DEBUG so INFO stays readable.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_EXCHANGE = "gateway.exchange"
NO_LANG = "none"  # label of webhook requests that never reached a bot (bad body, health check)


@dataclass
class Exchange:
    """What the log line and the metrics say about one request; the webhook handler fills it in."""

    request_id: str
    tracked: bool = False  # made by access_middleware, which will count and log it
    webhook: bool = False
    channel: str = "unknown"
    lang: str | None = None
    locale: str | None = None
    model: str | None = None
    text: str | None = None


def request_id_from(headers: Mapping[str, str]) -> str:
    """The client's X-Request-Id when it is a sane token, else a fresh one."""
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def exchange_of(request: web.Request) -> Exchange:
    """The request's Exchange (made here when no middleware made one)."""
    exchange = request.get(_EXCHANGE)
    if not isinstance(exchange, Exchange):
        exchange = Exchange(request_id_from(request.headers))
        request[_EXCHANGE] = exchange
    return exchange


def webhook_exchange(request: web.Request) -> Exchange:
    """Mark `request` as a webhook request (counted in gateway_requests_total) and return its Exchange."""
    exchange = exchange_of(request)
    if not exchange.webhook:
        exchange.webhook = True
        if exchange.tracked:  # only the middleware's finish can take it back down
            metrics.IN_FLIGHT.inc()
    return exchange


@web.middleware
async def access_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give the request an id (echoed in X-Request-Id), then log and count it once it is answered."""
    started = time.perf_counter()
    exchange = Exchange(request_id_from(request.headers), tracked=True)
    request[_EXCHANGE] = exchange
    token = REQUEST_ID.set(exchange.request_id)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = exchange.request_id
        return response
    except web.HTTPException as exc:  # redirects and friends that the error middleware let through
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = exchange.request_id
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer (nginx's convention)
        raise
    finally:
        REQUEST_ID.reset(token)
        _finish(request, exchange, status, time.perf_counter() - started)


def _finish(request: web.Request, exchange: Exchange, status: int, seconds: float) -> None:
    if exchange.webhook:
        metrics.IN_FLIGHT.dec()
        metrics.REQUESTS.labels(exchange.channel, exchange.lang or NO_LANG, str(status)).inc()
        if exchange.lang is not None:
            metrics.REQUEST_LATENCY.labels(exchange.lang).observe(seconds)
    show_text = request.app[appkeys.SETTINGS].logging.user_text
    extra: dict[str, Any] = {
        "request_id": exchange.request_id,
        "method": request.method,
        "path": request.path,
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
    }
    if exchange.webhook:
        extra.update(channel=exchange.channel, lang=exchange.lang, model=exchange.model)
        extra.update(locale=exchange.locale)
        if show_text:
            extra["text"] = exchange.text
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields = "".join(f" {k}={extra[k]}" for k in ("channel", "lang", "model") if k in extra)
    text = f" text={exchange.text!r}" if show_text and exchange.webhook else ""
    logger.log(
        level,
        "%s %s %s %.1fms%s%s",
        request.method,
        request.path,
        status,
        seconds * 1000,
        fields,
        text,
        extra=extra,
    )
    if exchange.webhook and not show_text and exchange.text is not None:
        # Privacy: what users say is only logged on request (logging.user_text) or at DEBUG.
        logger.debug("user text: %r", exchange.text, extra={"request_id": exchange.request_id})
