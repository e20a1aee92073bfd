"""Which channels this gateway serves: every known channel class, filtered by settings and safety.

Adding a channel = one module with a Channel subclass, its entry in CHANNEL_TYPES and its defaults in
`settings.CHANNEL_PATHS` / config/gateway.yml.
"""

from __future__ import annotations

import logging

from gateway.channels.alexa import AlexaChannel
from gateway.channels.channel import Channel
from gateway.channels.dialogflow_cx import DialogflowCxChannel
from gateway.channels.dialogflow_es_channel import DialogflowEsChannel
from gateway.channels.google import GoogleChannel
from gateway.channels.rest import RestChannel
from gateway.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL_TYPES: dict[str, type[Channel]] = {
    "google": GoogleChannel,
    "rest": RestChannel,
    "dialogflow_cx": DialogflowCxChannel,
    "dialogflow_es": DialogflowEsChannel,
    "alexa": AlexaChannel,
}


# Channels whose codecs keep the chip memory (gateway/channels/chips.py).
_CHIP_CHANNELS = frozenset({GoogleChannel.name, DialogflowEsChannel.name})


def enabled_channels(settings: Settings) -> list[Channel]:
    """The channels to serve, each built once; unverified ones are warned about, or left out.

    While google.project_id is set the deployment is a verified one, so a channel without its own
    credentials is not served at all: switching verification on for Google never opens another door.
    """
    out: list[Channel] = []
    for name, channel_type in CHANNEL_TYPES.items():
        if not settings.channels[name].enabled:
            continue
        channel = channel_type(settings)
        if not channel.verified and name != GoogleChannel.name:  # google warns itself (auth/google.py)
            if settings.google.project_id is not None:
                logger.warning(
                    "channel %s is not served: google.project_id is set, so every channel must verify its "
                    "requests; set %s (or channels.%s.enabled=false)",
                    name,
                    channel.credentials_hint,
                    name,
                )
                continue
            logger.warning(
                "channel %s (%s) accepts unverified requests: anyone who knows the URL can talk to the bots; "
                "set %s",
                name,
                channel.settings.path,
                channel.credentials_hint,
            )
        out.append(channel)
    shared = settings.server.workers > 1 or settings.redis.url is not None  # several processes answer
    if shared and settings.google.memory_key is None and any(c.name in _CHIP_CHANNELS for c in out):
        logger.warning(
            "google.memory_key is not set: each process seals suggestion chips with its own key, so a chip "
            "tapped on another worker or replica reaches the bot as text, not as its payload; set it"
        )
    return out
