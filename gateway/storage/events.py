"""Model events: "language X should now run model Y", in process (embedded) or over Redis pub/sub.

The Redis channel per language is `settings.channel_for(lang)` (default `{project}-{lang}`); a message is
the plain model file name (what the original pipeline publishes) or JSON `{"model": ..., "sha256": ...}`.
Pub/sub drops messages while a subscriber is away, so after every (re)connect the subscriber replays the
durable active model of each language (see active_models.py); listeners must therefore be idempotent.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisClusterException, RedisError

from gateway import metrics
from gateway.errors import EventBusError
from gateway.settings import Settings
from gateway.storage import redis_client
from gateway.storage.active_models import ActiveModels, ActiveRecord
from gateway.storage.model_store import ModelRef

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
# What ends a subscription session (then it backs off and starts over).
_SESSION_ERRORS: tuple[type[BaseException], ...] = (
    RedisError,
    RedisClusterException,
    *redis_client.TRANSIENT_ERRORS,
    EventBusError,
)


class _Stopped(enum.Enum):
    STOP = "stop"  # what _next returns once the bus is closed


STOP: Final = _Stopped.STOP
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
        """Deliver events to `listener` until closed or cancelled."""

    async def close(self) -> None:
        """Make `run` return."""


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
        self._queue: asyncio.Queue[tuple[str, ModelRef] | None] = asyncio.Queue()
        self._running = False

    @property
    def connected(self) -> bool:
        return self._running

    async def publish(self, lang: str, ref: ModelRef) -> None:
        """Queue the event for this process's listener."""
        self._queue.put_nowait((lang, ref))

    async def run(self, listener: Listener) -> None:
        """Deliver queued events until closed or cancelled."""
        self._running = True
        metrics.EVENT_BUS_CONNECTED.set(1)
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                listener(*item)
        finally:
            self._running = False
            metrics.EVENT_BUS_CONNECTED.set(0)

    async def close(self) -> None:
        """Make `run` return after the events queued so far."""
        self._queue.put_nowait(None)


