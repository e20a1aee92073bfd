"""The delivery pipeline for CI: train, test and hand each passing model to `publish`, in language order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.delivery.evaluation import evaluate_model
from gateway.delivery.records import EvaluationRecord, write_record
from gateway.delivery.report import format_record
from gateway.errors import DeliveryError, GatewayError
from gateway.settings import Settings
from gateway.training import train_missing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A model trained from the bot's current sources that passed its tests: what `publish` receives."""

    lang: str
    model: Path
    record: EvaluationRecord

    @property
    def sha256(self) -> str:
        return self.record.sha256


# publish(settings, candidate): upload, set active, announce; raise a GatewayError to stop the pipeline.
Publisher = Callable[[Settings, Candidate], None]


def run_pipeline(
    settings: Settings,
    langs: Sequence[str],
    *,
    config_name: str = "config.yml",
    publish: Publisher | None = None,
    progress: Callable[[str], None] = print,
) -> list[Candidate]:
    """Train, test and publish each language in turn; DeliveryError at the first failure.

    Without `publish` the pipeline stops after the tests and reports what it would publish.
    """
    done: list[Candidate] = []
    for index, lang in enumerate(langs):
        step = "train"
        try:
            progress(f"== {lang}: train")
            bot = settings.bots[lang]
            (trained,) = train_missing(
                [(lang, bot.project_dir)], settings.models_dir, config_name=config_name, progress=progress
            )
            step = "test"
            progress(f"== {lang}: test")
            record = evaluate_model(settings, lang, trained.path, config_name=config_name, progress=progress)
            path = write_record(record, trained.path)
            progress(format_record(record, path))
            if not record.passed:
                raise DeliveryError(f"tests failed: {'; '.join(record.failures)}")
            candidate = Candidate(lang, trained.path, record)
            step = "publish"
            if publish is None:
                progress(f"== {lang}: would publish {trained.path.name} (sha256 {record.sha256})")
            else:
                progress(f"== {lang}: publish")
                publish(settings, candidate)
            done.append(candidate)
        except GatewayError as exc:
            rest = list(langs[index + 1 :])
            skipped = f"; not run: {', '.join(rest)}" if rest else ""
            raise DeliveryError(f"pipeline stopped at {lang} ({step}): {exc}{skipped}") from exc
    return done
