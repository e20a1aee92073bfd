"""Bot delivery through the real commands: `python -m gateway train|test|pipeline` in subprocesses.

Models come from the session cache (copied, so verdicts written next to them stay private to a test);
the pipeline test trains a changed Polish bot for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from gateway.delivery.changes import changed_languages
from gateway.delivery.records import (
    EvaluationRecord,
    StoryResult,
    read_record,
    record_path,
    require_passed,
    sha256_file,
    write_record,
)
from gateway.errors import ConfigError, ModelError, ModelRejected
from gateway.settings import ROOT, load_settings


def gateway(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway ARGS` from the repository root with extra environment."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def copy_model(model: Path, models_dir: Path) -> Path:
    """A private copy of a cached model in models_dir/<lang>/ (same name, so it is the bot's current one)."""
    target = models_dir / model.parent.name / model.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model, target)
    return target


def story_names(lang: str) -> list[str]:
    data = yaml.safe_load((ROOT / "bots" / lang / "tests" / "test_stories.yml").read_text(encoding="utf-8"))
    return [story["story"] for story in data["stories"]]


def break_story(bots_dir: Path, lang: str) -> str:
    """Make the 'ask for help' story expect the wrong answer; returns the story's name."""
    path = bots_dir / lang / "tests" / "test_stories.yml"
    text = path.read_text(encoding="utf-8")
    broken = text.replace(
        "intent: help\n      - action: utter_help", "intent: help\n      - action: utter_hours"
    )
    assert broken != text
    path.write_text(broken, encoding="utf-8")
    return "ask for help"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def bot_repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of bots/, committed once."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "bots", repo / "bots")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "bots")
    return repo


