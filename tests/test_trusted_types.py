"""skops' trusted type names saved once: the same lists as skops computes, real models still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.agents import trusted_types
from gateway.settings import ROOT


def _python(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter (sys.modules starts empty) and return its last output line."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


_COMPUTE = """
import json, sys
from pathlib import Path
from gateway.agents import trusted_types
how = trusted_types.install(Path(sys.argv[1]))
import skops.io  # what Rasa imports
real = sys.modules["skops.io._trusted_types"]  # the lists skops really uses in this process
ours = (real.__doc__ or "").startswith("skops' trusted")
print(json.dumps({"how": how, "ours": ours, **{n: getattr(real, n) for n in trusted_types.NAMES}}))
"""

_LOAD_MODEL = """
import asyncio, json, sys
from pathlib import Path
from gateway.agents import trusted_types
how = trusted_types.install(Path(sys.argv[1]))
from gateway.agents.loader import load_agent_blocking
from gateway.storage.memory_trackers import InMemoryTrackerStore
from rasa.core.channels.channel import UserMessage
agent = load_agent_blocking(Path(sys.argv[2]), InMemoryTrackerStore("en"))
parsed = asyncio.run(agent.processor.parse_message(UserMessage("hello")))
module = sys.modules[trusted_types.MODULE].__doc__
print(json.dumps({"how": how, "intent": parsed["intent"]["name"], "module": module}))
"""


def test_saved_lists_are_the_lists_skops_computes(tmp_path: Path) -> None:
    path = tmp_path / "trusted.json"
    computed = json.loads(_python(_COMPUTE, str(path)))
    assert computed["how"] == "computed" and not computed["ours"]  # first start: skops' own import
    saved = json.loads(path.read_text())
    assert saved["versions"] == trusted_types.versions()
    for name in trusted_types.NAMES:
        assert saved[name] == computed[name], name
    assert "sklearn.linear_model._logistic.LogisticRegression" in saved["SKLEARN_ESTIMATOR_TYPE_NAMES"]

    again = json.loads(_python(_COMPUTE, str(path)))
    assert again["how"] == "saved lists" and again["ours"]  # later starts: the saved lists, same content
    for name in trusted_types.NAMES:
        assert again[name] == computed[name], name


def test_a_real_model_loads_and_classifies_with_the_saved_lists(
    tmp_path: Path, model_paths: dict[str, Path]
) -> None:
    path = tmp_path / "trusted.json"
    _python(_COMPUTE, str(path))
    out = json.loads(_python(_LOAD_MODEL, str(path), str(model_paths["en"])))
    assert out["how"] == "saved lists"
    assert out["module"].startswith("skops' trusted type names, as saved")
    assert out["intent"] == "greet"  # the LogisticRegression classifier was really loaded by skops


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"versions": {"skops": "0.0.1"}, **{n: [] for n in trusted_types.NAMES}}),
        json.dumps({"versions": trusted_types.versions(), "SKLEARN_ESTIMATOR_TYPE_NAMES": "everything"}),
    ],
    ids=["corrupt", "other-versions", "wrong-shape"],
)
def test_stale_or_broken_files_are_computed_again(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trusted.json"
    path.write_text(content)
    computed = json.loads(_python(_COMPUTE, str(path)))
    assert computed["how"] == "computed"
    assert json.loads(path.read_text())["versions"] == trusted_types.versions()  # replaced by good lists


def test_an_unwritable_place_only_costs_the_slow_import(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")  # unwritable even for root
    computed = json.loads(_python(_COMPUTE, str(blocker / "trusted.json")))
    assert computed["how"] == "computed"
    assert blocker.read_text() == "a file where the folder should be"
