"""Tracker stores: where conversation state lives (in memory by default, Redis when configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.settings import Settings

if TYPE_CHECKING:
    from rasa.core.tracker_store import TrackerStore


def in_memory_store() -> TrackerStore:
    """Rasa's in-memory tracker store; the domain is set when a model loads."""
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain

    return InMemoryTrackerStore(Domain.empty())


def tracker_stores_for(settings: Settings) -> dict[str, TrackerStore]:
    """One store per language, kept across model swaps so conversations survive them."""
    return {lang: in_memory_store() for lang in settings.bots}
