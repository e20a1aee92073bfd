"""Typed, immutable settings built once from config/gateway.yml, a config file, the environment and flags."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway import env_values
from gateway.env_values import EnvText
from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "gateway.yml"
ENV_PREFIX = "GATEWAY_"
# Environment variables with this prefix that are not settings (tests, tooling).
_NON_SETTING_ENV = {"GATEWAY_MODEL_CACHE", "GATEWAY_CONFIG"}
_LANG_RE = re.compile(r"^[a-z]{2,3}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Google's rule for the answer to actions.intent.CANCEL: one simple response of at most 60 characters.
MAX_CANCEL_CHARS = 60


@dataclass(frozen=True)
class Prompts:
    """Per-language texts the gateway says itself when the bot cannot answer."""

    empty: str
    timeout: str
    unavailable: str
    cancel: str
    no_input: str
    # A speaker cannot show chips: "You can say {choices}." with the choices joined by commas and the
    # `choices_or` word before the last (gateway/channels/chips.py).
    spoken_choices: str = "You can say {choices}."
    choices_or: str = "or"
    # The text a screen shows for speech with nothing displayable (audio-only SSML).
    silent_display: str = "(audio)"


@dataclass(frozen=True)
class BotSettings:
    """One language's bot."""

    lang: str
    locales: tuple[str, ...]
    project_dir: Path
    welcome: str
    probe: str
    prompts: Prompts
    # Overrides the `event_broker:` entry of bots/<lang>/endpoints.yml (same shape; {} = no broker).
    event_broker: Mapping[str, Any] | None = field(default=None, hash=False)
    # Custom actions (gateway/agents/custom_actions.py): the longest one action may take, and the
    # endpoints.yml keys that replace the bot's own (gateway/agents/endpoints.py).
    action_timeout_seconds: float = 5.0
    endpoints: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 65536
    deadline_seconds: float = 8.0
    max_text_chars: int = 1000
    workers: int = 1
    shutdown_timeout_seconds: float = 10.0
    max_header_bytes: int = 8190
    read_timeout_seconds: float = 5.0
    running_turns: int = 1
    inference: str = "loop"
    graph_runner: str = "sequential"
    # Console's replica list: this process's name (default: the host name; ":<pid>" is always added) and
    # how often it republishes which model it answers with (gateway/storage/replicas.py).
    replica_name: str | None = None
    heartbeat_seconds: float = 5.0
    max_batch: int = 16
    # Management listener (/metrics, /bots, /admin/*, /console/): off while the port is None.
    management_host: str | None = None
    management_port: int | None = None


@dataclass(frozen=True)
class RedisSettings:
    url: str | None = None
    key_prefix: str = "gateway"
    socket_timeout_seconds: float = 2.0
    cluster: bool = False


@dataclass(frozen=True)
class TrackerSettings:
    ttl_seconds: int = 86400
    lock_lease_seconds: float = 15.0


@dataclass(frozen=True)
class ModelSettings:
    store: str = "local"
    path: Path = Path("models")
    bucket: str = "{project}-{lang}"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    hmac_key: str | None = field(default=None, repr=False)
    signing_key_file: Path | None = None  # Ed25519 private key: publishers only
    verify_key_file: Path | None = None  # trusted Ed25519 public keys: gateways


@dataclass(frozen=True)
class EventSettings:
    channel: str = "{project}-{lang}"
    reconcile_seconds: float = 60.0


@dataclass(frozen=True)
class DeliverySettings:
    """Quality gates of `gateway test` (and so of `pipeline` and `publish`)."""

    min_intent_accuracy: float = 0.75
    min_intent_f1: float = 0.0
    nlu_folds: int = 5


@dataclass(frozen=True)
class AdminSettings:
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GoogleSettings:
    project_id: str | None = None
    jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    jwks_file: Path | None = None
    leeway_seconds: int = 30
    # Seals the chip memory kept in Google's session params / conversation token / contexts
    # (gateway/channels/chips.py). Unset: each process draws its own, so set it when several answer.
    memory_key: str | None = field(default=None, repr=False)


