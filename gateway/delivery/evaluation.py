"""`gateway test`: story tests plus NLU evaluation of one model, judged against the delivery gates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from gateway.delivery.nlu import cross_validate
from gateway.delivery.records import EvaluationRecord, NluResult, StoryResult, sha256_file
from gateway.delivery.stories import run_story_tests
from gateway.errors import ModelNotFound
from gateway.settings import DeliverySettings, Settings
from gateway.training import current_model

logger = logging.getLogger(__name__)


def model_to_test(settings: Settings, lang: str, config_name: str = "config.yml") -> Path:
    """The model trained from the bot's current sources; ModelNotFound telling how to get one."""
    bot = settings.bots[lang]
    folder = settings.models_dir / lang
    model = current_model(bot.project_dir, folder, config_name)
    if model is None:
        prod = " --prod" if config_name != "config.yml" else ""
        raise ModelNotFound(
            f"no model of {lang} trained from the current sources of {bot.project_dir} in {folder}: "
            f"run `gateway train {lang}{prod}` first"
        )
    return model


def evaluate_model(
    settings: Settings,
    lang: str,
    model: Path,
    *,
    config_name: str = "config.yml",
    results_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> EvaluationRecord:
    """Run the story tests on `model` and cross-validate the bot's NLU data; the verdict as a record."""
    bot = settings.bots[lang]
    gates = settings.delivery
    sha256 = sha256_file(model)
    started = time.perf_counter()
    progress(f"{lang}: story tests of {model.name} ...")
    stories = run_story_tests(bot.project_dir / "tests", model, results_dir)
    progress(
        f"{lang}: {stories.passed}/{stories.total} stories passed ({time.perf_counter() - started:.1f}s)"
    )
    nlu = None
    if gates.nlu_folds:
        started = time.perf_counter()
        progress(f"{lang}: NLU {gates.nlu_folds}-fold cross-validation of {bot.project_dir / 'data'} ...")
        nlu = cross_validate(bot.project_dir, config_name, gates.nlu_folds)
        progress(
            f"{lang}: intent accuracy {nlu.accuracy:.3f}, F1 {nlu.f1:.3f} "
            f"over {nlu.examples} examples ({time.perf_counter() - started:.1f}s)"
        )
    failures = judge(stories, nlu, gates, bot.project_dir / "tests")
    return EvaluationRecord(
        lang=lang,
        model=model.name,
        sha256=sha256,
        passed=not failures,
        failures=tuple(failures),
        tested_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        min_intent_accuracy=gates.min_intent_accuracy,
        min_intent_f1=gates.min_intent_f1,
        stories=stories,
        nlu=nlu,
    )


def judge(stories: StoryResult, nlu: NluResult | None, gates: DeliverySettings, tests_dir: Path) -> list[str]:
    """Reasons the model must not ship; empty when it passes."""
    failures = []
    if stories.total == 0:
        failures.append(f"no story tests in {tests_dir}: add test_stories.yml")
    elif stories.failed:
        failures.append(f"{len(stories.failed)}/{stories.total} stories failed: {', '.join(stories.failed)}")
    if nlu is not None:
        if nlu.accuracy < gates.min_intent_accuracy:
            failures.append(
                f"intent accuracy {nlu.accuracy:.3f} is below delivery.min_intent_accuracy "
                f"{gates.min_intent_accuracy:.3f}"
            )
        if nlu.f1 < gates.min_intent_f1:
            failures.append(
                f"intent F1 {nlu.f1:.3f} is below delivery.min_intent_f1 {gates.min_intent_f1:.3f}"
            )
    return failures
