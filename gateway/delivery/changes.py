"""Which bots changed: git paths under bots/<lang>/ since a revision, plus uncommitted work."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from gateway.errors import ConfigError, DeliveryError

logger = logging.getLogger(__name__)


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        raise DeliveryError("git is not installed: `pipeline --since` needs it to find changed bots") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeliveryError(f"git {' '.join(args)} in {repo} did not finish in 60 s") from exc
    if done.returncode != 0:
        raise DeliveryError(f"git {' '.join(args)} in {repo} failed: {done.stderr.strip()}")
    return done.stdout


def _paths(output: str) -> list[str]:
    return [p for p in output.split("\0") if p]


def changed_files(bots_dir: Path, since: str) -> list[str]:
    """Paths (relative to the repository) under `bots_dir` changed since `since` or not committed yet."""
    if not bots_dir.is_dir():
        raise ConfigError(f"bots folder {bots_dir} does not exist: check bots.dir (GATEWAY_BOTS_DIR)")
    top = Path(_git(bots_dir, "rev-parse", "--show-toplevel").strip()).resolve()
    scope = bots_dir.resolve().relative_to(top).as_posix() or "."
    try:
        _git(top, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    except DeliveryError as exc:  # a usage error (exit code 2): the revision given is not there
        raise ConfigError(
            f"revision {since!r} is not in the repository at {top}; in CI fetch the full history "
            "(GitLab: GIT_DEPTH: 0, GitHub: actions/checkout fetch-depth: 0)"
        ) from exc
    files = set(
        _paths(_git(top, "diff", "--name-only", "--no-renames", "-z", f"{since}...HEAD", "--", scope))
    )
    # Staged and unstaged edits, then files git does not know yet: a local run sees work in progress.
    files |= set(_paths(_git(top, "diff", "--name-only", "--no-renames", "-z", "HEAD", "--", scope)))
    files |= set(_paths(_git(top, "ls-files", "--others", "--exclude-standard", "-z", "--", scope)))
    return sorted(f"{top.as_posix()}/{f}" for f in files)


def changed_languages(bots_dir: Path, langs: Iterable[str], since: str) -> dict[str, list[str]]:
    """For each of `langs` whose bots/<lang>/ changed since `since`: the changed files, in `langs` order.

    A null revision (a branch's first push in CI) means "everything changed".
    """
    wanted = list(langs)
    if not since.strip("0"):  # CI passes 000...0 (or nothing) as "the commit before" a first push
        return {lang: ["(no previous revision: every bot counts as changed)"] for lang in wanted}
    root = PurePosixPath(bots_dir.resolve().as_posix())
    by_lang: dict[str, list[str]] = {}
    for path in changed_files(bots_dir, since):
        parts = PurePosixPath(path).relative_to(root).parts
        if len(parts) < 2:
            continue  # a file directly in bots/ belongs to no bot
        by_lang.setdefault(parts[0], []).append("/".join(parts))
    unknown = sorted(set(by_lang) - set(wanted))
    if unknown:
        logger.info("changed folders that are not selected bots: %s", ", ".join(unknown))
    return {lang: by_lang[lang] for lang in wanted if lang in by_lang}