class RedisEventBus:
    """Redis pub/sub on one channel per language, reconnecting with capped exponential backoff.

    Stopping is cooperative (`close`): redis-py 4.6 wraps reads in async_timeout, including a zero
    timeout on every connection checkout, which on Python 3.10 can swallow a task cancellation. For
    the same reason the subscription reads on its own connection without a socket timeout, and a PING
    every `ping_seconds` detects a silently dead connection instead. The durable active models are
    replayed after every (re)connect and every `reconcile_seconds`.

    On Redis Cluster a message published on any node reaches the subscribers of every node, and
    redis-py 4.x's asyncio RedisCluster has no pub/sub: the subscription is a plain connection to one
    node, and each reconnect moves on to the next node the cluster client knows (so a dead node is
    left behind), while publishing goes to any node.
    """

    def __init__(
        self,
        client: redis_client.RedisClient,
        settings: Settings,
        active: ActiveModels,
        langs: Iterable[str],
        *,
        backoff_seconds: tuple[float, float] = (0.1, 5.0),
        ping_seconds: float = 15.0,
        reconcile_seconds: float = 60.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.active = active
        self.channels = {settings.channel_for(lang): lang for lang in langs}
        self.backoff = backoff_seconds
        self.ping_seconds = ping_seconds
        self.reconcile_seconds = reconcile_seconds
        self._connected = False
        self._stop = asyncio.Event()
        # Cluster mode: which node the next subscription uses (a random start spreads a fleet's gateways).
        self._sessions = random.randrange(1 << 16)

    @property
    def connected(self) -> bool:
        return self._connected

    async def publish(self, lang: str, ref: ModelRef) -> None:
        """PUBLISH the model on the language's channel."""
        channel = self.settings.channel_for(lang)
        try:
            if isinstance(self.client, RedisCluster):
                # redis-py 4.x's asyncio RedisCluster has no publish(); PUBLISH has no key, so any node
                # will do (and a retry after a dead node picks another one).
                receivers = await self.client.execute_command(
                    "PUBLISH", channel, encode_message(ref), target_nodes=RedisCluster.RANDOM
                )
            else:
                receivers = await self.client.publish(channel, encode_message(ref))
        except redis_client.REDIS_ERRORS as exc:
            raise EventBusError(f"cannot publish {ref.model} on {channel}: {exc}") from exc
        # On a cluster the count is only the subscribers of the node that took the message.
        logger.info("published %s on %s (%s subscribers)", ref.model, channel, receivers)

    async def _subscriber_client(self) -> aioredis.Redis:
        """A client like the shared one (same server, auth, TLS) whose connections never time out reads."""
        if isinstance(self.client, RedisCluster):
            return await self._node_client(self.client)
        shared = self.client.connection_pool
        kwargs = {**shared.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        pool = aioredis.ConnectionPool(connection_class=shared.connection_class, max_connections=2, **kwargs)
        return aioredis.Redis(connection_pool=pool)

    async def _node_client(self, cluster: RedisCluster) -> aioredis.Redis:
        """A plain client of the next cluster node in turn (URL credentials and TLS, no read timeout)."""
        await cluster.initialize()  # no-op when the topology is known; raises when no node answers
        nodes = sorted(cluster.get_nodes(), key=lambda node: node.name)
        if not nodes:
            raise EventBusError("the Redis Cluster client knows no node to subscribe on")
        node = nodes[self._sessions % len(nodes)]
        self._sessions += 1
        assert self.settings.redis.url is not None  # a RedisEventBus exists only with Redis configured
        kwargs = {**parse_url(self.settings.redis.url), "host": node.host, "port": node.port}
        kwargs.update(socket_timeout=None, health_check_interval=0, max_connections=2)
        return aioredis.Redis(connection_pool=aioredis.ConnectionPool(**kwargs))

    async def run(self, listener: Listener) -> None:
        """Subscribe, replay the active models, deliver messages; on failure back off and start over."""
        delay = self.backoff[0]
        subscriber: aioredis.Redis | None = None
        try:
            while not self._stop.is_set():
                try:
                    if subscriber is None or isinstance(self.client, RedisCluster):
                        if subscriber is not None:
                            await subscriber.close(close_connection_pool=True)
                            subscriber = None
                        subscriber = await self._subscriber_client()
                    await self._session(subscriber, listener)
                except _SESSION_ERRORS as exc:
                    if self._connected:
                        logger.warning("event bus: lost Redis (%s); reconnecting", exc)
                        delay = self.backoff[0]
                    else:
                        logger.debug("event bus: Redis still unreachable (%s)", exc)
                self._set_connected(False)
                # Jitter keeps a fleet of replicas from reconnecting in lockstep.
                if await _next(None, delay * random.uniform(0.5, 1.0), self._stop) is STOP:
                    return
                delay = min(delay * 2, self.backoff[1])
        finally:
            self._set_connected(False)
            if subscriber is not None:
                await subscriber.close(close_connection_pool=True)

    async def close(self) -> None:
        """Make `run` return at its next step."""
        self._stop.set()

    async def _session(self, subscriber: aioredis.Redis, listener: Listener) -> None:
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        inbox: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        reader: asyncio.Task[None] | None = None
        try:
            await pubsub.subscribe(*self.channels)
            reader = asyncio.create_task(_read(pubsub, inbox), name="model-events-reader")
            # Whatever was announced while we were away is only in the durable record now.
            await self._reconcile(listener)
            self._set_connected(True)  # Redis answered: the subscription is live
            logger.info("event bus: subscribed to %s", ", ".join(self.channels))
            loop = asyncio.get_running_loop()
            reconciled, pinged = loop.time(), False
            while True:
                item = await _next(inbox, min(self.ping_seconds, self.reconcile_seconds), self._stop)
                if item is STOP:
                    return
                if loop.time() - reconciled >= self.reconcile_seconds:
                    # Also periodically: a swap that failed for a transient reason (store down) is retried.
                    await self._reconcile(listener)
                    reconciled = loop.time()
                if item is None:  # quiet for a while: is the connection still alive?
                    if pinged:
                        raise EventBusError(f"no answer to PING within {self.ping_seconds}s")
                    await pubsub.ping()
                    pinged = True
                    continue
                pinged = False
                if isinstance(item, BaseException):
                    raise item
                if item.get("type") == "message":
                    self._deliver(listener, item["channel"], item["data"])
        finally:
            if reader is not None:
                reader.cancel()
                # redis-py 4.6 can swallow a cancellation inside its async_timeout: never wait for ever.
                await asyncio.wait({reader}, timeout=1.0)
            await pubsub.reset()  # closes the connection, which ends a reader that ignored the cancel
            if reader is not None and not reader.done():
                await asyncio.wait({reader}, timeout=1.0)
                if not reader.done():
                    logger.warning("event bus: the old subscription reader did not stop; abandoning it")

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


async def _read(pubsub: PubSub, inbox: asyncio.Queue[dict[str, Any] | BaseException]) -> None:
    """Move every pub/sub message (and pong) into `inbox`; a connection error ends the session."""
    try:
        async for message in pubsub.listen():
            inbox.put_nowait(message)
    except (RedisError, *redis_client.TRANSIENT_ERRORS) as exc:
        inbox.put_nowait(exc)
    else:
        inbox.put_nowait(EventBusError("subscription ended"))


async def _next(
    inbox: asyncio.Queue[dict[str, Any] | BaseException] | None, timeout: float, stop: asyncio.Event
) -> dict[str, Any] | BaseException | _Stopped | None:
    """The next inbox item, STOP once `stop` is set, or None after `timeout` (asyncio.wait, unlike
    3.10's wait_for, never swallows a cancellation that races with a result)."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    getter = asyncio.ensure_future(inbox.get()) if inbox is not None else None
    if getter is not None:
        waiters.add(getter)
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    if stop.is_set():
        return STOP
    return getter.result() if getter is not None and getter.done() else None
