"""Test records: the verdict of `gateway test` kept next to the model as `<model>.tests.json`.

A record names the model by sha256, so publishing can refuse a file that was never tested, failed,
or was replaced after it was tested.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ModelError, ModelRejected
from gateway.model_names import MODEL_SUFFIX

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".tests.json"


@dataclass(frozen=True)
class IntentScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class StoryResult:
    """Outcome of the bot's story tests (tests/*.yml) run against the model."""

    total: int
    failed: tuple[str, ...]
    action_accuracy: float
    # Rasa's failed_test_stories.yml (predictions annotated), cut to a readable length.
    failed_report: str = ""

    @property
    def passed(self) -> int:
        return self.total - len(self.failed)


@dataclass(frozen=True)
class NluResult:
    """Intent classification quality estimated by k-fold cross-validation of the bot's NLU data."""

    folds: int
    examples: int
    accuracy: float
    f1: float  # support-weighted over intents
    per_intent: dict[str, IntentScore] = field(default_factory=dict)
    # Most frequent (expected, predicted, count) mistakes.
    confusions: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class EvaluationRecord:
    """Everything `publish` needs to decide whether a model may go out."""

    lang: str
    model: str
    sha256: str
    passed: bool
    failures: tuple[str, ...]
    tested_at: str
    min_intent_accuracy: float
    min_intent_f1: float
    stories: StoryResult
    nlu: NluResult | None

    def to_json(self) -> str:
        """Stable, human-readable JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EvaluationRecord:
        """Parse a record written by `to_json`; ValueError/KeyError/TypeError when it is not one."""
        raw: dict[str, Any] = json.loads(text)
        st = raw["stories"]
        stories = StoryResult(
            total=int(st["total"]),
            failed=tuple(st["failed"]),
            action_accuracy=float(st["action_accuracy"]),
            failed_report=str(st.get("failed_report", "")),
        )
        nlu = None
        if raw.get("nlu") is not None:
            n = raw["nlu"]
            nlu = NluResult(
                folds=int(n["folds"]),
                examples=int(n["examples"]),
                accuracy=float(n["accuracy"]),
                f1=float(n["f1"]),
                per_intent={k: IntentScore(**v) for k, v in n["per_intent"].items()},
                confusions=tuple((str(a), str(b), int(c)) for a, b, c in n["confusions"]),
            )
        return cls(
            lang=str(raw["lang"]),
            model=str(raw["model"]),
            sha256=str(raw["sha256"]),
            passed=bool(raw["passed"]),
            failures=tuple(raw["failures"]),
            tested_at=str(raw["tested_at"]),
            min_intent_accuracy=float(raw["min_intent_accuracy"]),
            min_intent_f1=float(raw["min_intent_f1"]),
            stories=stories,
            nlu=nlu,
        )


def record_path(model: Path) -> Path:
    """`models/pl/<stamp>-<hash>.tar.gz` -> `models/pl/<stamp>-<hash>.tests.json`."""
    name = model.name.removesuffix(MODEL_SUFFIX)
    return model.with_name(name + RECORD_SUFFIX)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror}") from exc
    return digest.hexdigest()


def write_record(record: EvaluationRecord, model: Path) -> Path:
    """Write the record next to `model` atomically (a reader never sees half a file)."""
    target = record_path(model)
    fd, tmp = tempfile.mkstemp(prefix=".tests-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(record.to_json())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_record(model: Path) -> EvaluationRecord | None:
    """The model's test record, None when it was never tested; ModelError when the record is unreadable."""
    path = record_path(model)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"cannot read test record {path}: {exc.strerror}") from exc
    try:
        return EvaluationRecord.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"test record {path} is not valid ({exc!r}): run `gateway test` again") from exc


def require_passed(model: Path, sha256: str | None = None) -> EvaluationRecord:
    """The model's passing test record; ModelRejected saying why when it may not be published."""
    record = read_record(model)
    lang = model.parent.name
    if record is None:
        raise ModelRejected(
            f"{model.name} was never tested: run `gateway test {lang}` first (or use --force)"
        )
    actual = sha256 or sha256_file(model)
    if record.sha256 != actual:
        raise ModelRejected(
            f"{model.name} changed after it was tested (tested sha256 {record.sha256[:12]}, "
            f"file sha256 {actual[:12]}): run `gateway test {lang}` again"
        )
    if not record.passed:
        raise ModelRejected(f"{model.name} failed its tests: {'; '.join(record.failures)}")
    return record
