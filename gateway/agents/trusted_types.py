"""skops' trusted type names, computed once per installed library versions instead of at every start.

Rasa loads its scikit-learn classifiers with `skops.io`, whose `_trusted_types` module builds its lists
of trusted type names at import time by importing every scikit-learn module: about 4 s on a quiet 2-core
machine and 12 s on a busy one, more than half of a light gateway's start-up (docs/performance.md).
The lists are plain strings that depend only on the installed skops, scikit-learn, numpy and scipy, so
the first start saves them (JSON, keyed by those versions) and later starts put a module holding the
saved lists in `sys.modules` before skops imports it. Any mismatch or unreadable file falls back to
skops' own import, and the security check is unchanged: skops compares the same names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import types
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODULE = "skops.io._trusted_types"
# The lists skops' other modules import from `_trusted_types` (skops 0.9).
NAMES = (
    "PRIMITIVE_TYPE_NAMES",
    "SKLEARN_ESTIMATOR_TYPE_NAMES",
    "SCIPY_UFUNC_TYPE_NAMES",
    "NUMPY_UFUNC_TYPE_NAMES",
    "NUMPY_DTYPE_TYPE_NAMES",
)
_DISTRIBUTIONS = ("skops", "scikit-learn", "numpy", "scipy")
_lock = threading.Lock()


def default_path() -> Path:
    """Where the lists are kept: beside the environment whose packages they describe."""
    return Path(sys.prefix) / "share" / "gateway" / "skops-trusted-types.json"


def versions() -> dict[str, str]:
    """The versions the lists depend on (a different one means computing them again)."""
    found = {name: metadata.version(name) for name in _DISTRIBUTIONS}
    found["python"] = sys.version.split()[0]
    return found


def install(path: Path | None = None) -> str:
    """Make `import skops.io` cheap; returns "saved lists", "computed" or "already imported"."""
    path = path or default_path()
    with _lock:
        if MODULE in sys.modules:
            return "already imported"
        wanted = versions()
        saved = _read(path, wanted)
        if saved is not None:
            sys.modules[MODULE] = _module(saved)
            logger.debug("skops trusted types from %s", path)
            return "saved lists"
        import skops.io._trusted_types as computed  # the slow import this module exists to avoid

        _write(path, {"versions": wanted, **{name: list(getattr(computed, name)) for name in NAMES}})
        return "computed"


def _module(saved: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType(MODULE, "skops' trusted type names, as saved by gateway.agents.trusted_types")
    module.PRIMITIVES_TYPES = [int, float, str, bool]  # type: ignore[attr-defined]
    for name in NAMES:
        setattr(module, name, list(saved[name]))
    return module


def _read(path: Path, wanted: dict[str, str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s (%s); computing skops' trusted types again", path, exc)
        return None
    if not isinstance(data, dict) or data.get("versions") != wanted:
        return None
    if not all(isinstance(data.get(n), list) and all(isinstance(v, str) for v in data[n]) for n in NAMES):
        logger.warning("ignoring %s: not the saved lists %s", path, ", ".join(NAMES))
        return None
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    # Atomic replace: gateway workers starting together never read half a file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    except OSError as exc:  # a read-only environment: every start computes the lists, as skops does
        logger.info("cannot save skops' trusted types to %s (%s); start-ups stay slower", path, exc)
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.chmod(tmp, 0o644)  # built as root in the image, read by the unprivileged gateway user
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        logger.info("cannot save skops' trusted types to %s (%s); start-ups stay slower", path, exc)


if __name__ == "__main__":  # `python -m gateway.agents.trusted_types`: save the lists ahead of time
    from gateway import logs

    logs.quiet_libraries()  # this module imports no TensorFlow itself; install() does
    print(f"skops trusted types ({install()}): {default_path()}")
