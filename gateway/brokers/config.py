"""Which event broker each bot publishes to: `bots.languages.<lang>.event_broker`, else its endpoints.

The endpoints are read like every other endpoint (gateway/agents/endpoints.py: Rasa's own reader of
`bots/<lang>/endpoints.yml`, `${ENV}` included, under `bots.languages.<lang>.endpoints` overrides).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.errors import ConfigError
from gateway.settings import BotSettings

if TYPE_CHECKING:
    from rasa.utils.endpoints import EndpointConfig


@dataclass(frozen=True)
class BrokerEndpoint:
    """One bot's broker configuration and where it came from (named in logs and errors)."""

    config: EndpointConfig
    source: str

    @property
    def kind(self) -> str:
        """Rasa's broker type: pika (the default when no type is given), sql, kafka, file or a class path."""
        return (self.config.type or "pika").lower()

    @property
    def identity(self) -> str:
        """Equal for bots whose brokers are configured identically: they share one connection and queue."""
        data = {"type": self.kind, "url": self.config.url, "kwargs": self.config.kwargs}
        return json.dumps(data, sort_keys=True, default=str)

    def describe(self) -> str:
        """`pika broker at host (source)`, never with credentials."""
        url = self.config.url
        host = ""
        if isinstance(url, str) and url:
            parts = urlsplit(url if "://" in url else f"//{url}")
            host = f" at {parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")
        return f"{self.kind} broker{host} ({self.source})"


def broker_endpoint(bot: BotSettings) -> BrokerEndpoint | None:
    """The bot's broker: the config override when set (an empty mapping means none), else endpoints.yml."""
    if bot.event_broker is not None:
        source = f"bots.languages.{bot.lang}.event_broker"
        if not bot.event_broker:
            return None
        from rasa.utils.endpoints import EndpointConfig

        try:
            return BrokerEndpoint(EndpointConfig.from_dict(dict(bot.event_broker)), source)
        except TypeError as exc:
            raise ConfigError(f"invalid setting {source}: {exc}") from exc
    # Otherwise the bot's endpoints as every other endpoint is read (gateway/agents/endpoints.py):
    # endpoints.yml, overridden by bots.languages.<lang>.endpoints.event_broker.
    from gateway.agents.endpoints import ENDPOINTS_FILE, bot_endpoints

    config: EndpointConfig | None = bot_endpoints(bot).event_broker
    if config is None:
        return None
    overridden = "event_broker" in bot.endpoints
    source = (
        f"bots.languages.{bot.lang}.endpoints.event_broker"
        if overridden
        else str(bot.project_dir / ENDPOINTS_FILE)
    )
    return BrokerEndpoint(config, source)


def broker_endpoints(bots: Mapping[str, BotSettings]) -> dict[str, BrokerEndpoint]:
    """Per language with a broker: its endpoint (languages without one are left out)."""
    out: dict[str, BrokerEndpoint] = {}
    for lang, bot in bots.items():
        endpoint = broker_endpoint(bot)
        if endpoint is not None:
            out[lang] = endpoint
    return out
