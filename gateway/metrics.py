"""Prometheus metrics of the gateway: every name in one place, per Prometheus naming conventions."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# One registry per process; tests read it through /metrics like Prometheus would.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 8.0, 10.0)

REQUESTS = Counter(
    "gateway_requests",
    "Webhook requests by channel (protocol), bot language and HTTP status.",
    ["channel", "lang", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "gateway_request_duration_seconds",
    "End-to-end webhook latency per bot language.",
    ["lang"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# multiprocess_mode: how one scrape of N workers (--workers) merges a gauge; README "With `--workers N`".
IN_FLIGHT = Gauge(
    "gateway_requests_in_flight",
    "Webhook requests being answered right now.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
INFERENCE_LATENCY = Histogram(
    "gateway_bot_inference_duration_seconds",
    "Time the bot spent on one turn (NLU + dialogue + tracker I/O).",
    ["lang"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "gateway_bot_batch_size",
    "Turns served by one model call (micro-batching, server.max_batch) per bot language and stage.",
    ["lang", "stage"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
    registry=REGISTRY,
)


class _ModelInfo:
    """`gateway_model_info{lang,model,sha256} 1`, exposed like an Info metric but kept in a gauge, since
    prometheus-client's Info has no multiprocess mode; `MODEL_INFO.labels(lang).info({...})` as with Info."""

    def __init__(self) -> None:
        self.gauge = Gauge(
            "gateway_model_info",
            "The model answering for each language.",
            ["lang", "model", "sha256"],
            registry=REGISTRY,
            multiprocess_mode="livemax",
        )
        self._current: dict[str, tuple[str, str]] = {}

    def labels(self, lang: str) -> _LangModelInfo:
        return _LangModelInfo(self, lang)

    def set(self, lang: str, model: str, sha256: str) -> None:
        old = self._current.get(lang)
        if old == (model, sha256):
            return
        self._current[lang] = (model, sha256)
        self.gauge.labels(lang, model, sha256).set(1)
        if old is not None:
            # Workers share their values through files, which remove() cannot reach: 0 marks it gone.
            self.gauge.labels(lang, *old).set(0)
            self.gauge.remove(lang, *old)


class _LangModelInfo:
    def __init__(self, owner: _ModelInfo, lang: str) -> None:
        self._owner = owner
        self._lang = lang

    def info(self, val: dict[str, str]) -> None:
        self._owner.set(self._lang, val["model"], val["sha256"])


MODEL_INFO = _ModelInfo()
MODEL_LOADED_AT = Gauge(
    "gateway_model_loaded_timestamp_seconds",
    "Unix time the answering model of each language was loaded.",
    ["lang"],
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
MODEL_LOAD_DURATION = Histogram(
    "gateway_model_load_duration_seconds",
    "Time to load (and warm) a model.",
    ["lang"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
SWAPS = Counter(
    "gateway_model_swaps",
    "Model swaps by language and result (success, download_failed, rejected, load_failed, probe_failed).",
    ["lang", "result"],
    registry=REGISTRY,
)
TRACKER_ERRORS = Counter(
    "gateway_tracker_store_errors",
    "Tracker store failures by language and operation.",
    ["lang", "operation"],
    registry=REGISTRY,
)
UNAVAILABLE = Counter(
    "gateway_unavailable_answers",
    "Turns answered with the 'temporarily unavailable' prompt, by language and reason.",
    ["lang", "reason"],
    registry=REGISTRY,
)
LOCALE_FALLBACKS = Counter(
    "gateway_locale_fallbacks",
    "Requests whose locale matched no bot and went to the default bot (bounded label set).",
    ["locale"],
    registry=REGISTRY,
)
DEADLINE_OVERRUNS = Counter(
    "gateway_deadline_overruns",
    "Turns that passed the request deadline and were answered with the 'try again' prompt.",
    ["lang"],
    registry=REGISTRY,
)
EVENT_BUS_CONNECTED = Gauge(
    "gateway_event_bus_connected",
    "1 while the model event subscription is connected.",
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
BOT_UP = Gauge(
    "gateway_bot_up",
    "1 when the bot's last health probe answered, 0 otherwise.",
    ["lang"],
    registry=REGISTRY,
    multiprocess_mode="livemin",
)
PROBE_LATENCY = Histogram(
    "gateway_probe_duration_seconds",
    "Health probe latency per bot.",
    ["lang"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
PROBES = Counter(
    "gateway_probes",
    "Health probes by language and result (ok, failed, timeout).",
    ["lang", "result"],
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "gateway_auth_failures",
    "Requests refused for failed authentication, by kind (google, admin) and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
EVENT_BROKER_PUBLISHED = Counter(
    "gateway_event_broker_published",
    "Stored events the event broker accepted, by language.",
    ["lang"],
    registry=REGISTRY,
)
EVENT_BROKER_ERRORS = Counter(
    "gateway_event_broker_errors",
    "Event broker failures by language and reason (connect, publish: retried; overflow, shutdown, config, "
    "unserialisable: events dropped).",
    ["lang", "reason"],
    registry=REGISTRY,
)
EVENT_BROKER_QUEUED = Gauge(
    "gateway_event_broker_queued_events",
    "Stored events waiting for the event broker, by language.",
    ["lang"],
    registry=REGISTRY,
    multiprocess_mode="livesum",  # each worker has its own queue: the backlog is their sum
)
ACTION_ERRORS = Counter(
    "gateway_action_errors",
    "Custom actions that could not run, by language, action and reason (unreachable, timeout, "
    "bad_response, unknown_action, error, status_<code>).",
    ["lang", "action", "reason"],
    registry=REGISTRY,
)
ACTION_DURATION = Histogram(
    "gateway_action_duration_seconds",
    "Custom action latency by language, action and mode (in_process, http), failures included.",
    ["lang", "action", "mode"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, *_LATENCY_BUCKETS),
    registry=REGISTRY,
)

# Unknown locales beyond this many distinct values share one label, keeping cardinality bounded.
MAX_LOCALE_LABELS = 50
OTHER_LOCALE = "other"
_seen_locales: set[str] = set()


def locale_label(locale: str) -> str:
    """`locale` while fewer than MAX_LOCALE_LABELS distinct ones were seen, else 'other'."""
    if locale in _seen_locales:
        return locale
    if len(_seen_locales) < MAX_LOCALE_LABELS and locale:
        _seen_locales.add(locale)
        return locale
    return OTHER_LOCALE