# channels.<name>: every channel the gateway can serve, with its default path (see gateway/channels/).
CHANNEL_PATHS = {
    "google": "/webhook/google",
    "dialogflow_es": "/webhook/dialogflow-es",
    "dialogflow_cx": "/webhook/dialogflow-cx",
    "rest": "/webhooks/rest",
    "alexa": "/webhook/alexa",
}
# Channels whose requests carry Google's AppRequest, hence its system intents.
_GOOGLE_PAYLOAD_CHANNELS = ("google", "dialogflow_es")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


@dataclass(frozen=True)
class ChannelSettings:
    """channels.<name>: served or not, where, and the credentials its requests are verified with.

    Each channel reads only its own credentials (gateway/channels/<name>.py); unset means unverified.
    """

    enabled: bool = True
    path: str = ""
    token: str | None = field(default=None, repr=False)  # rest: bearer token
    username: str | None = None  # dialogflow_es: basic auth
    password: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # dialogflow_es/_cx: static headers
    audience: str | None = None  # dialogflow_cx: the OIDC ID token's aud (the webhook URL)
    service_accounts: tuple[str, ...] = ()  # dialogflow_cx: accepted token emails (empty = any)
    skill_id: str | None = None  # alexa: the applicationId requests must carry
    # google/dialogflow_es: Google system intent -> the bot's intent (gateway/channels/system_intents.py)
    system_intents: Mapping[str, str] = field(default_factory=dict)


def default_channels() -> dict[str, ChannelSettings]:
    """Every channel with its documented defaults (all on but Alexa, which needs a skill id)."""
    return {name: ChannelSettings(enabled=name != "alexa", path=path) for name, path in CHANNEL_PATHS.items()}


@dataclass(frozen=True)
class MonitorSettings:
    interval_seconds: float = 10.0
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "text"
    user_text: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs, validated; build it with `load_settings`."""

    project: str
    environment: str
    default_bot: str
    bots: Mapping[str, BotSettings]
    bots_dir: Path
    models_dir: Path
    train_missing: bool
    ending_actions: frozenset[str]
    server: ServerSettings = ServerSettings()
    redis: RedisSettings = RedisSettings()
    trackers: TrackerSettings = TrackerSettings()
    models: ModelSettings = ModelSettings()
    events: EventSettings = EventSettings()
    delivery: DeliverySettings = DeliverySettings()
    admin: AdminSettings = AdminSettings()
    google: GoogleSettings = GoogleSettings()
    channels: Mapping[str, ChannelSettings] = field(default_factory=default_channels)
    monitor: MonitorSettings = MonitorSettings()
    logging: LoggingSettings = LoggingSettings()

    def channel_for(self, lang: str) -> str:
        """Redis pub/sub channel announcing new models for `lang`."""
        return self._namespaced(self.events.channel, lang)

    def bucket_for(self, lang: str) -> str:
        """S3 bucket holding `lang`'s model archives."""
        return self._namespaced(self.models.bucket, lang)

    def _namespaced(self, template: str, lang: str) -> str:
        # Production keeps the original pipeline's names; staging gets its own unless the template
        # places {env} itself, so the two never share a bucket or a channel.
        project = self.project
        if self.environment != "production" and "{env}" not in template:
            project = f"{project}-{self.environment}"
        return template.format(project=project, lang=lang, env=self.environment)

    @property
    def local_store_root(self) -> Path:
        """The local model store's folder for this environment (staging: `<models.path>/staging`)."""
        if self.environment == "production":
            return self.models.path
        return self.models.path / self.environment


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Merge defaults, `config_file`, `GATEWAY_*` environment and dotted `overrides`; validate."""
    raw = _read_yaml(DEFAULT_CONFIG)
    if config_file is not None:
        _deep_merge(raw, _read_yaml(Path(config_file)))
    _apply_env(raw, env or {})
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(raw, dotted.split("."), value)
    return _build(raw, base_dir or ROOT)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _leaf_paths(node: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Map GATEWAY_* names to the scalar leaves of the default config."""
    out: dict[str, tuple[str, ...]] = {}
    for key, value in node.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.update(_leaf_paths(value, path))
        else:
            out[ENV_PREFIX + "_".join(path).upper()] = path
    return out


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    # Values stay text (EnvText): the reader parses each by its setting's declared type.
    known = _leaf_paths(raw)
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NON_SETTING_ENV:
            continue
        path = known.get(name)
        if path is None:
            logger.warning("ignoring %s: not a setting (see config/gateway.yml for the keys)", name)
            continue
        _set_path(raw, list(path), EnvText(text, name))


