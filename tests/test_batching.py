"""Micro-batched DIET/TED turns answer exactly like one-at-a-time turns, on the real prod models.

The models are the bots' config.prod.yml, the real pipeline with its real epochs (conftest's
prod_model_paths): fewer epochs would save ~3.5 min once per change of a bot's sources, not per run, and
a weaker TED is likelier to sit on near ties, where the 1e-5 tolerance would hide less.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from bench import conversations as conv
from gateway import metrics
from gateway.agents.inference import InferenceThread
from gateway.agents.pool import AgentPool
from gateway.settings import ROOT, load_settings
from gateway.storage.trackers import tracker_stores_for

# Off-script: empty-ish, mixed-language and unknown texts, and a "/intent" payload (RegexMessageHandler).
EXTRA_TEXTS = ("", "?", "asdf qwerty", "hello hallo cześć", "4 4 4", "/greet", "book book book table")
TOLERANCE = 1e-5  # one batch pads its messages to a common length: same maths, float sums in another order


def recorded_conversations(lang: str) -> list[list[str]]:
    """The bot's test stories (entity annotations removed), the bench's script, and off-script texts."""
    stories = yaml.safe_load((ROOT / "bots" / lang / "tests" / "test_stories.yml").read_text())["stories"]
    out = [
        [
            re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", step["user"].strip())
            for step in story["steps"]
            if "user" in step
        ]
        for story in stories
    ]
    out.append([text for text, _ in conv.SCRIPTS[lang]])
    out.append(list(EXTRA_TEXTS))
    return out


def _pool(models_dir: Path, max_batch: int, inference: InferenceThread | None = None) -> AgentPool:
    settings = load_settings(overrides={"bots.models_dir": str(models_dir), "monitor.interval_seconds": 0})
    # running_turns 1, the default: a turn waiting for its batch must lend its slot for batches to form.
    return AgentPool(
        settings.bots,
        tracker_stores_for(settings),
        running_turns=1,
        max_batch=max_batch,
        inference=inference,
    )


async def _talk(pool: AgentPool, lang: str, sender: str, texts: list[str]) -> list[list[Any]]:
    return [[m.get("utter_action") for m in await pool.respond(lang, sender, text)] for text in texts]


async def _history(pool: AgentPool, lang: str, sender: str) -> list[dict[str, Any]]:
    tracker = await pool.get(lang).require_model().agent.processor.tracker_store.retrieve(sender)
    assert tracker is not None
    return [event.as_dict() for event in tracker.events if event.as_dict()["event"] in ("user", "action")]


def _close(got: Any, expected: Any, where: str) -> None:
    """Equal, except floats (confidences) within TOLERANCE; the message id is fresh on every parse."""
    if isinstance(expected, float) and isinstance(got, float):
        assert math.isclose(got, expected, rel_tol=0, abs_tol=TOLERANCE), f"{where}: {got} != {expected}"
    elif isinstance(expected, dict) and isinstance(got, dict):
        keys = set(expected) - {"message_id", "timestamp"}
        assert set(got) - {"message_id", "timestamp"} == keys, f"{where}: {sorted(got)} != {sorted(expected)}"
        for key in keys:
            _close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(got) == len(expected), f"{where}: {got} != {expected}"
        for index, (one, other) in enumerate(zip(got, expected, strict=True)):
            _close(one, other, f"{where}[{index}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def _batch_counts(lang: str, stage: str = "nlu") -> tuple[float, float]:
    """(batches, batches of one) observed so far for `lang`'s `stage` (nlu or policy)."""
    total = ones = 0.0
    for family in metrics.REGISTRY.collect():
        if family.name != "gateway_bot_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("lang") != lang or sample.labels.get("stage") != stage:
                continue
            if sample.name.endswith("_count"):
                total = sample.value
            elif sample.name.endswith("_bucket") and sample.labels.get("le") == "1.0":
                ones = sample.value
    return total, ones


@pytest.mark.parametrize("lang", conv.LANGS)
async def test_batched_turns_answer_like_single_turns(prod_model_paths: dict[str, Path], lang: str) -> None:
    path = prod_model_paths[lang]
    # German turns run on an inference thread (server.inference: thread, advised for DIET/TED): the
    # batches form on that thread's loop the same way.
    inference = InferenceThread() if lang == "de" else None
    if inference is not None:
        inference.start()
    try:
        await _compare(path, lang, inference)
    finally:
        if inference is not None:
            await inference.stop()


async def _compare(path: Path, lang: str, inference: InferenceThread | None) -> None:
    single, batched = _pool(path.parent.parent, 1), _pool(path.parent.parent, 16, inference)
    for pool in (single, batched):
        await pool.load(lang, path)
    talks = recorded_conversations(lang)
    expected = [await _talk(single, lang, f"single-{n}", texts) for n, texts in enumerate(talks)]

    before = {stage: _batch_counts(lang, stage) for stage in ("nlu", "policy")}
    got = await asyncio.gather(
        *(_talk(batched, lang, f"batched-{n}", texts) for n, texts in enumerate(talks))
    )
    for stage, was in before.items():
        total, ones = (now - then for now, then in zip(_batch_counts(lang, stage), was, strict=True))
        # The concurrent conversations really shared model calls (counted, not timed).
        assert total - ones > 0, f"no {stage} batch of more than one turn in {total:.0f} batches"
    processor = batched.get(lang).require_model().agent.processor
    assert processor.nlu_batcher.largest > 1 and processor.policy_batcher.largest > 1

    for n, texts in enumerate(talks):
        # Responses with several variants are picked at random: the response chosen is what must match.
        assert got[n] == expected[n], f"conversation {n}: {texts}"
        _close(
            await _history(batched, lang, f"batched-{n}"),
            await _history(single, lang, f"single-{n}"),
            f"conversation {n}",
        )
    # The scripted conversation went through the stories (not a fallback everywhere).
    script = talks[-2]
    assert [turn[0] for turn in got[-2]] == [answer for _, answer in conv.SCRIPTS[lang]], script


async def test_a_lone_turn_runs_at_once_alone(prod_model_paths: dict[str, Path]) -> None:
    path = prod_model_paths["de"]
    pool = _pool(path.parent.parent, 16)
    await pool.load("de", path)
    before = _batch_counts("de")
    for text in ("hallo", "hilfe", "tschüss"):
        assert await pool.respond("de", "lone", text)
    total, ones = (now - was for now, was in zip(_batch_counts("de"), before, strict=True))
    assert total == ones == 3  # one turn at a time: three batches of one, none waited for company
    assert 'gateway_bot_batch_size_count{lang="de",stage="nlu"}' in generate_latest(metrics.REGISTRY).decode()


async def test_light_models_are_not_batched(model_paths: dict[str, Path]) -> None:
    pool = _pool(model_paths["en"].parent.parent, 16)
    model = await pool.load("en", model_paths["en"])
    assert not hasattr(model.agent.processor, "nlu_batcher")
    assert not hasattr(model.agent.processor, "policy_batcher")
    assert await pool.respond("en", "light", "hello")
