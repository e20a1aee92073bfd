"""The request path's performance fixes keep behaviour: turn slots and the remembering event lookup."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from gateway.agents.pool import AgentPool
from gateway.agents.slots import TurnSlots
from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings
from gateway.storage.trackers import tracker_stores_for
from tests.support import responses


def _texts(messages: list[dict[str, object]]) -> str:
    return " ".join(str(m["text"]) for m in messages if m.get("text"))


@pytest.mark.parametrize("slots", [1, 0])
async def test_concurrent_conversations_answer_correctly_with_one_turn_slot_or_none(
    settings: Settings, model_paths: dict[str, Path], slots: int
) -> None:
    pool = AgentPool(settings.bots, tracker_stores_for(settings), running_turns=slots)
    await pool.load("en", model_paths["en"])
    booked = [t.replace("{people}", "4") for t in responses("en", "utter_booked")]

    async def book() -> tuple[str, str]:
        sender = f"en:slots-{uuid.uuid4().hex}"
        first = await pool.respond("en", sender, "I would like to book a table")
        second = await pool.respond("en", sender, "4")
        return _texts(first), _texts(second)

    # Twelve two-turn conversations at once through one slot: each ends booked, none waits forever.
    results = await asyncio.wait_for(asyncio.gather(*(book() for _ in range(12))), timeout=120)
    for first, second in results:
        assert first in responses("en", "utter_ask_people")
        assert second in booked


def test_running_turns_setting_is_validated() -> None:
    assert load_settings(env={}).server.running_turns == 1
    assert load_settings(env={"GATEWAY_SERVER_RUNNING_TURNS": "0"}).server.running_turns == 0
    with pytest.raises(ConfigError, match=r"server\.running_turns=-1"):
        load_settings(env={"GATEWAY_SERVER_RUNNING_TURNS": "-1"})
    assert load_settings(env={}).server.inference == "loop"
    assert load_settings(env={"GATEWAY_SERVER_INFERENCE": "thread"}).server.inference == "thread"
    with pytest.raises(ConfigError, match=r"server\.inference='gpu'.*loop, thread"):
        load_settings(env={"GATEWAY_SERVER_INFERENCE": "gpu"})


def test_remembering_event_lookup_answers_like_rasas_own() -> None:
    from rasa.shared.core.events import ActionExecuted, Event, SlotSet, UserUttered
    from rasa.shared.utils.common import all_subclasses

    from gateway.agents import speedups

    names = {cls.type_name for cls in all_subclasses(Event)}
    before = {name: Event.resolve_by_type(name) for name in names}
    speedups.install()
    speedups.install()  # idempotent
    for _ in range(2):  # the second round answers from what the first remembered
        assert {name: Event.resolve_by_type(name) for name in names} == before
    assert Event.resolve_by_type("user") is UserUttered
    assert Event.resolve_by_type("slot") is SlotSet
    assert Event.resolve_by_type("no-such-event", default=ActionExecuted) is ActionExecuted
    assert Event.resolve_by_type("topic") is None
    with pytest.raises(ValueError, match="Unknown event name"):
        Event.resolve_by_type("no-such-event")
    # Trackers still round-trip through the dict form that tracker stores use.
    event = UserUttered("hello", {"name": "greet", "confidence": 1.0})
    assert Event.from_parameters(event.as_dict()) == event


def test_cheap_empty_domain_check_answers_like_rasas_own() -> None:
    from rasa.shared.core.domain import Domain

    from gateway.agents import speedups
    from gateway.settings import ROOT

    speedups.install()
    assert Domain.is_empty.__module__ == speedups.__name__  # installed, not Rasa's own
    domains = [Domain.load(str(ROOT / "bots" / lang / "domain.yml")) for lang in ("en", "pl", "de")]
    domains += [Domain.empty(), Domain.from_dict({}), Domain.from_dict({"intents": ["greet"]})]
    for domain in domains:
        # Rasa's definition, spelled out: equal to a freshly built empty domain.
        assert domain.is_empty() == (domain.as_dict() == Domain.empty().as_dict())
    assert [d.is_empty() for d in domains] == [False, False, False, True, True, False]


async def test_turn_slots_start_at_most_size_turns_per_loop_pass_in_arrival_order() -> None:
    slots = TurnSlots(2)
    started: list[tuple[int, int]] = []  # (turn, loop pass it started in)
    passes = [0]
    stop = asyncio.Event()

    async def count_passes() -> None:
        while not stop.is_set():
            await asyncio.sleep(0)
            passes[0] += 1

    async def turn(number: int) -> None:
        async with slots:
            # A turn that never yields, like Rasa's with an in-memory tracker store.
            started.append((number, passes[0]))

    counter = asyncio.create_task(count_passes())
    await asyncio.gather(*(turn(n) for n in range(7)))
    stop.set()
    await counter
    assert [number for number, _ in started] == list(range(7))
    per_pass: dict[int, int] = {}
    for _, loop_pass in started:
        per_pass[loop_pass] = per_pass.get(loop_pass, 0) + 1
    assert max(per_pass.values()) <= 2
    assert slots.waiting == 0


async def test_a_cancelled_turn_passes_its_slot_on() -> None:
    slots = TurnSlots(1)
    holder_in, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def holder() -> None:
        async with slots:
            holder_in.set()
            await release.wait()
            done.append("holder")

    async def queued(name: str) -> None:
        async with slots:
            done.append(name)

    first = asyncio.create_task(holder())
    await holder_in.wait()
    doomed = asyncio.create_task(queued("doomed"))
    last = asyncio.create_task(queued("last"))
    await asyncio.sleep(0)
    assert slots.waiting == 2
    doomed.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, last), timeout=10)
    assert doomed.cancelled()
    assert done == ["holder", "last"]
    assert slots.waiting == 0
    with pytest.raises(ValueError, match="at least 1"):
        TurnSlots(0)


async def test_a_turn_gives_the_loop_back_between_its_stages(model_paths: dict[str, Path]) -> None:
    from gateway.agents import dialogue, stages
    from gateway.agents.loader import LoadedModel, load_agent_blocking
    from gateway.storage.memory_trackers import InMemoryTrackerStore

    agent = load_agent_blocking(model_paths["en"], InMemoryTrackerStore("en"))
    model = LoadedModel(agent, model_paths["en"].name, model_paths["en"], None, 0.0, 0.0)
    plain_agent = load_agent_blocking(model_paths["en"], InMemoryTrackerStore("en"))
    # Yielding(Guarded(MessageProcessor)): the action guard (gateway/agents/action_guard.py) sits under it.
    plain_agent.processor.__class__ = type(plain_agent.processor).__mro__[2]  # Rasa's own MessageProcessor
    plain = LoadedModel(plain_agent, model.name, model.path, None, 0.0, 0.0)

    async def passes_during(turn: Coroutine[Any, Any, Any]) -> tuple[int, Any]:
        passes, done = [0], asyncio.Event()

        async def tick() -> None:
            while not done.is_set():
                await asyncio.sleep(0)
                passes[0] += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker is running
        start = passes[0]
        try:
            answer = await turn
        finally:
            done.set()
            await ticker
        return passes[0] - start, answer

    # In-memory trackers never wait, so Rasa's own turn runs (almost) in one piece; ours also yields after
    # NLU and after each action (greet: utter_greet, then action_listen).
    plain_yields, plain_answer = await passes_during(
        dialogue.run_turn(plain, f"en:{uuid.uuid4().hex}", "hello")
    )
    assert plain_yields <= 1
    yields, answer = await passes_during(dialogue.run_turn(model, f"en:{uuid.uuid4().hex}", "hello"))
    assert yields >= plain_yields + 3
    assert answer and answer[0]["utter_action"] == "utter_greet"
    assert plain_answer[0]["utter_action"] == "utter_greet"
    # Probes run on a shallow copy of the processor: it yields too, with its own tracker store.
    probe_yields, probed = await passes_during(dialogue.probe(model, "hello"))
    assert probe_yields >= 3 and probed[0]["utter_action"] == "utter_greet"
    stages.yield_between_stages(agent.processor)  # idempotent
    assert [cls.__name__ for cls in type(agent.processor).__mro__[:3]] == [
        "YieldingGuardedMessageProcessor",
        "GuardedMessageProcessor",
        "MessageProcessor",
    ]


async def test_a_load_that_fails_unexpectedly_marks_the_bot_failed_and_says_why(
    settings: Settings, model_paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.agents import pool as pool_module
    from gateway.agents.pool import BotState
    from gateway.errors import ModelError

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ImportError("cannot import name 'X' from 'somewhere'")

    pool = AgentPool(settings.bots, tracker_stores_for(settings))
    monkeypatch.setattr(pool_module, "load_model", broken)
    with pytest.raises(ModelError, match="failed unexpectedly: ImportError: cannot import name 'X'"):
        await pool.load("en", model_paths["en"])
    en = pool.get("en")
    assert en.state is BotState.FAILED  # not "loading" for ever
    assert en.last_error is not None and "ImportError" in en.last_error
    monkeypatch.undo()
    await pool.load("en", model_paths["en"])  # the next load is not hindered
    ready = pool.get("en")
    assert ready.state is BotState.READY and ready.last_error is None
