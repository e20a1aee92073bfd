"""One contract for every tracker store: the in-memory default and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from gateway.settings import ROOT, load_settings
from gateway.storage.event_log import EventLogTrackerStore, encode
from gateway.storage.redis_client import make_client
from gateway.storage.trackers import tracker_stores_for
from tests.support import RedisServer

EN_DOMAIN = Domain.load(str(ROOT / "bots" / "en" / "domain.yml"))
# The same bot after a model swap whose domain dropped `people` and added `seating`.
SWAPPED_DOMAIN = Domain.from_dict(
    {
        **{k: v for k, v in EN_DOMAIN.as_dict().items() if k not in ("slots", "forms")},
        "slots": {"seating": {"type": "text", "initial_value": "inside", "mappings": [{"type": "custom"}]}},
    }
)

StoreFactory = Callable[..., EventLogTrackerStore]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds the store under test for a language, with its settings (e.g. a TTL)."""
    server: RedisServer | None = None
    clients = []
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")

    def factory(lang: str = "en", domain: Domain = EN_DOMAIN, **overrides: Any) -> EventLogTrackerStore:
        settings = load_settings(overrides={f"trackers.{k}": v for k, v in overrides.items()})
        client = None
        if server is not None:
            client = make_client(server.url, 2.0)
            clients.append(client)
        store = tracker_stores_for(settings, client)[lang]
        store.domain = domain
        return store

    yield factory
    for client in clients:
        await client.close(close_connection_pool=True)


def session(sender: str, t0: float, people: str | None = None) -> list[Event]:
    """One conversation session: start, a booking request, and (optionally) the filled slot."""
    events: list[Event] = [
        ActionExecuted("action_session_start", timestamp=t0),
        SessionStarted(timestamp=t0 + 0.001),
        ActionExecuted("action_listen", timestamp=t0 + 0.002),
        UserUttered(
            "book a table",
            {"name": "book_table", "confidence": 0.99},
            timestamp=t0 + 0.003,
            parse_data={"intent": {"name": "book_table", "confidence": 0.99}, "entities": []},
        ),
        ActionExecuted("booking_form", timestamp=t0 + 0.004),
        ActiveLoop("booking_form", timestamp=t0 + 0.005),
        SlotSet("requested_slot", "people", timestamp=t0 + 0.006),
        BotUttered(
            "For how many people?", metadata={"utter_action": "utter_ask_people"}, timestamp=t0 + 0.007
        ),
        ActionExecuted("action_listen", timestamp=t0 + 0.008),
    ]
    if people is not None:
        events.append(UserUttered(people, timestamp=t0 + 0.009))
        events.append(SlotSet("people", people, timestamp=t0 + 0.010))
    return events


def tracker_of(store: EventLogTrackerStore, sender: str, events: list[Event]) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(sender, events, store.domain.slots)


def dicts(tracker: DialogueStateTracker | None) -> list[dict[str, Any]]:
    assert tracker is not None
    return [e.as_dict() for e in tracker.events]


def sender_id() -> str:
    return f"en:session-{uuid.uuid4().hex}"


