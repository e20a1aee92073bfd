"""Tracker stores: where conversation state lives (in memory by default, Redis when configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.storage.event_log import EventLogTrackerStore
    from gateway.storage.redis_client import RedisClient
    from gateway.storage.turn_buffer import TurnBuffer


def tracker_stores_for(
    settings: Settings, client: RedisClient | None = None, turns: TurnBuffer | None = None
) -> dict[str, EventLogTrackerStore]:
    """One store per language, kept across model swaps so conversations survive them.

    With a Redis client every process shares the conversations; without one they live in this process.
    `turns`, shared with the conversation locks, lets turns read and write with the lock's round trips.
    """
    # Imported on use: these modules import Rasa, which `import gateway.app` should not pay for.
    if client is None:
        from gateway.storage.memory_trackers import InMemoryTrackerStore

        return {lang: InMemoryTrackerStore(lang, settings.trackers.ttl_seconds) for lang in settings.bots}
    from gateway.storage.redis_trackers import RedisTrackerStore

    return {lang: RedisTrackerStore(client, settings, lang, turns=turns) for lang in settings.bots}
