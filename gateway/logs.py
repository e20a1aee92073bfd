"""Logging set-up: plain text or one JSON object per line."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

from gateway.settings import LoggingSettings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# The id of the request being handled; asyncio tasks inherit it, so a turn's logs carry its request's id.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """Plain lines; records logged during a request end with its id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


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
        if out.get("request_id", "") is None:
            del out["request_id"]  # outside a request
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(settings: LoggingSettings) -> None:
    """Install one stderr handler on the root logger; quiet the chatty libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Set on our own logger too: importing numpy.distutils (Rasa does, while loading a model) resets
    # the root logger to WARNING, which would silence every gateway log line after start-up.
    logging.getLogger("gateway").setLevel(settings.level)
    quiet = max(logging.WARNING, logging.getLevelName(settings.level))
    for noisy in ("rasa", "tensorflow", "absl", "matplotlib", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(quiet)
    _route_structlog(quiet)


def _route_structlog(level: int) -> None:
    """Send structlog (Rasa 3.6 logs most events with it) through our handler, filtered at `level`.

    Unconfigured, structlog prints every debug event to stdout, and Rasa's carry the user's text
    (parse_data_text, tracker states): a privacy leak on every turn.
    """
    import structlog

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            # A plain string: Rasa's event keys ("message", ...) would clash with LogRecord attributes.
            structlog.processors.KeyValueRenderer(key_order=["event"]),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
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
