"""Publishing stored events to an event broker off the request path, in order, each once.

A tracker store hands a turn's new events to `EventPublisher.publish` after they were stored (for Redis:
after the release script wrote them, see turn_buffer.py), which only appends them to a bounded in-memory
queue. One task per broker (per distinct configuration, shared by the languages using it) sends them one
at a time and removes an event only once the broker took it; while the broker is down the task retries
the same event with a growing pause, so nothing is reordered, skipped or sent twice by this process, and
a turn never waits for the broker. Each process publishes the events it stored itself: with several
gateways sharing Redis, each event is stored (under the conversation's lock) and published exactly once.

Bounds: at most MAX_QUEUED_EVENTS events wait per broker (serialised, ~0.2-2 KB each); beyond that new
events are dropped (counted `overflow`) so memory stays bounded during a long outage. On shutdown the
queue gets `server.shutdown_timeout_seconds` to drain; what is left is counted `shutdown` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson

from gateway import metrics
from gateway.brokers.config import BrokerEndpoint, broker_endpoints
from gateway.brokers.sinks import Sink, open_sink
from gateway.errors import ConfigError
from gateway.settings import Settings

logger = logging.getLogger(__name__)

MAX_QUEUED_EVENTS = 50_000
_FIRST_PAUSE_SECONDS = 0.5
_MAX_PAUSE_SECONDS = 5.0
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class EventPublisher:
    """One broker: a bounded queue of (lang, serialised event) and the task that drains it."""

    def __init__(
        self, endpoint: BrokerEndpoint, langs: Sequence[str], max_queued: int = MAX_QUEUED_EVENTS
    ) -> None:
        self.endpoint = endpoint
        self.langs = list(langs)
        self.max_queued = max_queued
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queued_by_lang: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self._emptied.set()
        self._sink: Sink | None = None
        self._task: asyncio.Task[None] | None = None
        self._down_since_failures = 0  # failures in the current outage (0 = up)
        self._overflowing = False
        self._broken = False  # the broker refused its configuration: nothing can be sent

    def publish(self, lang: str, sender_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Queue stored events of `sender_id` for the broker, in order; never blocks, never raises."""
        for event in events:
            if self._broken:
                metrics.EVENT_BROKER_ERRORS.labels(lang, "config").inc()
                continue
            if len(self._queue) >= self.max_queued:
                self._overflow(lang)
                continue
            # Rasa's broker contract: the event's as_dict() with the conversation's sender_id first.
            # Serialised now: a snapshot the turn cannot change later, compact while it waits, and
            # numpy values (from NLU) become plain JSON numbers, exactly as the tracker stored them.
            try:
                body = orjson.dumps({"sender_id": sender_id, **event}, option=_DUMPS_OPTIONS)
            except TypeError as exc:  # cannot happen for what the store could encode; never fail a turn
                metrics.EVENT_BROKER_ERRORS.labels(lang, "unserialisable").inc()
                logger.error("event broker %s: skipping an event: %s", self.endpoint.describe(), exc)
                continue
            self._queue.append((lang, body))
            self._queued_by_lang[lang] += 1
            metrics.EVENT_BROKER_QUEUED.labels(lang).inc()
        if self._queue:
            self._emptied.clear()
            self._wake.set()

    def queued(self, lang: str | None = None) -> int:
        return len(self._queue) if lang is None else self._queued_by_lang[lang]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"event-broker-{self.name}")

    async def _run(self) -> None:
        pause = _FIRST_PAUSE_SECONDS
        while True:
            if self._sink is None:
                try:
                    self._sink = await open_sink(self.endpoint, self.name)
                except ConfigError as exc:
                    self._refuse(exc)
                    return
                except Exception as exc:  # noqa: BLE001 - aio-pika, SQLAlchemy, Kafka, OS errors: retry all
                    self._failed("connect", exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _MAX_PAUSE_SECONDS)
                    continue
                logger.info("event broker %s: connected", self.endpoint.describe())
            if not self._queue:
                self._emptied.set()
                self._overflowing = False  # the next overflow is logged again
                self._wake.clear()
                await self._wake.wait()
                continue
            lang, body = self._queue[0]
            try:
                await self._sink.send(orjson.loads(body))
            except Exception as exc:  # noqa: BLE001 - down or refusing, any client: keep the event, retry
                self._failed("publish", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE_SECONDS)
                continue
            self._queue.popleft()
            self._queued_by_lang[lang] -= 1
            metrics.EVENT_BROKER_QUEUED.labels(lang).dec()
            metrics.EVENT_BROKER_PUBLISHED.labels(lang).inc()
            pause = _FIRST_PAUSE_SECONDS
            if self._down_since_failures:
                logger.warning(
                    "event broker %s: available again after %d failed attempts; sending %d queued events",
                    self.endpoint.describe(),
                    self._down_since_failures,
                    len(self._queue),
                )
                self._down_since_failures = 0
                self._overflowing = False

    @property
    def name(self) -> str:
        return "+".join(self.langs)

    def _failed(self, reason: str, exc: BaseException) -> None:
        lang = self._queue[0][0] if self._queue else self.langs[0]
        metrics.EVENT_BROKER_ERRORS.labels(lang, reason).inc()
        if not self._down_since_failures:  # once per outage; the recovery is logged too
            logger.error(
                "event broker %s: unavailable (%s: %s); events are kept (%d queued, at most %d) and retried",
                self.endpoint.describe(),
                type(exc).__name__,
                exc,
                len(self._queue),
                self.max_queued,
            )
        self._down_since_failures += 1

    def _overflow(self, lang: str) -> None:
        metrics.EVENT_BROKER_ERRORS.labels(lang, "overflow").inc()
        if not self._overflowing:
            self._overflowing = True
            logger.error(
                "event broker %s: %d events queued, the limit; newer events are dropped until it drains",
                self.endpoint.describe(),
                len(self._queue),
            )

    def _refuse(self, exc: ConfigError) -> None:
        self._broken = True
        logger.error("%s; its events are not published (fix the configuration and restart)", exc)
        self._drop("config")

    def _drop(self, reason: str) -> int:
        dropped = len(self._queue)
        for lang, count in self._queued_by_lang.items():
            if count:
                metrics.EVENT_BROKER_ERRORS.labels(lang, reason).inc(count)
                metrics.EVENT_BROKER_QUEUED.labels(lang).dec(count)
        self._queue.clear()
        self._queued_by_lang.clear()
        self._emptied.set()
        return dropped

    async def close(self, timeout: float) -> None:
        """Give the queue `timeout` seconds to drain, then stop; events still queued are counted lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._task is not None and not self._task.done() and self._queue:
            with contextlib.suppress(asyncio.TimeoutError):  # what is left is reported below
                await asyncio.wait_for(self._emptied.wait(), timeout)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        lost = self._drop("shutdown")
        if lost:
            logger.error(
                "event broker %s: %d events not published before shutdown (broker down for %d attempts)",
                self.endpoint.describe(),
                lost,
                self._down_since_failures,
            )
        if self._sink is not None:
            try:
                await self._sink.close(max(1.0, deadline - loop.time()))
            except Exception as exc:  # noqa: BLE001 - stopping anyway: report, never fail the shutdown
                logger.warning(
                    "event broker %s: close failed: %s: %s", self.endpoint.describe(), type(exc).__name__, exc
                )


class Publishers:
    """Per language, the publisher of its broker (languages without a broker are absent)."""

    def __init__(self, by_lang: Mapping[str, EventPublisher]) -> None:
        self.by_lang = dict(by_lang)

    def unique(self) -> Sequence[EventPublisher]:
        return list({id(p): p for p in self.by_lang.values()}.values())

    def get(self, lang: str) -> EventPublisher | None:
        return self.by_lang.get(lang)


def build_publishers(settings: Settings) -> Publishers:
    """One publisher per distinct broker configuration (identical ones are shared by their languages)."""
    endpoints = broker_endpoints(settings.bots)
    shared: dict[str, EventPublisher] = {}
    by_lang: dict[str, EventPublisher] = {}
    for lang, endpoint in endpoints.items():
        publisher = shared.get(endpoint.identity)
        if publisher is None:
            publisher = shared[endpoint.identity] = EventPublisher(endpoint, [lang])
        else:
            publisher.langs.append(lang)
        by_lang[lang] = publisher
    return Publishers(by_lang)


@asynccontextmanager
async def running_publishers(settings: Settings) -> AsyncIterator[Publishers]:
    """The publishers, draining while the app runs; on exit flushed within the shutdown timeout."""
    publishers = build_publishers(settings)
    for publisher in publishers.unique():
        logger.info("event broker %s: publishing events of %s", publisher.endpoint.describe(), publisher.name)
        publisher.start()
    try:
        yield publishers
    finally:
        timeout = settings.server.shutdown_timeout_seconds
        await asyncio.gather(*(p.close(timeout) for p in publishers.unique()))
