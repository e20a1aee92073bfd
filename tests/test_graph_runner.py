"""The sequential graph runner answers exactly like Rasa's DaskGraphRunner on the real bots."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner

from bench import conversations as conv
from gateway.agents import dialogue
from gateway.agents.graph_runner import SequentialGraphRunner
from gateway.agents.loader import LoadedModel, load_agent_blocking
from gateway.agents.pool import AgentPool
from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings
from gateway.storage.memory_trackers import InMemoryTrackerStore
from gateway.storage.trackers import tracker_stores_for

# Beyond the scripted conversations: off-script, empty-ish, mixed-language and out-of-vocabulary texts.
EXTRA_TEXTS = ("", "?", "asdf qwerty", "hello hallo cześć", "4 4 4", "/greet", "book book book table")


def _load(path: Path, lang: str, runner: str) -> LoadedModel:
    agent = load_agent_blocking(path, InMemoryTrackerStore(lang), graph_runner=runner)
    return LoadedModel(agent, path.name, path, None, 0.0, 0.0)


def _parsed(result: dict[str, Any]) -> dict[str, Any]:
    # Everything NLU decided; the message id is fresh on every parse.
    return {k: v for k, v in result.items() if k != "message_id"}


def _step(event: Any) -> tuple[Any, ...]:
    data = event.as_dict()
    return (data["event"], data.get("name"), (data.get("parse_data") or {}).get("intent"), data.get("value"))


@pytest.fixture(scope="module")
def both(model_paths: dict[str, Path]) -> dict[str, tuple[LoadedModel, LoadedModel]]:
    """Per language: the model loaded with Rasa's dask runner and with the sequential one."""
    return {
        lang: (_load(path, lang, "dask"), _load(path, lang, "sequential"))
        for lang, path in model_paths.items()
    }


def test_models_load_with_the_requested_runner(both: dict[str, tuple[LoadedModel, LoadedModel]]) -> None:
    for dask_model, seq_model in both.values():
        assert type(dask_model.agent.processor.graph_runner) is DaskGraphRunner
        assert type(seq_model.agent.processor.graph_runner) is SequentialGraphRunner


@pytest.mark.parametrize("lang", conv.LANGS)
async def test_nlu_parses_are_identical(both: dict[str, tuple[LoadedModel, LoadedModel]], lang: str) -> None:
    from rasa.core.channels.channel import UserMessage

    dask_model, seq_model = both[lang]
    texts = [text for text, _ in conv.SCRIPTS[lang]] + list(EXTRA_TEXTS)
    for text in texts:
        expected = await dask_model.agent.processor.parse_message(UserMessage(text))
        got = await seq_model.agent.processor.parse_message(UserMessage(text))
        assert _parsed(got) == _parsed(expected), text
        assert got["intent"]["name"]  # a real classification, not an empty result


@pytest.mark.parametrize("lang", conv.LANGS)
async def test_whole_conversations_answer_identically(
    both: dict[str, tuple[LoadedModel, LoadedModel]], lang: str
) -> None:
    dask_model, seq_model = both[lang]
    sender = uuid.uuid4().hex
    script = (
        [text for text, _ in conv.SCRIPTS[lang]]
        + list(EXTRA_TEXTS)
        + [text for text, _ in conv.SCRIPTS[lang]]
    )
    for number, text in enumerate(script):
        expected = await dialogue.run_turn(dask_model, f"dask-{sender}", text)
        got = await dialogue.run_turn(seq_model, f"seq-{sender}", text)
        # Responses with several variants are picked at random: the response chosen is what must match.
        assert [m.get("utter_action") for m in got] == [m.get("utter_action") for m in expected], (
            f"turn {number}: {text!r}"
        )
    # Same history: every intent, action and slot the conversation went through, in order.
    trackers = [
        await model.agent.processor.tracker_store.retrieve(f"{who}-{sender}")
        for model, who in ((dask_model, "dask"), (seq_model, "seq"))
    ]
    histories = [[_step(event) for event in tracker.events] for tracker in trackers]
    assert histories[0] == histories[1]
    assert trackers[0].current_slot_values() == trackers[1].current_slot_values()
    # The scripted turns really took the bot through its stories (greet, help, booking, hours, goodbye).
    first = await dialogue.run_turn(seq_model, f"check-{sender}", conv.SCRIPTS[lang][0][0])
    assert first and first[0].get("utter_action") == conv.SCRIPTS[lang][0][1]


async def test_graph_errors_surface_as_rasa_graph_run_errors(
    both: dict[str, tuple[LoadedModel, LoadedModel]],
) -> None:
    _, seq_model = both["en"]
    runner = seq_model.agent.processor.graph_runner
    nlu_target = seq_model.agent.processor.model_metadata.nlu_target
    # No message given: the first node that needs it reports the missing input (as under dask).
    with pytest.raises(GraphRunError, match="Missing input"):
        runner.run(inputs={}, targets=[nlu_target])
    # An input value that names a node would be mistaken for that node's output under dask: refused.
    with pytest.raises(GraphRunError, match="clashes with a node name"):
        runner.run(inputs={"__message__": nlu_target}, targets=[nlu_target])


def test_only_dask_runners_are_replaced(both: dict[str, tuple[LoadedModel, LoadedModel]]) -> None:
    _, seq_model = both["en"]
    runner = seq_model.agent.processor.graph_runner
    assert SequentialGraphRunner.replacing(runner) is runner


async def test_pool_uses_the_configured_runner(model_paths: dict[str, Path], models_dir: Path) -> None:
    for name, cls in (("sequential", SequentialGraphRunner), ("dask", DaskGraphRunner)):
        settings = load_settings(
            overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0},
            env={"GATEWAY_SERVER_GRAPH_RUNNER": name},
        )
        pool = AgentPool(
            settings.bots, tracker_stores_for(settings), graph_runner=settings.server.graph_runner
        )
        model = await pool.load("de", model_paths["de"])
        assert type(model.agent.processor.graph_runner) is cls
        answer = await pool.respond("de", f"runner-{name}", "hallo")
        assert answer and answer[0].get("utter_action") == "utter_greet"


def test_graph_runner_setting_is_validated(settings: Settings) -> None:
    assert settings.server.graph_runner == "sequential"
    with pytest.raises(ConfigError, match=r"server\.graph_runner='threads'.*sequential, dask"):
        load_settings(env={"GATEWAY_SERVER_GRAPH_RUNNER": "threads"})