async def test_unknown_conversation_is_none(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.retrieve("en:nobody") is None
    assert await store.retrieve_full_tracker("en:nobody") is None
    assert list(await store.keys()) == []


async def test_save_then_retrieve_restores_events_and_slots(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    tracker = tracker_of(store, sender, session(sender, 1000.0, people="4"))
    await store.save(tracker)

    back = await store.retrieve(sender)
    assert back is not None
    assert back.sender_id == sender
    assert dicts(back) == dicts(tracker)
    assert back.get_slot("people") == "4"
    assert back.active_loop_name == "booking_form"


async def test_a_second_store_sees_the_first_ones_conversations(make_store: StoreFactory) -> None:
    # Two stores over the same backend: in Redis, what two gateway processes see.
    first, second = make_store(), make_store()
    sender = sender_id()
    await first.save(tracker_of(first, sender, session(sender, 1000.0, people="2")))
    back = await second.retrieve(sender)
    if first.backend == "memory":
        assert back is None  # in-memory stores are private to their process
    else:
        assert back is not None and back.get_slot("people") == "2"


async def test_keys_lists_every_conversation_of_the_language(make_store: StoreFactory) -> None:
    store = make_store()
    senders = {sender_id() for _ in range(5)} | {"en:with:colons:and*glob?chars"}
    for sender in senders:
        await store.save(tracker_of(store, sender, session(sender, 1000.0)))
    assert set(await store.keys()) == senders


async def test_retrieve_gives_the_newest_session_and_full_gives_all(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    old, new = session(sender, 1000.0, people="2"), session(sender, 2000.0)
    await store.save(tracker_of(store, sender, old + new))

    assert dicts(await store.retrieve(sender)) == [e.as_dict() for e in new]
    assert dicts(await store.retrieve_full_tracker(sender)) == [e.as_dict() for e in old + new]


async def test_saving_the_newest_session_keeps_the_earlier_ones_once(make_store: StoreFactory) -> None:
    # What Rasa does every turn: retrieve (newest session only), add this turn's events, save.
    store = make_store()
    sender = sender_id()
    old, new = session(sender, 1000.0, people="2"), session(sender, 2000.0)
    await store.save(tracker_of(store, sender, old + new))
    for turn in range(3):
        tracker = await store.retrieve(sender)
        assert tracker is not None
        tracker.update(UserUttered(f"turn {turn}", timestamp=3000.0 + turn))
        await store.save(tracker)

    full = dicts(await store.retrieve_full_tracker(sender))
    extra = [{"text": f"turn {t}", "timestamp": 3000.0 + t} for t in range(3)]
    assert full[: len(old + new)] == [e.as_dict() for e in old + new]
    assert [{"text": e["text"], "timestamp": e["timestamp"]} for e in full[len(old + new) :]] == extra


async def test_saving_a_full_tracker_again_adds_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    events = session(sender, 1000.0, people="2") + session(sender, 2000.0)
    await store.save(tracker_of(store, sender, events))
    full = await store.retrieve_full_tracker(sender)
    assert full is not None
    await store.save(full)
    await store.save(tracker_of(store, sender, events[:3]))  # an older, shorter copy loses nothing
    assert dicts(await store.retrieve_full_tracker(sender)) == [e.as_dict() for e in events]


async def test_a_domain_change_after_a_model_swap_does_not_break_conversations(
    make_store: StoreFactory,
) -> None:
    old_model_store = make_store()
    sender = sender_id()
    await old_model_store.save(tracker_of(old_model_store, sender, session(sender, 1000.0, people="4")))

    # The loader gives each model a shallow copy of the language's store, bound to its own domain.
    new_model_store = copy.copy(old_model_store)
    new_model_store.domain = SWAPPED_DOMAIN
    swapped = await new_model_store.retrieve(sender)
    assert swapped is not None
    assert "people" not in swapped.slots  # unknown to the new domain: ignored, not a crash
    assert swapped.get_slot("seating") == "inside"
    swapped.update(UserUttered("hello again", timestamp=5000.0))
    await new_model_store.save(swapped)

    # The old model (still answering during the swap) keeps its own domain and sees the new turn.
    assert old_model_store.domain is EN_DOMAIN
    back = await old_model_store.retrieve(sender)
    assert back is not None
    assert back.get_slot("people") == "4"
    assert back.latest_message is not None and back.latest_message.text == "hello again"


async def test_languages_do_not_share_conversations(make_store: StoreFactory) -> None:
    english, polish = make_store("en"), make_store("pl")
    await english.save(tracker_of(english, "shared-id", session("shared-id", 1000.0, people="4")))
    assert await polish.retrieve("shared-id") is None
    assert list(await polish.keys()) == []


async def test_idle_conversations_expire_after_the_ttl(make_store: StoreFactory) -> None:
    store = make_store(ttl_seconds=1)
    sender = sender_id()
    await store.save(tracker_of(store, sender, session(sender, 1000.0)))
    assert await store.retrieve(sender) is not None
    await asyncio.sleep(1.3)
    assert await store.retrieve(sender) is None
    assert list(await store.keys()) == []


async def test_ttl_zero_keeps_conversations(make_store: StoreFactory) -> None:
    store = make_store(ttl_seconds=0)
    sender = sender_id()
    await store.save(tracker_of(store, sender, session(sender, 1000.0)))
    await asyncio.sleep(1.1)
    assert await store.retrieve(sender) is not None


async def test_an_unreadable_conversation_starts_afresh(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    await store._write(sender, b"\x00 not a tracker")
    assert await store.retrieve(sender) is None
    tracker = tracker_of(store, sender, session(sender, 1000.0))
    await store.save(tracker)
    assert dicts(await store.retrieve(sender)) == dicts(tracker)


async def test_an_unreadable_event_is_skipped_and_kept(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    readable = [e.as_dict() for e in session(sender, 1000.0, people="3")]
    odd = {"event": "from_a_future_rasa", "timestamp": 1000.5}
    await store._write(sender, encode(sender, [*readable, odd]))

    tracker = await store.retrieve(sender)
    assert dicts(tracker) == readable
    assert tracker is not None and tracker.get_slot("people") == "3"
    tracker.update(UserUttered("later", timestamp=2000.0))
    await store.save(tracker)
    full = await store._events(sender)
    assert full is not None
    assert full[: len(readable) + 1] == [*readable, odd]
    assert full[-1]["text"] == "later"


async def test_conversations_are_listed_newest_first_with_their_last_intent(make_store: StoreFactory) -> None:
    store = make_store()
    older, newer = sender_id(), sender_id()
    await store.save(tracker_of(store, older, session(older, 1000.0)))
    await store.save(tracker_of(store, newer, session(newer, 2000.0, people="3")))
    listed, truncated = await store.conversations()
    assert not truncated
    assert [s.sender_id for s in listed] == [newer, older]
    last = listed[1]
    assert (last.last_intent, last.last_text, last.turns) == ("book_table", "book a table", 1)
    assert last.started == 1000.0 and last.latest is not None and last.latest > 1000.0
    assert last.events == len(session(older, 1000.0))
    capped, truncated = await store.conversations(limit=1)
    assert truncated and len(capped) == 1


async def test_events_give_every_session_as_stored(make_store: StoreFactory) -> None:
    store = make_store()
    sender = sender_id()
    tracker = tracker_of(store, sender, session(sender, 1000.0) + session(sender, 2000.0, people="5"))
    await store.save(tracker)
    assert await store.events(sender) == dicts(tracker)
    assert await store.events("en:nobody") is None


async def test_erase_forgets_a_conversation_and_only_that_one(make_store: StoreFactory) -> None:
    store = make_store()
    gone, kept = sender_id(), sender_id()
    for sender in (gone, kept):
        await store.save(tracker_of(store, sender, session(sender, 1000.0)))
    assert await store.erase(gone) is True
    assert await store.retrieve(gone) is None and await store.events(gone) is None
    assert set(await store.keys()) == {kept}
    assert await store.erase(gone) is False  # already gone: nothing to erase
    assert await store.retrieve(kept) is not None
