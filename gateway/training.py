"""Training bots: content-hashed model names, so "is the model current?" is a file lookup."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import BotFolderMissing, TrainingError
from gateway.model_names import MODEL_SUFFIX

logger = logging.getLogger(__name__)

# Files that define a bot's model; tests/ and results do not change the model.
_SOURCE_FILES = ("domain.yml", "domain.yaml")
_SOURCE_DIRS = ("data", "domain")


@dataclass(frozen=True)
class TrainedModel:
    lang: str
    path: Path
    trained: bool  # False when an up-to-date model already existed
    seconds: float


def bot_sources(project_dir: Path, config_name: str = "config.yml") -> list[Path]:
    """The files whose content defines the model, in a stable order."""
    if not project_dir.is_dir():
        raise BotFolderMissing(
            f"bot folder {project_dir} does not exist: create it (a Rasa 3 project) "
            "or remove the language from bots.languages in config/gateway.yml"
        )
    files = [project_dir / config_name]
    files += [project_dir / name for name in _SOURCE_FILES if (project_dir / name).is_file()]
    for sub in _SOURCE_DIRS:
        folder = project_dir / sub
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml"})
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise TrainingError(f"bot folder {project_dir} lacks {missing[0].name}: a Rasa 3 project needs it")
    return files


def source_hash(project_dir: Path, config_name: str = "config.yml") -> str:
    """sha256 over the bot's source files (relative names and bytes)."""
    digest = hashlib.sha256()
    for path in bot_sources(project_dir, config_name):
        digest.update(path.relative_to(project_dir).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def model_files(folder: Path) -> list[Path]:
    """Model archives in `folder`, oldest first (names start with a UTC timestamp)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(MODEL_SUFFIX) and p.is_file())


def current_model(project_dir: Path, models_dir: Path, config_name: str = "config.yml") -> Path | None:
    """The newest model trained from the bot's current sources, if there is one."""
    short = source_hash(project_dir, config_name)[:12]
    matches = [p for p in model_files(models_dir) if p.name.endswith(f"-{short}{MODEL_SUFFIX}")]
    return matches[-1] if matches else None


def train_bot(
    lang: str,
    project_dir: Path,
    models_dir: Path,
    *,
    config_name: str = "config.yml",
    force: bool = False,
) -> TrainedModel:
    """Train `project_dir` into `models_dir/<timestamp>-<hash>.tar.gz` unless an up-to-date model exists."""
    started = time.perf_counter()
    existing = None if force else current_model(project_dir, models_dir, config_name)
    if existing is not None:
        return TrainedModel(lang, existing, False, 0.0)
    short = source_hash(project_dir, config_name)[:12]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{stamp}-{short}"
    models_dir.mkdir(parents=True, exist_ok=True)
    from rasa.model_training import train

    # Train into a private folder, then move: readers never see a half-written archive.
    with tempfile.TemporaryDirectory(prefix=f"train-{lang}-", dir=models_dir) as tmp:
        # Rasa prints a banner naming the temporary path; keep its stdout for error messages instead.
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter):
                result = train(
                    domain=str(project_dir / "domain.yml"),
                    config=str(project_dir / config_name),
                    training_files=[str(project_dir / "data")],
                    output=tmp,
                    fixed_model_name=name,
                )
        except Exception as exc:  # rasa raises many unrelated types; translate them all here
            raise TrainingError(f"training {project_dir} failed: {exc}") from exc
        if result.code != 0 or not result.model:
            said = chatter.getvalue().strip()[-2000:]
            raise TrainingError(
                f"training {project_dir} failed (rasa exit code {result.code}): {said or 'no output'}; "
                f"run `rasa data validate` in {project_dir} to see why"
            )
        target = models_dir / Path(result.model).name
        shutil.move(result.model, target)
    return TrainedModel(lang, target, True, time.perf_counter() - started)


def train_missing(
    bots: Iterable[tuple[str, Path]],
    models_root: Path,
    *,
    force: bool = False,
    config_name: str = "config.yml",
    progress: Callable[[str], None] = print,
) -> list[TrainedModel]:
    """Train every bot whose model is missing or stale, printing one progress line per step."""
    todo = list(bots)
    out = []
    for index, (lang, project_dir) in enumerate(todo, 1):
        folder = models_root / lang
        existing = None if force else current_model(project_dir, folder, config_name)
        if existing is not None:
            progress(f"[{index}/{len(todo)}] {lang}: up to date ({existing.name})")
            out.append(TrainedModel(lang, existing, False, 0.0))
            continue
        progress(f"[{index}/{len(todo)}] {lang}: training {project_dir} ...")
        model = train_bot(lang, project_dir, folder, config_name=config_name, force=True)
        progress(f"[{index}/{len(todo)}] {lang}: trained in {model.seconds:.1f}s -> {model.path}")
        out.append(model)
    return out
