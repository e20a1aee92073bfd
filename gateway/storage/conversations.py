"""Conversations for people: a listing summary and a readable transcript built from stored events.

Pure functions over the event dicts a tracker store keeps (see event_log.py); no Rasa import, so the
console's API can shape transcripts without loading TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EventDict = dict[str, Any]

# Listing stops after this many conversations: the console pages through recent ones, not an archive.
MAX_LISTED = 10_000


@dataclass(frozen=True)
class ConversationSummary:
    """One stored conversation, as the console lists it."""

    sender_id: str
    events: int
    turns: int
    started: float | None
    latest: float | None
    last_intent: str | None
    last_text: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "sender_id": self.sender_id,
            "events": self.events,
            "turns": self.turns,
            "started": self.started,
            "latest": self.latest,
            "last_intent": self.last_intent,
            "last_text": self.last_text,
        }


def _timestamp(event: EventDict) -> float | None:
    value = event.get("timestamp")
    return float(value) if isinstance(value, int | float) else None


def _intent(event: EventDict) -> dict[str, Any]:
    parse = event.get("parse_data")
    intent = parse.get("intent") if isinstance(parse, dict) else None
    return intent if isinstance(intent, dict) else {}


def summarize(sender_id: str, events: Sequence[EventDict]) -> ConversationSummary:
    """What the listing shows for `sender_id`: size, first and latest time, the last thing the user said."""
    stamps = [t for t in map(_timestamp, events) if t is not None]
    users = [e for e in events if e.get("event") == "user"]
    last = users[-1] if users else None
    name = _intent(last).get("name") if last else None
    text = last.get("text") if last else None
    return ConversationSummary(
        sender_id=sender_id,
        events=len(events),
        turns=len(users),
        started=min(stamps) if stamps else None,
        latest=max(stamps) if stamps else None,
        last_intent=name if isinstance(name, str) else None,
        last_text=text if isinstance(text, str) else None,
    )


def newest_first(summaries: Sequence[ConversationSummary]) -> list[ConversationSummary]:
    """Most recent activity first; ties (and conversations without times) by id, so pages are stable."""
    return sorted(summaries, key=lambda s: (-(s.latest or 0.0), s.sender_id))


def transcript(events: Sequence[EventDict]) -> list[dict[str, Any]]:
    """One entry per event a person cares about, in order; texts stay raw (the page renders them as text)."""
    out: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        entry: dict[str, Any] = {"timestamp": _timestamp(event)}
        if kind == "user":
            intent = _intent(event)
            parse = event.get("parse_data") if isinstance(event.get("parse_data"), dict) else {}
            entities = parse.get("entities") if isinstance(parse, dict) else None
            entry.update(
                kind="user",
                text=event.get("text"),
                intent=intent.get("name"),
                confidence=intent.get("confidence"),
                entities=[
                    {"entity": e.get("entity"), "value": e.get("value")}
                    for e in (entities or [])
                    if isinstance(e, dict)
                ],
            )
        elif kind == "bot":
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            extras = {k: v for k, v in (data or {}).items() if v not in (None, [], {}, "")}
            entry.update(kind="bot", text=event.get("text"), data=extras)
        elif kind == "action":
            name = event.get("name")
            if name == "action_listen":
                continue  # every turn ends with one; it says nothing
            entry.update(kind="action", name=name, policy=event.get("policy"))
        elif kind == "slot":
            entry.update(kind="slot", name=event.get("name"), value=event.get("value"))
        elif kind == "session_started":
            entry.update(kind="session_started")
        elif kind in ("active_loop", "restart", "followup", "reset_slots", "user_featurization"):
            if kind == "user_featurization":
                continue
            entry.update(kind=kind, name=event.get("name"))
        else:
            continue
        out.append(entry)
    return out
