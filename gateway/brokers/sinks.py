"""Rasa's event brokers behind one awaitable `send` that raises when the broker did not take the event.

Rasa's brokers are fire-and-forget: `PikaEventBroker.publish` spawns a task and requeues failures out of
order, `SQLEventBroker.publish` and `KafkaEventBroker.publish` block the calling thread (Kafka for up to
five minutes of retries, then drops the event). The publisher needs to know whether each event left, in
order, without ever blocking the event loop, so each broker Rasa's `EventBroker.create` built gets an
adapter here that uses the broker's own message format:

- pika: the broker's own exchange and `_message` (body, app_id, persistent delivery), awaited with
  publisher confirms, so a failure is seen and the same event is retried;
- sql, kafka, file: the blocking client runs on one daemon thread per broker (in order; a stuck call
  never holds the loop or the process's exit);
- any other (a custom class path): its `publish`, on the loop, as `rasa run` would call it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gateway.brokers.config import BrokerEndpoint
from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Body = dict[str, Any]

# A publish that takes longer than this counts as failed and is retried (the broker may be wedged).
SEND_TIMEOUT_SECONDS = 10.0
_BLOCKING_KINDS = frozenset({"sql", "kafka", "file"})


class Sink(Protocol):
    """One broker connection: `send` returns once the broker took `body`, raises otherwise."""

    async def send(self, body: Body) -> None: ...

    async def close(self, timeout: float) -> None: ...


class DaemonWorker:
    """Runs blocking calls one after another on a daemon thread and hands results back to the loop."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((functools.partial(fn, *args), future))
        return await future

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which decides
                result, error = None, exc
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for this result any more
                return


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiting coroutine was cancelled (shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class PikaSink:
    def __init__(self, broker: Any) -> None:
        self.broker = broker

    async def send(self, body: Body) -> None:
        exchange = self.broker._exchange
        if exchange is None:
            raise ConnectionError("RabbitMQ exchange is not declared yet")
        # Rasa's own message (JSON body, app_id = RASA_ENVIRONMENT, persistent), confirmed by RabbitMQ.
        message = self.broker._message(body, None)
        await asyncio.wait_for(exchange.publish(message, ""), SEND_TIMEOUT_SECONDS)

    async def close(self, timeout: float) -> None:
        await asyncio.wait_for(self.broker.close(), timeout)


class BlockingSink:
    """sql / file (their `publish` raises on failure) and kafka (see `_kafka_send`)."""

    def __init__(self, broker: Any, worker: DaemonWorker, kind: str) -> None:
        self.broker = broker
        self.worker = worker
        self.kind = kind
        self._kafka_checked = False

    async def send(self, body: Body) -> None:
        if self.kind == "kafka":
            await self.worker.call(self._kafka_send, body)
        else:
            await self.worker.call(self.broker.publish, body)

    def _kafka_send(self, body: Body) -> None:
        broker = self.broker
        if broker.producer is None:
            broker.producer = broker._create_producer()
        if not self._kafka_checked:
            # Rasa's publish drops the event when this fails; raising keeps it queued for a retry.
            broker._check_kafka_connection()
            self._kafka_checked = True
        try:
            broker._publish(body)  # produce(): queued in librdkafka, which delivers and retries it
            broker.producer.poll(0)  # serve delivery reports (Rasa's poll thread never runs)
        except BaseException:
            self._kafka_checked = False
            raise

    async def close(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.worker.call(self._close_blocking, timeout), timeout)
        finally:
            self.worker.stop()

    def _close_blocking(self, timeout: float) -> None:
        if self.kind == "kafka":
            self.broker._cancelled = True
            if self.broker.producer is not None:
                left = self.broker.producer.flush(timeout)
                if left:
                    logger.error("kafka broker: %d produced events were not delivered before shutdown", left)
        elif self.kind == "sql":
            self.broker.engine.dispose()


class LoopSink:
    """A custom broker class: its `publish` runs on the loop, as in Rasa; what it raises counts."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker

    async def send(self, body: Body) -> None:
        self.broker.publish(body)

    async def close(self, timeout: float) -> None:
        await asyncio.wait_for(self.broker.close(), timeout)


async def open_sink(endpoint: BrokerEndpoint, name: str) -> Sink:
    """Create the broker with Rasa's `EventBroker.create`; ConfigError for a configuration it refuses.

    Anything else it raises (cannot connect yet) is the caller's to retry.
    """
    import sqlalchemy.exc
    from rasa.core.brokers.broker import EventBroker
    from rasa.shared.exceptions import ConnectionException, RasaException

    refused = (TypeError, ValueError, ImportError, RasaException, sqlalchemy.exc.ArgumentError)
    blocking = endpoint.kind in _BLOCKING_KINDS
    worker = DaemonWorker(f"event-broker-{name}") if blocking else None
    try:
        if worker is not None:
            # SQL connects (and creates its table) in its constructor: never on the loop.
            broker = await worker.call(_create_blocking, endpoint)
        else:
            broker = await EventBroker.create(endpoint.config)
    except ConnectionException:
        _stop(worker)
        raise
    except refused as exc:
        _stop(worker)
        raise ConfigError(f"{endpoint.source}: event_broker refused: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        _stop(worker)
        raise
    if broker is None:
        _stop(worker)
        raise ConfigError(f"{endpoint.source}: event_broker type {endpoint.config.type!r} was not found")
    if worker is not None:
        return BlockingSink(broker, worker, endpoint.kind)
    if endpoint.kind == "pika":
        return PikaSink(broker)
    return LoopSink(broker)


def _create_blocking(endpoint: BrokerEndpoint) -> Any:
    from rasa.core.brokers.broker import EventBroker

    # A private loop for Rasa's async factory; these brokers keep no loop-bound state.
    return asyncio.run(EventBroker.create(endpoint.config))


def _stop(worker: DaemonWorker | None) -> None:
    if worker is not None:
        worker.stop()
