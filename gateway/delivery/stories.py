"""Story tests: replay a bot's tests/*.yml conversations through a trained model with Rasa's evaluator."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml

from gateway.delivery.records import StoryResult
from gateway.errors import DeliveryError, ModelError, ModelNotFound

logger = logging.getLogger(__name__)

# Enough of failed_test_stories.yml to see what went wrong without flooding a CI log.
_REPORT_LINES = 60


def story_files(tests_dir: Path) -> list[Path]:
    """The YAML test files of a bot (Rasa reads every one in tests/)."""
    if not tests_dir.is_dir():
        return []
    return sorted(p for p in tests_dir.rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml"})


def run_story_tests(tests_dir: Path, model: Path, results_dir: Path | None = None) -> StoryResult:
    """Run every story in `tests_dir` against `model`; Rasa's reports go to `results_dir` or a temp dir."""
    if not story_files(tests_dir):
        return StoryResult(total=0, failed=(), action_accuracy=0.0)
    agent = _load_agent(model)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        return _evaluate(tests_dir, agent, results_dir)
    with tempfile.TemporaryDirectory(prefix="gateway-story-tests-") as tmp:
        return _evaluate(tests_dir, agent, Path(tmp))


def _load_agent(model: Path) -> Any:
    from rasa.core.agent import Agent

    if not model.is_file():
        raise ModelNotFound(f"model archive {model} does not exist")
    try:
        agent = Agent.load(str(model))
    except Exception as exc:  # rasa/tarfile/pickle raise many types; all mean "unusable model"
        raise ModelError(f"cannot load model {model.name}: {type(exc).__name__}: {exc}") from exc
    if agent.processor is None or agent.domain is None:
        raise ModelError(f"model {model.name} has no dialogue model: story tests need a full model")
    return agent


def _evaluate(tests_dir: Path, agent: Any, out: Path) -> StoryResult:
    import rasa.core.test

    try:
        result = asyncio.run(
            rasa.core.test.test(
                str(tests_dir), agent, out_directory=str(out), disable_plotting=True, warnings=False
            )
        )
    except Exception as exc:  # invalid test YAML, unknown intents/actions: all surface as rasa errors
        raise DeliveryError(f"story tests in {tests_dir} could not run: {type(exc).__name__}: {exc}") from exc
    conversations = _conversation_accuracy(out / "story_report.json")
    failed_path = out / "failed_test_stories.yml"
    failed_text = failed_path.read_text(encoding="utf-8") if failed_path.is_file() else ""
    failed = _story_names(failed_text)
    total = int(conversations.get("total", len(failed)))
    if total - len(failed) != int(conversations.get("correct", total - len(failed))):
        logger.warning("story report and failed stories disagree in %s", out)
    lines = failed_text.splitlines()
    if len(lines) > _REPORT_LINES:
        lines = [*lines[:_REPORT_LINES], f"# ... {len(lines) - _REPORT_LINES} more lines"]
    return StoryResult(
        total=total,
        failed=tuple(failed),
        action_accuracy=float(result.get("accuracy") or 0.0),
        failed_report="\n".join(lines) if failed else "",
    )


def _conversation_accuracy(report: Path) -> dict[str, Any]:
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    value = data.get("conversation_accuracy") if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _story_names(failed_yaml: str) -> list[str]:
    """Story names from Rasa's failed_test_stories.yml ("name (path/to/file.yml)" -> "name")."""
    if not failed_yaml.strip():
        return []
    try:
        data = yaml.safe_load(failed_yaml)
    except yaml.YAMLError:
        return ["<unparsable failed_test_stories.yml>"]
    stories = data.get("stories") if isinstance(data, dict) else None
    names = []
    for story in stories or []:
        name = str(story.get("story", "?")) if isinstance(story, dict) else "?"
        names.append(name.split(" (", 1)[0])
    return names
