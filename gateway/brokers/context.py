"""The event brokers as one resource of the application (see gateway/brokers/publisher.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import appkeys
from gateway.brokers.publisher import running_publishers


async def event_brokers(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: each bot's tracker store also hands its stored events to the bot's broker.

    Registered after the agent pool (its stores exist, no model is loaded yet, so every per-model copy
    of a store inherits the sink) and before the background turns, so on shutdown it closes only after
    the last late turn stored its events.
    """
    settings = app[appkeys.SETTINGS]
    async with running_publishers(settings) as publishers:
        app[appkeys.EVENT_PUBLISHERS] = publishers
        if publishers.by_lang:
            from gateway.storage.event_log import EventLogTrackerStore

            pool = app[appkeys.POOL]
            for lang, publisher in publishers.by_lang.items():
                store = pool.get(lang).tracker_store
                if isinstance(store, EventLogTrackerStore):
                    store.event_sink = publisher
        yield
