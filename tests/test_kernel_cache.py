"""Loading a DIET/TED model next to one that answers leaves TensorFlow's kernel cache alone (kernel_cache.py),
and the answering model's predictions do not change."""

from __future__ import annotations

import pytest

from gateway.settings import ROOT
from gateway.training import train_bot
from tests.conftest import model_cache
from tests.support import run_script

# One fresh interpreter: a spy counts the calls that reach TensorFlow's real TFE_ContextClearCaches.
# Model A loads through the gateway's loader and parses; model B (the same archive) loads on another thread
# while this thread clears the cache itself; A parses again.
_SCRIPT = """
import asyncio, json, sys, threading, uuid
from pathlib import Path
from tensorflow.python import pywrap_tfe
import tensorflow as tf
from tensorflow.python.eager import context

real = pywrap_tfe.TFE_ContextClearCaches
reached = []
def spy(handle):
    reached.append(threading.current_thread().name)
    real(handle)
pywrap_tfe.TFE_ContextClearCaches = spy

from rasa.core.tracker_store import InMemoryTrackerStore
from gateway.agents import kernel_cache
from gateway.agents.loader import load_agent_blocking

texts = ["hello", "when are you open?", "book a table for 4 people", "bye", "asdf qwerty", "yes please"]
def parse(agent):
    async def run():
        return [await agent.parse_message(text) for text in texts]
    return [[(i["name"], i["confidence"]) for i in p["intent_ranking"]] for p in asyncio.run(run())]
def answer(agent):
    # The actions the policies chose, which policy and its confidence (the texts vary: a response may have
    # several variants, picked at random).
    async def run():
        sender = uuid.uuid4().hex
        await agent.handle_text("hello", sender_id=sender)
        tracker = await agent.tracker_store.retrieve(sender)
        return [[e.action_name, e.policy, e.confidence] for e in tracker.events if e.type_name == "action"]
    return asyncio.run(run())

path = Path(sys.argv[1])
a = load_agent_blocking(path, InMemoryTrackerStore(None))
first, first_answer = parse(a), answer(a)
after_a = {"reached": len(reached), "skipped": kernel_cache.skipped()}

loaded = {}
inside = threading.Event()
def load_b():
    with kernel_cache.kept():
        inside.set()
        loaded["b"] = load_agent_blocking(path, InMemoryTrackerStore(None))
loader = threading.Thread(target=load_b, name="loader")
loader.start()
inside.wait()
tf.random.set_seed(7)  # this thread is not loading: its clear reaches TensorFlow
loader.join()
with kernel_cache.kept():
    tf.random.set_seed(11)  # skipped clear, but the seed is set as asked
print(json.dumps({
    "after_a": after_a,
    "reached": reached,
    "skipped": kernel_cache.skipped(),
    "seed": context.context()._seed,
    "a_parsed": parse(a) == first,
    "a_answer": answer(a),
    "b_same": parse(loaded["b"]) == first,
    "answer": first_answer,
}))
"""


@pytest.mark.slow
def test_a_load_skips_the_kernel_cache_clears_and_the_answering_model_predicts_the_same() -> None:
    path = train_bot(
        "en", ROOT / "bots" / "en", model_cache() / "prod" / "en", config_name="config.prod.yml"
    ).path
    result = run_script(_SCRIPT, str(path))
    # DIET's and TED's constructors each ask for clears (clear_session, two seed setters); none reached
    # TensorFlow during either load.
    assert result["after_a"]["reached"] == 0
    assert result["after_a"]["skipped"] >= 2
    assert result["skipped"] >= 2 * result["after_a"]["skipped"]
    # Only the clear this thread asked for outside a load went through; a kept set_seed still sets it.
    assert result["reached"] == ["MainThread"]
    assert result["seed"] == 11
    # The answering model's intent rankings and its chosen actions (confidences to the bit) are unchanged.
    assert result["a_parsed"] and result["b_same"]
    assert result["a_answer"] == result["answer"]
    assert "utter_greet" in [action for action, _, _ in result["answer"]]
