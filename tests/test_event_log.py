"""The event-log codec: how a saved tracker is merged into the stored conversation (property tests)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.storage.event_log import CorruptTracker, decode, encode, last_session_start, merge

KINDS = ("user", "bot", "slot", "action")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Event dicts with increasing timestamps, sessions started by action_session_start."""
    size = draw(st.integers(0, 40))
    events: list[dict[str, Any]] = []
    t = 1000.0
    for _ in range(size):
        t += draw(st.floats(1e-6, 10.0))
        kind = draw(st.sampled_from(KINDS))
        event: dict[str, Any] = {"event": kind, "timestamp": t}
        if kind == "action":
            event["name"] = draw(st.sampled_from(["action_listen", "action_session_start", "utter_greet"]))
        events.append(event)
    return events


def later(events: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    start = events[-1]["timestamp"] if events else 0.0
    return [{"event": "user", "timestamp": start + 1 + i, "text": f"new {i}"} for i in range(count)]


@given(histories(), st.integers(0, 5))
def test_saving_the_newest_session_plus_a_turn_appends_the_turn_once(events: list[Any], count: int) -> None:
    new = later(events, count)
    newest = events[last_session_start(events) :]
    assert merge(events, newest + new) == events + new


@given(histories(), st.data())
def test_saving_from_any_point_of_the_history_loses_and_repeats_nothing(
    events: list[Any], data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(events)))
    new = later(events, 3)
    assert merge(events, events[start:] + new) == events + new


@given(histories(), st.data())
def test_saving_an_older_copy_loses_nothing(events: list[Any], data: st.DataObject) -> None:
    end = data.draw(st.integers(0, len(events)))
    assert merge(events, events[:end]) == events


@given(histories(), histories())
def test_a_history_that_does_not_line_up_keeps_both_sides_without_repeats(
    prior: list[Any], other: list[Any]
) -> None:
    merged = merge(prior, other)
    assert merged[: len(prior)] == prior
    keys = [(e["event"], e["timestamp"], e.get("name")) for e in merged]
    assert set(keys) == {(e["event"], e["timestamp"], e.get("name")) for e in prior + other}


def test_last_session_start_finds_the_newest_session() -> None:
    events = [
        {"event": "action", "timestamp": 1, "name": "action_session_start"},
        {"event": "user", "timestamp": 2},
        {"event": "action", "timestamp": 3, "name": "action_session_start"},
        {"event": "user", "timestamp": 4},
    ]
    assert last_session_start(events) == 2
    assert last_session_start(events[:2]) == 0
    assert last_session_start([]) == 0


def test_encode_uses_rasas_dialogue_layout_and_round_trips() -> None:
    import json

    import numpy as np

    events = [{"event": "user", "timestamp": 1.5, "parse_data": {"confidence": np.float32(0.5)}}]
    blob = encode("en:abc", events)
    assert json.loads(blob) == {
        "name": "en:abc",
        "events": [{**events[0], "parse_data": {"confidence": 0.5}}],
    }
    assert decode(blob)[0]["timestamp"] == 1.5


@pytest.mark.parametrize(
    "blob", [b"", b"{", b"[]", b'{"events": 3}', b'{"events": [1]}', b'{"events": [{}]}']
)
def test_decode_refuses_what_is_not_a_conversation(blob: bytes) -> None:
    with pytest.raises(CorruptTracker):
        decode(blob)
