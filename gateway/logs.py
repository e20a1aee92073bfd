"""Logging set-up: plain text or one JSON object per line."""

from __future__ import annotations

import logging
import sys
from typing import Any

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
    # Rasa's Agent.load resets the root level to WARNING; our own level must survive model loads.
    logging.getLogger("gateway").setLevel(settings.level)
    for noisy in ("rasa", "tensorflow", "absl", "matplotlib", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.level)))
