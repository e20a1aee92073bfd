"""`make bench`'s raw limit runs the bots' custom actions: real models in a real `python -m bench.raw`
process answer every turn of the mix right, the booking form's validation (an action) included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import conversations as conv
from gateway.settings import ROOT

# Every language's whole script once at c=1 (booking turn included), and at c=3 side by side.
LEVELS, REQUESTS = (1, 3), sum(len(conv.SCRIPTS[lang]) for lang in conv.LANGS)


def test_raw_limit_answers_every_turn_right_with_the_bots_custom_actions(
    model_paths: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "raw.json"
    argv = [
        sys.executable,
        "-m",
        "bench.raw",
        *(f"--model={lang}={path}" for lang, path in model_paths.items()),
        f"--concurrency={','.join(map(str, LEVELS))}",
        # The request cap ends each level, not the clock: a generous duration only bounds a stuck run.
        "--duration=600",
        "--warmup=0",
        f"--max-requests={REQUESTS}",
        f"--out={out}",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["actions"] == {
        lang: ["action_opening_status", "validate_booking_form"] for lang in model_paths
    }
    assert [point["concurrency"] for point in result["levels"]] == list(LEVELS)
    for point in result["levels"]:
        assert point["requests"] == REQUESTS > 0, point
        assert (point["ok"], point["wrong"], point["errors"]) == (REQUESTS, 0, 0), point["error_samples"]


REFUSING_ACTIONS = """
from rasa_sdk import Action
from rasa_sdk.events import SlotSet
from rasa_sdk.interfaces import ActionExecutionRejection


class Refuse(Action):
    def name(self):
        return "action_refuse"

    async def run(self, dispatcher, tracker, domain):
        raise ActionExecutionRejection("action_refuse", "not now")


class Hello(Action):
    def name(self):
        return "action_hello"

    def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"hello {tracker.sender_id}")
        return [SlotSet("greeted", True)]
"""


async def test_in_process_endpoint_answers_rasas_remote_action_like_an_action_server(tmp_path: Path) -> None:
    from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
    from rasa.core.channels.channel import CollectingOutputChannel
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import BotUttered, SlotSet
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa.shared.exceptions import RasaException

    from bench.raw_actions import InProcessActions, action_endpoints

    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "actions.py").write_text(REFUSING_ACTIONS)
    (tmp_path / "yy").mkdir()  # a bot without custom actions
    endpoints = action_endpoints(tmp_path, ["xx", "yy"])
    endpoint = endpoints["xx"]
    assert isinstance(endpoint, InProcessActions) and endpoints["yy"] is None
    assert endpoint.names == {"action_refuse", "action_hello"}
    domain = Domain.from_dict(
        {
            "actions": ["action_refuse", "action_hello", "action_missing"],
            "slots": {"greeted": {"type": "bool", "mappings": [{"type": "custom"}]}},
        }
    )
    tracker = DialogueStateTracker("guest", domain.slots)
    nlg = TemplatedNaturalLanguageGenerator(domain.responses)

    async def run(name: str) -> list[object]:
        events = await RemoteAction(name, endpoint).run(CollectingOutputChannel(), nlg, tracker, domain)
        return list(events)

    said, slot = await run("action_hello")
    assert isinstance(said, BotUttered) and said.text == "hello guest"
    assert slot == SlotSet("greeted", True)
    with pytest.raises(ActionExecutionRejection, match="not now"):
        await run("action_refuse")
    with pytest.raises(RasaException, match=r"xx/actions.py defines no action 'action_missing'"):
        await run("action_missing")
