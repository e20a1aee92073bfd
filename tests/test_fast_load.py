"""A DIET/TED model loaded without Rasa's one-step training predicts exactly what Rasa's own load predicts."""

from __future__ import annotations

import pytest

from gateway.settings import ROOT
from gateway.training import train_bot
from tests.conftest import model_cache
from tests.support import run_script

# Both loads in one fresh interpreter: Rasa's own `Agent.load`, then the same after fast_load.install().
# Each RasaModel's first prediction (the load's warm-up, on the archive's prediction example) is recorded;
# each model class (DIET, TED) then predicts that example with both models, and both NLU pipelines parse
# the same texts.
_COMPARE = """
import asyncio, json, sys
import numpy as np
from rasa.core.agent import Agent
from rasa.utils.tensorflow.models import RasaModel
from gateway.agents import fast_load

warmed = {}
run_inference = RasaModel.run_inference
def recording(self, model_data, *args, **kwargs):
    warmed.setdefault(id(self), (type(self).__name__, self, model_data))
    return run_inference(self, model_data, *args, **kwargs)
RasaModel.run_inference = recording
texts = ["hello", "when are you open?", "book a table for 4 people", "bye", "asdf qwerty", "yes please"]

def load():
    before = set(warmed)
    agent = Agent.load(sys.argv[1])
    async def parse():
        return [await agent.parse_message(text) for text in texts]
    parsed = [[(i["name"], i["confidence"]) for i in p["intent_ranking"]] for p in asyncio.run(parse())]
    return {name: (model, data) for key, (name, model, data) in warmed.items() if key not in before}, parsed

rasas, rasa_parsed = load()
fast_load.install()
ours, our_parsed = load()

def flat(outputs):
    for key, value in sorted(outputs.items()):
        if isinstance(value, dict):
            yield from flat(value)
        elif value is not None:
            yield key, np.asarray(value)

compared = {}
for name, (model, data) in rasas.items():
    theirs = dict(flat(model.run_inference(data)))
    mine = dict(flat(ours[name][0].run_inference(data)))
    assert theirs.keys() == mine.keys(), (name, theirs.keys(), mine.keys())
    compared[name] = {key: bool(np.array_equal(theirs[key], mine[key])) for key in theirs}
print(json.dumps({"models": compared, "parsed_equal": rasa_parsed == our_parsed, "texts": len(our_parsed)}))
"""


@pytest.mark.slow
def test_fast_load_predicts_exactly_like_rasas_load() -> None:
    # The DIET/TED English bot, trained once and cached by content hash (bench/swap.py uses the same one).
    path = train_bot(
        "en", ROOT / "bots" / "en", model_cache() / "prod" / "en", config_name="config.prod.yml"
    ).path
    result = run_script(_COMPARE, str(path))
    assert set(result["models"]) == {"DIET", "TED"}
    for name, outputs in result["models"].items():
        assert outputs and all(outputs.values()), (name, outputs)
    assert result["parsed_equal"] and result["texts"] == 6
