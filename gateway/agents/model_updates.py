"""Wiring of hot model updates into the app: model store, active models, event bus, swapper, start-up load."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from gateway import appkeys
from gateway.agents.swapper import Swapper
from gateway.settings import Settings
from gateway.storage.active_models import ActiveModels, InMemoryActiveModels, RedisActiveModels
from gateway.storage.events import EventBus, InProcessEventBus, RedisEventBus
from gateway.storage.model_store import model_store_for

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0
LocalModels = Callable[[Settings], Mapping[str, Path | None]]


def model_updates(resolve_local: LocalModels) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: load each language's model at start-up, then follow model events until shutdown."""

    async def updates(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        client = app[appkeys.REDIS]
        store = model_store_for(settings)
        active: ActiveModels
        bus: EventBus
        if client is None:
            active, bus = InMemoryActiveModels(), InProcessEventBus()
        else:
            active = RedisActiveModels(client, settings)
            bus = RedisEventBus(
                client, settings, active, settings.bots, reconcile_seconds=settings.events.reconcile_seconds
            )
        swapper = Swapper(app[appkeys.POOL], store)
        app[appkeys.MODEL_STORE] = store
        app[appkeys.ACTIVE_MODELS] = active
        app[appkeys.EVENTS] = bus
        app[appkeys.SWAPPER] = swapper
        # Load in the background: the server answers /healthz (and 503 on /readyz) meanwhile.
        startup = asyncio.create_task(
            swapper.load_initial(active, resolve_local(settings), prefer_store=store.kind != "local"),
            name="initial-load",
        )
        app[appkeys.STARTUP] = startup
        subscriber = asyncio.create_task(_follow(startup, bus, swapper), name="model-events")
        try:
            yield
        finally:
            await bus.close()
            for task in (subscriber, startup):
                task.cancel()
            # Bounded: a cancellation swallowed inside redis-py must not hang shutdown.
            _, late = await asyncio.wait({subscriber, startup}, timeout=STOP_TIMEOUT_SECONDS)
            for task in late:
                logger.warning("%s did not stop within %ss", task.get_name(), STOP_TIMEOUT_SECONDS)
            await swapper.close()
            await store.close()

    return updates


async def _follow(startup: asyncio.Task[None], bus: EventBus, swapper: Swapper) -> None:
    # Subscribe after the start-up load so it cannot overwrite a newer model; whatever was announced
    # meanwhile is replayed from the durable active record when the subscription starts.
    await asyncio.wait([startup])
    await bus.run(swapper.request)