def _secret_keys() -> frozenset[str]:
    """Dotted keys of secret settings: fields kept out of repr (admin.token, models.hmac_key, ...)."""
    out: set[str] = set()
    for section in dataclasses.fields(Settings):
        if dataclasses.is_dataclass(section.default):
            out.update(f"{section.name}.{f.name}" for f in dataclasses.fields(section.default) if not f.repr)
    return frozenset(out)


class _Reader:
    """Reads typed values out of the merged mapping; errors name the key, the value and what is allowed."""

    def __init__(self, raw: Mapping[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def section(self, name: str) -> _Reader:
        value = self.raw.get(name, {})
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.key(name)}: expected a mapping, got {value!r}")
        return _Reader(value, f"{self.key(name)}.")

    def fail(self, name: str, value: Any, allowed: str) -> ConfigError:
        key = self.key(name)
        secret = key in _secret_keys() or env_values.looks_secret(key)
        return ConfigError(
            f"invalid setting {key}={env_values.shown(value, secret)}: allowed {allowed}"
            f"{env_values.source(value)}"
        )

    def str_(self, name: str, default: str | None = None, *, optional: bool = False) -> Any:
        value = self.raw.get(name, default)
        if isinstance(value, EnvText):  # environment text: kept exactly; empty unsets an optional setting
            if value == "" and not optional:
                raise self.fail(
                    name, value, "a non-empty string (an empty value only unsets optional settings)"
                )
            return str(value) if value != "" else None
        if value is None:
            if optional:
                return None
            raise self.fail(name, value, "a non-empty string")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(name, value, "a string")
        text = str(value).strip()
        if not text:
            if optional:
                return None
            raise self.fail(name, value, "a non-empty string")
        return text

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(name, default)
        if value not in choices:
            raise self.fail(name, value, "one of " + ", ".join(choices))
        return str(value)

    def int_(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self.raw.get(name, default)
        if isinstance(value, EnvText):
            parsed = env_values.parse_int(value)
            if parsed is None:
                raise self.fail(name, value, f"an integer from {lo} to {hi}")
            value = parsed
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(name, value, f"an integer from {lo} to {hi}")
        return value

    def float_(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self.raw.get(name, default)
        if isinstance(value, EnvText):
            parsed = env_values.parse_float(value)
            if parsed is None:
                raise self.fail(name, value, f"a number from {lo} to {hi}")
            value = parsed
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(name, value, f"a number from {lo} to {hi}")
        return float(value)

    def bool_(self, name: str, default: bool) -> bool:
        value = self.raw.get(name, default)
        if isinstance(value, EnvText):
            parsed = env_values.parse_bool(value)
            if parsed is None:
                raise self.fail(name, value, "true or false (also yes/no, on/off, 1/0)")
            value = parsed
        if not isinstance(value, bool):
            raise self.fail(name, value, "true or false")
        return value

    def str_list(self, name: str, default: list[str]) -> tuple[str, ...]:
        value = self.raw.get(name, default)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, value, "a list of non-empty strings")
        return tuple(value)

    def path(self, name: str, default: str | None, base: Path, *, optional: bool = False) -> Any:
        text = self.str_(name, default, optional=optional)
        if text is None:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else base / path


_REPLICA_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _replica_name(s: _Reader) -> str | None:
    """server.replica_name: shown in the console's replica list (and part of a Redis key), so plain."""
    name = s.str_("replica_name", optional=True)
    if name is not None and not _REPLICA_NAME_RE.match(name):
        raise s.fail("replica_name", name, "1..100 letters, digits, dots, dashes or underscores, or null")
    return name  # type: ignore[no-any-return]


def _management_listener(s: _Reader) -> dict[str, Any]:
    """server.management_host/port: both None (off), or where /metrics, /bots and /admin/* are served."""
    host = s.str_("management_host", optional=True)
    raw_port = s.raw.get("management_port")
    if raw_port is None or raw_port == "":  # unset (YAML null, or an empty environment value)
        if host is not None:
            raise s.fail("management_port", raw_port, "a port from 1 to 65535 when management_host is set")
        return {}
    port = s.int_("management_port", 0, 1, 65535)
    if port == s.int_("port", 8080, 0, 65535):
        raise s.fail("management_port", port, "a port other than server.port (the public listener)")
    return {"management_host": host or s.str_("host", "0.0.0.0"), "management_port": port}


def _trusted_url(url: str) -> bool:
    """https anywhere; plain http only to this machine (a local JWKS server in tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def _cluster_url(url: str) -> bool:
    """A URL RedisCluster accepts: redis:// or rediss://, database 0 (or none)."""
    parts = urlsplit(url)
    return (
        parts.scheme in ("redis", "rediss")
        and parts.path.strip("/") in ("", "0")
        and "db=" not in parts.query
    )


def _event_broker(r: _Reader) -> dict[str, Any] | None:
    value = r.raw.get("event_broker")
    if value is not None and not isinstance(value, Mapping):
        raise r.fail("event_broker", value, "a mapping shaped like endpoints.yml's event_broker (type, url)")
    return dict(value) if value is not None else None


def _choices_template(p: _Reader) -> str:
    """prompts.spoken_choices: text holding the one placeholder {choices} (no other braces)."""
    template = str(p.str_("spoken_choices", Prompts.spoken_choices))
    rest = template.replace("{choices}", "", 1)
    if "{choices}" not in template or "{" in rest or "}" in rest:
        raise p.fail("spoken_choices", template, "text with {choices} once and no other braces")
    return template


def _build(raw: Mapping[str, Any], base: Path) -> Settings:
    from gateway.routing.locale import normalise_locale

    top = _Reader(raw)
    project = top.str_("project", "gateway")
    if not _NAME_RE.match(project):
        raise top.fail("project", project, "letters, digits, '-', '_' or '.' (max 63 chars)")
    environment = top.choice("environment", "production", ("staging", "production"))

    b = top.section("bots")
    bots_dir = b.path("dir", "bots", base)
    models_dir = b.path("models_dir", "models", base)
    langs = b.section("languages")
    if not langs.raw:
        raise ConfigError("bots.languages: at least one bot must be configured")
    bots: dict[str, BotSettings] = {}
    for lang in langs.raw:
        if not isinstance(lang, str) or not _LANG_RE.match(lang):
            raise langs.fail(str(lang), lang, "a lower-case ISO 639 language code such as en, pl, de")
        r = langs.section(lang)
        p = r.section("prompts")
        locales = []
        for loc in r.str_list("locales", [lang]):
            try:
                locales.append(normalise_locale(loc))
            except ValueError as exc:
                raise r.fail("locales", loc, f"BCP-47 tags like en-US ({exc})") from exc
        bots[lang] = BotSettings(
            lang=lang,
            locales=tuple(locales),
            project_dir=bots_dir / lang,
            welcome=r.str_("welcome", "/greet"),
            probe=r.str_("probe", "hello"),
            prompts=Prompts(
                empty=p.str_("empty"),
                timeout=p.str_("timeout"),
                unavailable=p.str_("unavailable"),
                cancel=p.str_("cancel"),
                no_input=p.str_("no_input"),
                spoken_choices=_choices_template(p),
                choices_or=p.str_("choices_or", Prompts.choices_or),
                silent_display=p.str_("silent_display", Prompts.silent_display),
            ),
            event_broker=_event_broker(r),
            action_timeout_seconds=r.float_("action_timeout_seconds", 5.0, 0.01, 120.0),
            endpoints=dict(r.section("endpoints").raw),
        )
        if len(bots[lang].prompts.cancel) > MAX_CANCEL_CHARS:
            raise p.fail("cancel", bots[lang].prompts.cancel, f"at most {MAX_CANCEL_CHARS} characters")
    default_bot = b.str_("default", next(iter(bots)))
    if default_bot not in bots:
        raise b.fail("default", default_bot, "one of the configured languages: " + ", ".join(bots))

    s = top.section("server")
    server = ServerSettings(
        host=s.str_("host", "0.0.0.0"),
        port=s.int_("port", 8080, 0, 65535),
        max_body_bytes=s.int_("max_body_bytes", 65536, 1024, 16 * 1024 * 1024),
        deadline_seconds=s.float_("deadline_seconds", 8.0, 0.05, 120.0),
        max_text_chars=s.int_("max_text_chars", 1000, 1, 100_000),
        workers=s.int_("workers", 1, 1, 64),
        shutdown_timeout_seconds=s.float_("shutdown_timeout_seconds", 10.0, 0.0, 600.0),
        max_header_bytes=s.int_("max_header_bytes", 8190, 1024, 65536),
        read_timeout_seconds=s.float_("read_timeout_seconds", 5.0, 0.05, 120.0),
        running_turns=s.int_("running_turns", 1, 0, 1024),
        inference=s.choice("inference", "loop", ("loop", "thread")),
        graph_runner=s.choice("graph_runner", "sequential", ("sequential", "dask")),
        replica_name=_replica_name(s),
        heartbeat_seconds=s.float_("heartbeat_seconds", 5.0, 0.1, 300.0),
        max_batch=s.int_("max_batch", 16, 1, 1024),
        **_management_listener(s),
    )
    for lang, bot in bots.items():  # an action runs inside the turn's deadline, never past it
        if bot.action_timeout_seconds > server.deadline_seconds:
            bots[lang] = replace(bot, action_timeout_seconds=server.deadline_seconds)
    rd = top.section("redis")
    redis_url = rd.str_("url", optional=True)
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise rd.fail("url", redis_url, "a redis://, rediss:// or unix:// URL, or null")
    prefix = rd.str_("key_prefix", "gateway")
    if not _NAME_RE.match(prefix):
        raise rd.fail("key_prefix", prefix, "letters, digits, '-', '_' or '.'")
    if server.workers > 1 and redis_url is None:
        raise ConfigError(
            f"invalid setting server.workers={server.workers}: more than one worker process needs redis.url "
            "(GATEWAY_REDIS_URL), because workers share conversations only through Redis; "
            "set redis.url or use server.workers=1"
        )
    redis = RedisSettings(
        url=redis_url,
        key_prefix=prefix,
        socket_timeout_seconds=rd.float_("socket_timeout_seconds", 2.0, 0.05, 60.0),
        cluster=rd.bool_("cluster", False),
    )
    if redis.cluster and redis_url is not None and not _cluster_url(redis_url):
        raise ConfigError(
            "invalid setting redis.url: with redis.cluster=true it must be a redis:// or rediss:// URL of "
            "any cluster node, without a database number other than 0 (Redis Cluster has one database "
            "and no unix sockets)"
        )
    t = top.section("trackers")
    trackers = TrackerSettings(
        ttl_seconds=t.int_("ttl_seconds", 86400, 0, 10 * 365 * 86400),
        lock_lease_seconds=t.float_("lock_lease_seconds", 15.0, 0.1, 600.0),
    )
    m = top.section("models")
    models = ModelSettings(
        store=m.choice("store", "local", ("local", "s3")),
        path=m.path("path", None, base, optional=True) or models_dir,
        bucket=m.str_("bucket", "{project}-{lang}"),
        s3_endpoint_url=m.str_("s3_endpoint_url", optional=True),
        s3_region=m.str_("s3_region", "us-east-1"),
        s3_access_key_id=m.str_("s3_access_key_id", optional=True),
        s3_secret_access_key=m.str_("s3_secret_access_key", optional=True),
        hmac_key=m.str_("hmac_key", optional=True),
        signing_key_file=m.path("signing_key_file", None, base, optional=True),
        verify_key_file=m.path("verify_key_file", None, base, optional=True),
    )
    if "{project}" not in models.bucket and "{env}" not in models.bucket:
        raise m.fail(
            "bucket", models.bucket, "a template with {project} or {env} (environments must not share)"
        )
    if models.hmac_key is not None and len(models.hmac_key) < 16:
        raise ConfigError(
            "invalid setting models.hmac_key: too short (at least 16 characters); "
            "unset it to load unsigned models"
        )
    ev = top.section("events")
    events = EventSettings(
        channel=ev.str_("channel", "{project}-{lang}"),
        reconcile_seconds=ev.float_("reconcile_seconds", 60.0, 0.1, 86400.0),
    )
    if "{project}" not in events.channel and "{env}" not in events.channel:
        raise ev.fail(
            "channel", events.channel, "a template with {project} or {env} (environments must not share)"
        )
    dl = top.section("delivery")
    folds = dl.int_("nlu_folds", 5, 0, 20)
    if folds == 1:
        raise dl.fail("nlu_folds", folds, "0 (no NLU evaluation) or 2 to 20")
    delivery = DeliverySettings(
        min_intent_accuracy=dl.float_("min_intent_accuracy", 0.75, 0.0, 1.0),
        min_intent_f1=dl.float_("min_intent_f1", 0.0, 0.0, 1.0),
        nlu_folds=folds,
    )
    a = top.section("admin")
    token = a.str_("token", optional=True)
    if token is not None and len(token) < 16:
        raise ConfigError(
            "invalid setting admin.token: too short (at least 16 characters); "
            "unset it to turn admin routes off"
        )
    g = top.section("google")
    jwks_url = g.str_("jwks_url", GoogleSettings.jwks_url)
    if not _trusted_url(jwks_url):
        raise g.fail("jwks_url", jwks_url, "an https:// URL (http:// only for localhost)")
    google = GoogleSettings(
        project_id=g.str_("project_id", optional=True),
        jwks_url=jwks_url,
        jwks_file=g.path("jwks_file", None, base, optional=True),
        leeway_seconds=g.int_("leeway_seconds", 30, 0, 600),
        memory_key=g.str_("memory_key", optional=True),
    )
    if google.memory_key is not None and len(google.memory_key) < 16:
        raise ConfigError(
            "invalid setting google.memory_key: too short (at least 16 characters); "
            "unset it to let each process draw its own"
        )
    channels = _channels(top.section("channels"))
    mo = top.section("monitor")
    monitor = MonitorSettings(
        interval_seconds=mo.float_("interval_seconds", 10.0, 0.0, 3600.0),
        timeout_seconds=mo.float_("timeout_seconds", 5.0, 0.05, 600.0),
    )
    lg = top.section("logging")
    log = LoggingSettings(
        level=lg.choice("level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        format=lg.choice("format", "text", ("text", "json")),
        user_text=lg.bool_("user_text", False),
    )
    return Settings(
        project=project,
        environment=environment,
        default_bot=default_bot,
        bots=bots,
        bots_dir=bots_dir,
        models_dir=models_dir,
        train_missing=b.bool_("train_missing", True),
        ending_actions=frozenset(b.str_list("ending_actions", ["utter_goodbye"])),
        server=server,
        redis=redis,
        trackers=trackers,
        models=models,
        events=events,
        delivery=delivery,
        admin=AdminSettings(token=token),
        google=google,
        channels=channels,
        monitor=monitor,
        logging=log,
    )


def _channels(c: _Reader) -> dict[str, ChannelSettings]:
    out: dict[str, ChannelSettings] = {}
    for name, default_path in CHANNEL_PATHS.items():
        r = c.section(name)
        path = r.str_("path", default_path).rstrip("/")
        if not _PATH_RE.match(path):
            raise r.fail("path", path, "an absolute URL path such as " + default_path)
        username, password = r.str_("username", optional=True), r.str_("password", optional=True)
        if (username is None) != (password is None) or (username is not None and ":" in username):
            raise ConfigError(
                f"invalid setting {r.key('username')}/{r.key('password')}: set both (basic auth, "
                "no ':' in the user name) or neither"
            )
        token = r.str_("token", optional=True)
        if token is not None and len(token) < 16:
            raise ConfigError(f"invalid setting {r.key('token')}: too short (at least 16 characters)")
        out[name] = ChannelSettings(
            enabled=r.bool_("enabled", name != "alexa"),
            path=path,
            token=token,
            username=username,
            password=password,
            headers=_headers(r),
            audience=r.str_("audience", optional=True),
            service_accounts=r.str_list("service_accounts", []),
            skill_id=r.str_("skill_id", optional=True),
            system_intents=_system_intents(r) if name in _GOOGLE_PAYLOAD_CHANNELS else {},
        )
    if out["alexa"].enabled and out["alexa"].skill_id is None:
        raise ConfigError(
            "invalid setting channels.alexa.skill_id=None: the Alexa channel needs the skill id requests "
            "must carry (amzn1.ask.skill...); set it or channels.alexa.enabled=false"
        )
    paths = [s.path for s in out.values() if s.enabled]
    if len(set(paths)) != len(paths):
        raise ConfigError(
            "channels: two enabled channels share a path; give each its own channels.<name>.path"
        )
    return out


def _system_intents(r: _Reader) -> dict[str, str]:
    """channels.<google|dialogflow_es>.system_intents: {actions.intent.NAME: bot_intent}."""
    from gateway.channels.system_intents import MAPPABLE, RASA_INTENT_RE

    value = r.raw.get("system_intents")
    if isinstance(value, str):  # from the environment: a flow mapping
        try:
            value = yaml.load(value, Loader=yaml.BaseLoader) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise r.fail("system_intents", value, f"a YAML mapping ({exc.__class__.__name__})") from None
    if value is None or value == {}:
        return {}
    if not isinstance(value, Mapping):
        raise r.fail("system_intents", value, "a mapping of Google system intents to bot intents")
    for key, intent in value.items():
        if key not in MAPPABLE:
            raise r.fail(f"system_intents.{key}", intent, "keys among " + ", ".join(sorted(MAPPABLE)))
        if not isinstance(intent, str) or not RASA_INTENT_RE.match(intent):
            raise r.fail(f"system_intents.{key}", intent, "a Rasa intent name (letters, digits, _ and -)")
    return {str(k): str(v) for k, v in value.items()}


def _headers(r: _Reader) -> dict[str, str]:
    """channels.<name>.headers: {Header-Name: secret value} (YAML mapping, also from the environment)."""
    value = r.raw.get("headers")
    if isinstance(value, str):  # from the environment: a flow mapping whose values all stay text
        text = value
        try:
            value = yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else {}
        except yaml.YAMLError:
            value = "unparsable"  # refused below, without echoing the secret
    if value is None or value == {}:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and _HEADER_NAME_RE.match(k) and isinstance(v, str | int) and str(v).strip()
        for k, v in value.items()
    ):
        raise ConfigError(
            f"invalid setting {r.key('headers')}: allowed a mapping of header names to non-empty values, "
            "e.g. {X-Webhook-Secret: <value>}"
        )
    return {k: str(v).strip() for k, v in value.items()}
