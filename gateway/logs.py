"""Logging set-up: plain text or one JSON object per line, for our records and everyone else's.

Every line the process writes goes through here: our loggers, Rasa's structlog events, Python
warnings and the commands' progress lines. Library chatter Rasa itself calls expected is dropped.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from gateway.settings import LoggingSettings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Keys of a JSON line that a record's extra fields or a structlog event may not overwrite.
_RESERVED = {"severity", "message", "time", "logger"}

# The id of the request being handled; asyncio tasks inherit it, so a turn's logs carry its request's id.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

PROGRESS = logging.getLogger("gateway.progress")
_json = False


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
    """One JSON object per line: `severity`, `message`, `time` (what Cloud Logging and most
    collectors read), `logger`, then `extra={...}` fields and a structlog event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] | None = getattr(record, "_structlog", None)
        out: dict[str, Any] = {
            "severity": record.levelname,
            "message": event["event"] if event else record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "logger": record.name,
        }
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if event:
            fields.update((k, v) for k, v in event.items() if k != "event")
        for key, value in fields.items():
            out[f"field_{key}" if key in _RESERVED else key] = value
        if out.get("request_id", "") is None:
            del out["request_id"]  # outside a request
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(settings: LoggingSettings) -> None:
    """Install one stderr handler on the root logger; quiet the chatty libraries."""
    global _json
    formatter = JsonFormatter() if settings.format == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Set on our own logger too: importing numpy.distutils (Rasa does, while loading a model) resets
    # the root logger to WARNING, which would silence every gateway log line after start-up.
    logging.getLogger("gateway").setLevel(settings.level)
    quiet = max(logging.WARNING, logging.getLevelName(settings.level))
    for noisy in ("rasa", "tensorflow", "absl", "matplotlib", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(quiet)
    # Progress lines stay on stdout (CI logs, tables); in JSON mode they are records like the rest.
    _json = settings.format == "json"
    progress_handler = logging.StreamHandler(sys.stdout)
    progress_handler.setFormatter(formatter)
    PROGRESS.handlers[:] = [progress_handler]
    PROGRESS.setLevel(logging.INFO)
    PROGRESS.propagate = False
    warnings.showwarning = _show_warning
    _route_structlog(quiet)


def progress(line: str) -> None:
    """One progress line on stdout, flushed at once (CI logs are pipes); a JSON record in JSON mode."""
    if _json:
        PROGRESS.info(line)
    else:
        print(line, flush=True)


def fatal(text: str) -> None:
    """The last line of a failed command on stderr: `gateway: <text>`, or a JSON record in JSON mode.

    A configuration error can stop the command before `configure` ran; the raw environment variable
    then still decides the format, so collectors reading JSON get JSON.
    """
    wanted = os.environ.get("GATEWAY_LOGGING_FORMAT", "").strip().lower() == "json"
    if _json or wanted:
        record = logging.LogRecord("gateway.cli", logging.ERROR, __file__, 0, text, None, None)
        print(JsonFormatter().format(record), file=sys.stderr, flush=True)
    else:
        print(f"gateway: {text}", file=sys.stderr, flush=True)


def _route_structlog(level: int) -> None:
    """Send structlog (Rasa 3.6 logs most events with it) through our handler, filtered at `level`.

    Unconfigured, structlog prints every debug event to stdout, and Rasa's carry the user's text
    (parse_data_text, tracker states): a privacy leak on every turn.
    """
    import structlog

    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, _to_record],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )


_KEY_VALUES: Any = None


def _to_record(logger: Any, method: str, event: MutableMapping[str, Any]) -> tuple[Any, ...]:
    """A structlog event as one stdlib record: key=value text for text lines, the fields for JSON."""
    global _KEY_VALUES
    if _KEY_VALUES is None:
        import structlog

        _KEY_VALUES = structlog.processors.KeyValueRenderer(key_order=["event"])
    # A plain string as the message: Rasa's event keys ("message", ...) would clash with LogRecord
    # attributes; the JSON formatter reads the fields from `_structlog` instead.
    text = _KEY_VALUES(logger, method, dict(event))
    return (text,), {"extra": {"_structlog": dict(event)}}


def quiet_libraries() -> None:
    """Silence library start-up chatter (TensorFlow C++ logs, progress bars, expected warnings).

    Call it in the process entry point, before TensorFlow is imported; settings the user made in the
    environment win (TF_CPP_MIN_LOG_LEVEL=0 brings TensorFlow's C++ lines back).
    """
    # 2: TensorFlow's C++ core prints only errors (no "TF-TRT Warning", CUDA or CPU-feature lines,
    # which bypass Python logging and would break JSON lines).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Rasa hides its tqdm progress bars when its LOG_LEVEL is WARNING or ERROR.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    # Libraries re-insert their own warning filters on import, so filters alone do not hold.
    warnings.showwarning = _show_warning


# Warnings the gateway's own bots trigger by design, beside the ones Rasa lists (EXPECTED_WARNINGS).
_OWN_EXPECTED: list[tuple[str, str]] = [
    # scikit-learn's LogisticRegression (the light pipelines) stops at max_iter on small data sets.
    ("ConvergenceWarning", r"lbfgs failed to converge"),
    # The light pipelines extract entities with RegexEntityExtractor, which Rasa's check does not count.
    ("UserWarning", r"your NLU configuration does not include an entity extractor trained"),
]
_expected: list[tuple[type[Warning] | str, re.Pattern[str]]] | None = None


def _expected_warnings() -> list[tuple[type[Warning] | str, re.Pattern[str]]]:
    global _expected
    if _expected is None:
        from rasa.utils.common import EXPECTED_WARNINGS  # the list Rasa filters in `rasa run`

        ours: list[tuple[type[Warning] | str, re.Pattern[str]]] = [
            (name, re.compile(pattern)) for name, pattern in _OWN_EXPECTED
        ]
        _expected = [(kind, re.compile(f".*{text}")) for kind, text in EXPECTED_WARNINGS] + ours
    return _expected


def is_expected(category: type[Warning], message: str) -> bool:
    """A warning Rasa (or the gateway's own bots) expects: logged at DEBUG only."""
    for kind, pattern in _expected_warnings():
        matches_kind = category.__name__ == kind if isinstance(kind, str) else issubclass(category, kind)
        if matches_kind and pattern.search(message):
            return True
    return False


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings become records: Rasa's hints about a bot's data matter; expected ones and library
    deprecation notices only show at DEBUG."""
    text = str(message)
    deprecation = issubclass(category, DeprecationWarning | PendingDeprecationWarning)
    level = logging.DEBUG if deprecation or is_expected(category, text) else logging.WARNING
    logging.getLogger("py.warnings").log(
        level, "%s: %s", category.__name__, text, extra={"category": category.__name__}
    )
