"""Logging set-up: plain text or one JSON object per line."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, TextIO

import orjson

from gateway.settings import LoggingSettings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={...}` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(settings: LoggingSettings) -> None:
    """Install one stderr handler on the root logger; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Importing numpy.distutils (Agent.load does) sets the *root* level to WARNING through setuptools'
    # distutils shim; our own level on "gateway" keeps the gateway's INFO lines alive after that.
    logging.getLogger("gateway").setLevel(settings.level)
    for noisy in ("rasa", "tensorflow", "absl", "matplotlib", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.level)))
    _route_structlog()


def _route_structlog() -> None:
    """Send Rasa's structlog events through stdlib logging so the levels above apply to them.

    Unconfigured, structlog prints every debug event to stdout, user text included
    (`processor.message.parse parse_data_text=...`), thousands of lines per hundred turns.
    """
    import structlog

    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def quiet_libraries() -> None:
    """Silence library start-up chatter (TensorFlow C++ logs, progress bars, deprecation warnings).

    Must run before TensorFlow is imported; explicit environment settings win.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Rasa hides its tqdm progress bars when its LOG_LEVEL is WARNING or ERROR.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    # Libraries re-insert their own warning filters on import, so filters alone do not hold.
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Log warnings (Rasa's hints about a bot's data matter); drop library deprecation notices."""
    if issubclass(category, DeprecationWarning | PendingDeprecationWarning):
        return
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)
