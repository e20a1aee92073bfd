"""A conversation stored as one blob of serialised events: the tracker-store contract shared by every backend.

Backends only read and write whole blobs (`_read`, `_write`, `_senders`); a save is therefore one write,
so a crash or an outage can never leave half a tracker behind. Importing this module imports Rasa.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson
from rasa.core.tracker_store import TrackerStore
from rasa.shared.core.conversation import Dialogue
from rasa.shared.core.events import ActionExecuted, Event
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException

from gateway import metrics
from gateway.storage.conversations import MAX_LISTED, ConversationSummary, newest_first, summarize

logger = logging.getLogger(__name__)

# Bound on remembered reads whose turn never saved (a failed turn), so the map cannot grow for ever.
_MAX_REMEMBERED = 10_000

EventDict = dict[str, Any]
SESSION_START = "action_session_start"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


Stored = Callable[[], None]


class EventSink(Protocol):
    """Where stored events also go (an event broker's publisher, see gateway/brokers/publisher.py)."""

    def publish(self, lang: str, sender_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Take events that were just stored, in order; must neither block nor raise."""
        ...


class CorruptTracker(ValueError):
    """A stored blob is not a serialised conversation."""


def encode(sender_id: str, events: Sequence[EventDict]) -> bytes:
    """The blob for `events`: Rasa's dialogue layout `{"name", "events"}`, so Rasa's own tools can read it."""
    return orjson.dumps({"name": sender_id, "events": list(events)}, option=_DUMPS_OPTIONS)


def decode(blob: bytes) -> list[EventDict]:
    """The event dicts in `blob`, or CorruptTracker."""
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise CorruptTracker(f"not JSON: {exc}") from exc
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) and "event" in e for e in events):
        raise CorruptTracker("no list of events")
    return events


def last_session_start(events: Sequence[EventDict]) -> int:
    """Index where the newest conversation session begins (0 when there is only one)."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("event") == ActionExecuted.type_name and event.get("name") == SESSION_START:
            return index
    return 0


def _identity(event: EventDict) -> tuple[Any, ...]:
    # Rasa stamps every event with time.time(); with the type and name it identifies an event.
    return (event.get("event"), event.get("timestamp"), event.get("name"))


def merge(prior: Sequence[EventDict], new: Sequence[EventDict]) -> list[EventDict]:
    """The stored history after saving `new` over `prior`.

    Rasa hands `save` a tracker holding only the newest session (what `retrieve` returned) plus this
    turn's events, so `new` normally starts somewhere inside `prior`: keep what came before that point.
    Anything else (a history that does not line up) keeps `prior` and appends the events it lacks.
    """
    if not prior:
        return list(new)
    if not new:
        return list(prior)
    ids_prior = [_identity(e) for e in prior]
    ids_new = [_identity(e) for e in new]
    for start, identity in enumerate(ids_prior):
        overlap = len(prior) - start
        if identity == ids_new[0] and overlap <= len(new) and ids_prior[start:] == ids_new[:overlap]:
            return [*prior[:start], *new]
    known = set(ids_prior)
    logger.warning("saved tracker does not continue the stored one; appending its %d events", len(new))
    return [*prior, *(e for e, key in zip(new, ids_new, strict=True) if key not in known)]


class EventLogTrackerStore(TrackerStore, metaclass=abc.ABCMeta):
    """Rasa's TrackerStore contract over whole-conversation blobs; subclasses say where blobs live.

    A shallow copy shares the storage but may hold another domain: each loaded model gets its own copy,
    so a model swap never changes the domain under a model that is still answering.
    """

    backend = "event-log"

    def __init__(self, lang: str, domain: Any = None) -> None:
        super().__init__(domain)
        self.lang = lang
        # sender -> events as read by this turn's retrieve, reused by its save: turns of one conversation
        # run under its lock (across processes too), so nobody writes in between and the save needs
        # neither a second read nor a second decode. Shared by the per-model copies; popped on save.
        self._read_this_turn: dict[str, list[EventDict]] = {}
        # The event broker's publisher, when the bot has one: gets each save's new events once stored.
        self.event_sink: EventSink | None = None

    @abc.abstractmethod
    async def _read(self, sender_id: str, operation: str) -> bytes | None:
        """The blob of `sender_id`; `operation` (retrieve, save) names the caller in error metrics."""

    @abc.abstractmethod
    async def _write(self, sender_id: str, blob: bytes, stored: Stored | None = None) -> None:
        """Replace `sender_id`'s blob in one atomic write; call `stored` once it is written for sure.

        (The Redis store may write later, with the conversation lock's release: `stored` then runs
        only if that release wrote it.)
        """

    @abc.abstractmethod
    async def _senders(self) -> list[str]:
        """Every stored conversation id."""

    @abc.abstractmethod
    async def _delete(self, sender_id: str) -> bool:
        """Remove `sender_id`'s blob; whether there was one."""

    async def _events(self, sender_id: str, operation: str = "retrieve") -> list[EventDict] | None:
        events = await self._decoded(sender_id, operation)
        if operation == "retrieve":
            if len(self._read_this_turn) >= _MAX_REMEMBERED:
                self._read_this_turn.clear()  # retrieves never followed by a save (failed turns)
            self._read_this_turn[sender_id] = events or []
        return events

    async def _decoded(self, sender_id: str, operation: str) -> list[EventDict] | None:
        blob = await self._read(sender_id, operation)
        if blob is None:
            return None
        try:
            return decode(blob)
        except CorruptTracker as exc:
            # Refusing the conversation forever would not heal it; start it afresh instead.
            metrics.TRACKER_ERRORS.labels(self.lang, "decode").inc()
            logger.error("%s tracker of %s is unreadable (%s); starting afresh", self.backend, sender_id, exc)
            return None

    def _tracker(self, sender_id: str, events: Iterable[EventDict]) -> DialogueStateTracker:
        """A tracker with this store's domain, replaying `events` (slots the domain lacks are ignored)."""
        tracker = self.init_tracker(sender_id)
        parsed = [event for event in map(self._event, events) if event is not None]
        tracker.recreate_from_dialogue(Dialogue(sender_id, parsed))
        return tracker

    def _event(self, data: EventDict) -> Event | None:
        try:
            return Event.from_parameters(data)
        except (RasaException, AttributeError, KeyError, TypeError, ValueError) as exc:
            # One unreadable event (e.g. written by another Rasa version) must not lose the conversation.
            metrics.TRACKER_ERRORS.labels(self.lang, "decode").inc()
            logger.error("%s tracker: skipping unreadable %s event: %s", self.backend, data.get("event"), exc)
            return None

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Store the tracker's events after the earlier sessions already stored, in one write."""
        sender_id = tracker.sender_id
        prior = self._read_this_turn.pop(sender_id, None)
        if prior is None:  # saved without a retrieve in this turn: read what is stored
            prior = await self._decoded(sender_id, "save") or []
        events = merge(prior, [e.as_dict() for e in tracker.events])
        # The merge keeps `prior` whole, so what this save adds is its tail: exactly the events Rasa's
        # own stream_events would publish (its diff against the stored tracker), which is not called
        # here because it would read the tracker once more.
        await self._write(
            sender_id, encode(sender_id, events), self._publisher(sender_id, events[len(prior) :])
        )

    def _publisher(self, sender_id: str, fresh: list[EventDict]) -> Stored | None:
        sink = self.event_sink
        if sink is None or not fresh:
            return None
        lang = self.lang
        return lambda: sink.publish(lang, sender_id, fresh)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        """The newest conversation session of `sender_id`, or None."""
        events = await self._events(sender_id)
        if events is None:
            return None
        return self._tracker(sender_id, events[last_session_start(events) :])

    async def retrieve_full_tracker(self, sender_id: str) -> DialogueStateTracker | None:
        """Every session of `sender_id`, or None."""
        events = await self._events(sender_id)
        if events is None:
            return None
        return self._tracker(sender_id, events)

    async def keys(self) -> Iterable[str]:
        """Every stored conversation id."""
        return await self._senders()

    async def events(self, sender_id: str) -> list[EventDict] | None:
        """Every stored event of `sender_id` as dicts (all sessions), or None: what transcripts show."""
        return await self._decoded(sender_id, "transcript")

    async def conversations(self, limit: int = MAX_LISTED) -> tuple[list[ConversationSummary], bool]:
        """Summaries of up to `limit` stored conversations, newest first, and whether more were left out."""
        senders = await self._senders()
        truncated = len(senders) > limit
        senders = senders[:limit]
        summaries = []
        for sender_id, blob in zip(senders, await self._read_many(senders), strict=True):
            if blob is None:  # expired or erased since the scan
                continue
            try:
                summaries.append(summarize(sender_id, decode(blob)))
            except CorruptTracker:
                summaries.append(summarize(sender_id, []))  # listed, so it can be looked at and erased
        return newest_first(summaries), truncated

    async def _read_many(self, sender_ids: Sequence[str]) -> list[bytes | None]:
        """The blobs of `sender_ids`, in order (None where there is none); backends may batch this."""
        return [await self._read(sender_id, "list") for sender_id in sender_ids]

    async def erase(self, sender_id: str) -> bool:
        """Forget `sender_id`'s conversation (erasure on request); whether there was one."""
        self._read_this_turn.pop(sender_id, None)
        return await self._delete(sender_id)
