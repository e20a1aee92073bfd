"""Model events: "language X should now run model Y", in process (embedded) or over Redis pub/sub.

The Redis channel per language is `settings.channel_for(lang)` (default `{project}-{lang}`); a message is
the plain model file name (what the original pipeline publishes) or JSON `{"model": ..., "sha256": ...}`.
Pub/sub drops messages while a subscriber is away, so after every (re)connect the subscriber replays the
durable active model of each language (see active_models.py); listeners must therefore be idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Iterable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.errors import EventBusError
from gateway.settings import Settings
from gateway.storage import redis_client
from gateway.storage.active_models import ActiveModels, ActiveRecord
from gateway.storage.model_store import ModelRef

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
# Called for every announcement (and every replayed active model); must not block.
Listener = Callable[[str, ModelRef], None]


def parse_message(data: bytes | str) -> ModelRef:
    """A model reference from a channel message (plain file name or JSON), else ValueError."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"event message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise ValueError("event message is not valid UTF-8") from None
    text = text.strip()
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"event message is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or "model" not in body:
            raise ValueError('event JSON must be an object like {"model": "<name>.tar.gz", "sha256": "..."}')
        return ModelRef(body["model"], body.get("sha256"))
    return ModelRef(text)


def encode_message(ref: ModelRef) -> str:
    """The channel message for `ref`: JSON when the sha256 is known, else the plain name."""
    return json.dumps(ref.to_json()) if ref.sha256 else ref.model


class EventBus(Protocol):
    """Announce and receive model events."""

    @property
    def connected(self) -> bool:
        """Whether the subscription is live."""

    async def publish(self, lang: str, ref: ModelRef) -> None:
        """Tell every gateway that `lang` should run `ref`."""

    async def run(self, listener: Listener) -> None:
        """Deliver events to `listener` until cancelled."""


async def announce(
    bus: EventBus, active: ActiveModels, lang: str, ref: ModelRef, previous: ModelRef | None = None
) -> ActiveRecord:
    """Record `ref` as the durable active model of `lang`, then publish it (in that order, so a
    subscriber that misses the message finds the record when it reconnects)."""
    record = await active.activate(lang, ref, previous)
    await bus.publish(lang, ref)
    return record


class InProcessEventBus:
    """Events within one process (embedded mode): a queue drained by `run`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, ModelRef]] = asyncio.Queue()
        self._running = False

    @property
    def connected(self) -> bool:
        return self._running

    async def publish(self, lang: str, ref: ModelRef) -> None:
        """Queue the event for this process's listener."""
        self._queue.put_nowait((lang, ref))

    async def run(self, listener: Listener) -> None:
        """Deliver queued events until cancelled."""
        self._running = True
        metrics.EVENT_BUS_CONNECTED.set(1)
        try:
            while True:
                lang, ref = await self._queue.get()
                listener(lang, ref)
        finally:
            self._running = False
            metrics.EVENT_BUS_CONNECTED.set(0)


class RedisEventBus:
    """Redis pub/sub on one channel per language, reconnecting with capped exponential backoff."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: Settings,
        active: ActiveModels,
        langs: Iterable[str],
        *,
        backoff_seconds: tuple[float, float] = (0.1, 5.0),
        poll_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.active = active
        self.channels = {settings.channel_for(lang): lang for lang in langs}
        self.backoff = backoff_seconds
        self.poll_seconds = poll_seconds
        self._connected = False
        self._reconnected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def publish(self, lang: str, ref: ModelRef) -> None:
        """PUBLISH the model on the language's channel."""
        channel = self.settings.channel_for(lang)
        try:
            receivers = await self.client.publish(channel, encode_message(ref))
        except (RedisError, *redis_client.TRANSIENT_ERRORS) as exc:
            raise EventBusError(f"cannot publish {ref.model} on {channel}: {exc}") from exc
        logger.info("published %s on %s (%s subscribers)", ref.model, channel, receivers)

    async def run(self, listener: Listener) -> None:
        """Subscribe, replay the active models, deliver messages; on failure back off and start over."""
        delay = self.backoff[0]
        try:
            while True:
                try:
                    await self._session(listener)
                except (RedisError, *redis_client.TRANSIENT_ERRORS, EventBusError) as exc:
                    if self._connected:
                        logger.warning("event bus: lost Redis (%s); reconnecting", exc)
                        delay = self.backoff[0]
                    else:
                        logger.debug("event bus: Redis still unreachable (%s)", exc)
                self._set_connected(False)
                # Jitter keeps a fleet of replicas from reconnecting in lockstep.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.backoff[1])
        finally:
            self._set_connected(False)

    async def _session(self, listener: Listener) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self.channels)
            # redis-py reconnects a pub/sub connection by itself on some errors; whatever was published
            # meanwhile is lost, so treat every (re)connect as a reason to replay the active models.
            if pubsub.connection is not None:
                pubsub.connection.register_connect_callback(self._on_reconnect)
            self._set_connected(True)
            logger.info("event bus: subscribed to %s", ", ".join(self.channels))
            await self._reconcile(listener)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_seconds)
                if self._reconnected:
                    self._reconnected = False
                    await self._reconcile(listener)
                if message is not None and message.get("type") == "message":
                    self._deliver(listener, message["channel"], message["data"])
        finally:
            await pubsub.reset()

    def _on_reconnect(self, connection: object) -> None:
        self._reconnected = True

    async def _reconcile(self, listener: Listener) -> None:
        """Replay each language's durable active model (the listener skips what already runs)."""
        for lang in self.channels.values():
            record = await self.active.get(lang)
            if record is not None:
                listener(lang, record.current)

    def _deliver(self, listener: Listener, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        lang = self.channels.get(name)
        if lang is None:
            return
        try:
            ref = parse_message(data)
        except ValueError as exc:
            logger.error("event bus: ignoring a message on %s: %s", name, exc)
            return
        logger.info("event bus: %s announced %s", lang, ref.model)
        listener(lang, ref)

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            metrics.EVENT_BUS_CONNECTED.set(1 if connected else 0)