def test_train_then_test_passes_and_records_the_verdict(model_paths: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    model = copy_model(model_paths["en"], models)
    env = {"GATEWAY_BOTS_MODELS_DIR": str(models)}

    trained = gateway("train", "en", env=env)
    assert trained.returncode == 0, trained.stderr
    assert f"en: up to date ({model.name})" in trained.stdout

    tested = gateway("test", "en", env=env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = story_names("en")
    assert f"{len(names)}/{len(names)} passed" in tested.stdout
    assert "intent accuracy (5-fold CV)" in tested.stdout
    assert "PASSED" in tested.stdout
    assert str(record_path(model)) in tested.stdout

    record = read_record(model)
    assert record is not None
    assert record.passed and record.failures == ()
    assert record.sha256 == sha256_file(model)
    assert record.stories.total == len(names) and record.stories.failed == ()
    assert record.nlu is not None and record.nlu.folds == 5
    assert record.nlu.accuracy >= load_settings().delivery.min_intent_accuracy
    assert record.nlu.examples > 200  # every NLU example was tested once
    assert set(record.nlu.per_intent) >= {"greet", "goodbye", "book_table", "inform"}
    # The publish gate accepts it; Rasa left no results/ folder in the repository.
    assert require_passed(model) == record
    assert not (ROOT / "results").exists()


def test_a_broken_story_fails_the_command_and_blocks_publishing(
    model_paths: dict[str, Path], tmp_path: Path
) -> None:
    bots = tmp_path / "bots"
    shutil.copytree(ROOT / "bots" / "en", bots / "en")
    name = break_story(bots, "en")
    models = tmp_path / "models"
    # Tests are not part of the model's content hash: the cached model is still the bot's current one.
    model = copy_model(model_paths["en"], models)
    env = {
        "GATEWAY_BOTS_DIR": str(bots),
        "GATEWAY_BOTS_MODELS_DIR": str(models),
        "GATEWAY_DELIVERY_NLU_FOLDS": "0",
    }

    tested = gateway("test", "en", env=env)
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert "tests failed for en" in tested.stderr
    assert f"stories failed: {name}" in tested.stdout
    assert "# predicted: utter_help" in tested.stdout  # Rasa's annotated story is shown
    assert "not evaluated" in tested.stdout

    record = read_record(model)
    assert record is not None and not record.passed
    assert record.stories.failed == (name,)
    with pytest.raises(ModelRejected, match="failed its tests"):
        require_passed(model)


def test_intent_accuracy_below_the_threshold_fails(model_paths: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    model = copy_model(model_paths["de"], models)
    env = {
        "GATEWAY_BOTS_MODELS_DIR": str(models),
        "GATEWAY_DELIVERY_MIN_INTENT_ACCURACY": "0.99",
        "GATEWAY_DELIVERY_NLU_FOLDS": "3",
    }

    tested = gateway("test", "de", env=env)
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert "intent accuracy (3-fold CV)" in tested.stdout
    assert "is below delivery.min_intent_accuracy 0.990" in tested.stdout
    record = read_record(model)
    assert record is not None and not record.passed
    assert record.stories.failed == ()  # the stories passed; the NLU gate failed it
    assert record.nlu is not None and record.nlu.accuracy < 0.99


def test_untested_changed_or_garbled_models_are_refused(model_paths: dict[str, Path], tmp_path: Path) -> None:
    model = copy_model(model_paths["pl"], tmp_path / "models")
    with pytest.raises(ModelRejected, match="never tested: run `gateway test pl` first"):
        require_passed(model)

    passing = EvaluationRecord(
        lang="pl",
        model=model.name,
        sha256=sha256_file(model),
        passed=True,
        failures=(),
        tested_at="2024-06-01T00:00:00Z",
        min_intent_accuracy=0.75,
        min_intent_f1=0.0,
        stories=StoryResult(total=1, failed=(), action_accuracy=1.0),
        nlu=None,
    )
    write_record(passing, model)
    assert require_passed(model) == passing
    with model.open("ab") as handle:  # the archive changes after it was tested
        handle.write(b"\0")
    with pytest.raises(ModelRejected, match="changed after it was tested"):
        require_passed(model)

    record_path(model).write_text(json.dumps({"lang": "pl", "passed": True}), encoding="utf-8")
    with pytest.raises(ModelError, match="is not valid"):
        require_passed(model)


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("train", "xx"), {}, 2, "unknown language 'xx': configured are en, pl, de"),
        (("test", "xx"), {}, 2, "unknown language 'xx'"),
        (("pipeline", "--lang", "fr"), {}, 2, "unknown language 'fr'"),
        (
            ("train", "pl"),
            {"GATEWAY_BOTS_DIR": "{tmp}/nobots"},
            2,
            "bot folder {tmp}/nobots/pl does not exist",
        ),
        (
            ("test", "pl"),
            {"GATEWAY_BOTS_DIR": "{tmp}/nobots"},
            2,
            "bot folder {tmp}/nobots/pl does not exist",
        ),
        (("test", "de"), {"GATEWAY_BOTS_MODELS_DIR": "{tmp}/empty"}, 2, "run `gateway train de` first"),
        (("test", "all", "--model", "x.tar.gz"), {}, 2, "--model names one archive"),
        (("test", "en"), {"GATEWAY_DELIVERY_NLU_FOLDS": "1"}, 2, "delivery.nlu_folds=1: allowed 0"),
        (("pipeline", "--since", "no-such-rev"), {}, 2, "revision 'no-such-rev' is not in the repository"),
    ],
)
def test_clear_errors(
    args: tuple[str, ...], env: dict[str, str], code: int, message: str, tmp_path: Path
) -> None:
    full_env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    (tmp_path / "nobots").mkdir()
    done = gateway(*args, env=full_env)
    assert done.returncode == code, done.stdout + done.stderr
    assert message.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


