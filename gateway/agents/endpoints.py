"""A bot's `endpoints.yml`, read the way `rasa run --endpoints` reads it, with the gateway's overrides.

Precedence, per top-level key (`action_endpoint`, `nlg`, ...), lowest to highest:

1. `bots/<lang>/endpoints.yml` (Rasa's own parser: `${ENV}` placeholders are expanded, a missing
   variable is an error naming it);
2. `bots.languages.<lang>.endpoints.<key>` in the gateway's configuration (same shape as the file,
   `${ENV}` expanded the same way); a key given here replaces the file's key as a whole; `null` removes it.

`tracker_store` and `lock_store` are the gateway's own job (Redis, see `redis.url`): they are ignored with
one warning per bot. `models` and `nlu` are ignored too (the gateway's model store and the model's own NLU
answer). `event_broker` is read by the broker module.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from rasa.core.utils import AvailableEndpoints

    from gateway.settings import BotSettings

logger = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.yml"
# AvailableEndpoints attribute for each endpoints.yml key.
_KEYS = {
    "nlg": "nlg",
    "nlu": "nlu",
    "action_endpoint": "action",
    "models": "model",
    "tracker_store": "tracker_store",
    "lock_store": "lock_store",
    "event_broker": "event_broker",
}
_IGNORED = {
    "tracker_store": "the gateway keeps trackers itself (redis.url, or in memory)",
    "lock_store": "the gateway locks conversations itself (redis.url, or in memory)",
    "models": "models come from the gateway's model store (models.store)",
    "nlu": "each model answers with its own NLU",
}
_ENV_RE = re.compile(r"\$\{([^}]*)\}")
_warned: set[tuple[str, str]] = set()


def bot_endpoints(bot: BotSettings) -> AvailableEndpoints:
    """Rasa's `AvailableEndpoints` for `bot`: its endpoints.yml merged with the configured overrides.

    A bot without endpoints.yml and without overrides gets empty endpoints (no custom actions, Rasa's
    templated NLG), as before. ConfigError names the file or key at fault.
    """
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.endpoints import EndpointConfig

    path = bot.project_dir / ENDPOINTS_FILE
    endpoints = _read_file(path) if path.is_file() else AvailableEndpoints()
    for key, value in bot.endpoints.items():
        where = f"bots.languages.{bot.lang}.endpoints.{key}"
        attribute = _KEYS.get(key)
        if attribute is None:
            raise ConfigError(f"{where}: unknown endpoints key; allowed: {', '.join(_KEYS)}")
        if value is None:
            setattr(endpoints, attribute, None)
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping like in endpoints.yml, got {value!r}")
        setattr(endpoints, attribute, EndpointConfig.from_dict(dict(_expand(value, where))))
    for key, why in _IGNORED.items():
        if getattr(endpoints, _KEYS[key]) is not None and (bot.lang, key) not in _warned:
            _warned.add((bot.lang, key))
            logger.warning("bot %s: endpoints key %s is ignored: %s", bot.lang, key, why)
    return endpoints


def _read_file(path: Path) -> AvailableEndpoints:
    from rasa.core.utils import AvailableEndpoints

    try:
        return AvailableEndpoints.read_endpoints(str(path))
    except ValueError as exc:  # Rasa's message for an unset ${VAR} names the variable
        raise ConfigError(f"{path}: {exc}") from exc
    except Exception as exc:  # YAML and schema errors of any kind: name the file
        raise ConfigError(f"{path} is not a valid endpoints file: {type(exc).__name__}: {exc}") from exc


def _expand(value: Any, where: str) -> Any:
    """`${VAR}` placeholders expanded like Rasa expands them in endpoints.yml."""
    if isinstance(value, Mapping):
        return {key: _expand(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, where) for item in value]
    if isinstance(value, str):
        missing = [name for name in _ENV_RE.findall(value) if name not in os.environ]
        if missing:
            raise ConfigError(f"{where}: environment variable(s) not set: {', '.join(missing)}")
        return _ENV_RE.sub(lambda match: os.environ[match.group(1)], value)
    return value