def test_changed_languages_reads_commits_and_uncommitted_work(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    bots = repo / "bots"
    base = git(repo, "rev-parse", "HEAD").strip()
    assert changed_languages(bots, ["en", "pl", "de"], base) == {}

    (bots / "pl" / "domain.yml").write_text("# edited\n", encoding="utf-8")
    git(repo, "commit", "-qam", "pl")
    (bots / "de" / "tests" / "test_more.yml").write_text("stories: []\n", encoding="utf-8")  # untracked
    (bots / "en" / "data" / "nlu.yml").write_text("# wip\n", encoding="utf-8")  # unstaged
    (bots / "README.md").write_text("not a bot\n", encoding="utf-8")
    assert changed_languages(bots, ["en", "pl", "de"], base) == {
        "en": ["en/data/nlu.yml"],
        "pl": ["pl/domain.yml"],
        "de": ["de/tests/test_more.yml"],
    }
    assert list(changed_languages(bots, ["pl"], base)) == ["pl"]
    # CI's "no previous commit" (a branch's first push) means every bot.
    assert list(changed_languages(bots, ["en", "pl", "de"], "0" * 40)) == ["en", "pl", "de"]
    with pytest.raises(ConfigError, match="fetch the full history"):  # a usage error: exit code 2
        changed_languages(bots, ["en"], "0123abc")


def test_pipeline_trains_and_tests_only_the_changed_language(tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    domain = repo / "bots" / "pl" / "domain.yml"
    text = domain.read_text(encoding="utf-8")
    domain.write_text(
        text.replace("Witaj w naszej restauracji", "Witamy w naszej restauracji"), encoding="utf-8"
    )
    git(repo, "commit", "-qam", "pl: new greeting")
    models = tmp_path / "models"
    env = {"GATEWAY_BOTS_DIR": str(repo / "bots"), "GATEWAY_BOTS_MODELS_DIR": str(models)}

    done = gateway("pipeline", "--since", "HEAD~1", "--no-publish", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "en: unchanged since HEAD~1" in done.stdout
    assert "de: unchanged since HEAD~1" in done.stdout
    assert "pl: changed: pl/domain.yml" in done.stdout
    assert "[1/1] pl: training" in done.stdout
    assert sorted(p.name for p in models.iterdir()) == ["pl"]
    (model,) = sorted(models.glob("pl/*.tar.gz"))
    assert f"== pl: would publish {model.name}" in done.stdout
    record = read_record(model)
    assert record is not None and record.passed

    again = gateway("pipeline", "--since", "HEAD", "--no-publish", env=env)
    assert again.returncode == 0
    assert "no bot changed; nothing to do" in again.stdout


def test_pipeline_stops_at_the_first_failure(model_paths: dict[str, Path], tmp_path: Path) -> None:
    repo = bot_repo(tmp_path)
    bots = repo / "bots"
    break_story(bots, "en")  # uncommitted: a local run sees work in progress
    (bots / "de" / "tests" / "test_stories.yml").write_text(
        (bots / "de" / "tests" / "test_stories.yml").read_text(encoding="utf-8") + "\n", encoding="utf-8"
    )
    models = tmp_path / "models"
    copy_model(model_paths["en"], models)
    env = {
        "GATEWAY_BOTS_DIR": str(bots),
        "GATEWAY_BOTS_MODELS_DIR": str(models),
        "GATEWAY_DELIVERY_NLU_FOLDS": "0",
    }

    done = gateway("pipeline", "--since", "HEAD", "--no-publish", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pipeline stopped at en (test): tests failed" in done.stderr
    assert "not run: de" in done.stderr
    assert "would publish" not in done.stdout
    assert not (models / "de").exists()


def test_delivery_settings_are_validated() -> None:
    settings = load_settings(
        env={"GATEWAY_DELIVERY_MIN_INTENT_ACCURACY": "0.9", "GATEWAY_DELIVERY_NLU_FOLDS": "0"}
    )
    assert settings.delivery.min_intent_accuracy == 0.9
    assert settings.delivery.nlu_folds == 0
    with pytest.raises(
        ConfigError, match=r"delivery\.min_intent_accuracy=1\.5: allowed a number from 0\.0 to 1\.0"
    ):
        load_settings(env={"GATEWAY_DELIVERY_MIN_INTENT_ACCURACY": "1.5"})
