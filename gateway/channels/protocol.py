"""Protocol-neutral types of one webhook exchange, and the codec interface each webhook shape implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


class TurnKind(str, enum.Enum):
    MESSAGE = "message"  # the user said something
    WELCOME = "welcome"  # conversation start (actions.intent.MAIN)
    CANCEL = "cancel"  # the user wants out (actions.intent.CANCEL)
    NO_INPUT = "no_input"  # the user said nothing
    HEALTH_CHECK = "health_check"  # Google's health check: answer without touching a bot
    ENDED = "ended"  # the session is over (Alexa's SessionEndedRequest): nothing to say, nothing stored


@dataclass(frozen=True)
class Turn:
    """What a webhook request asks of us, independent of its shape."""

    kind: TurnKind
    session_id: str
    locale: str | None
    text: str = ""
    intent: str = ""
    handler: str = ""
    session_params: JSON = field(default_factory=dict)
    # The last no-input reprompt (NO_INPUT_FINAL / IS_FINAL_REPROMPT): Google closes the mic after it.
    final: bool = False
    # Shape-specific fields the encoder needs to echo back (conversation token, scene...).
    echo: JSON = field(default_factory=dict)
    # What the request says about the caller (locale, time zone, capabilities...): the bot's
    # UserMessage.metadata, see gateway/channels/context.py.
    context: JSON = field(default_factory=dict)
    # A Rasa message the gateway itself built ("/media_status_finished{...}" for a system intent, or a
    # remembered chip's button payload): sent to the bot verbatim. `text` is what the user said and is
    # never trusted as a payload (a typed "/intent{...}" is stripped, see routing/webhook.user_text).
    payload: str = ""


@dataclass(frozen=True)
class Reply:
    """What the bot (or the gateway on its behalf) answers."""

    messages: list[JSON]
    end_conversation: bool = False
    # The sealed chip memory the codec stores with the conversation (gateway/channels/chips.py); None
    # = nothing to remember (a codec that stored some forgets it).
    memory: JSON | None = None
    # What a bubble shows when its speech has nothing displayable (audio-only SSML), in the bot's language.
    silent_display: str = ""


class Codec(Protocol):
    """Decodes one webhook shape into a Turn and encodes a Reply in the same shape."""

    channel: str

    def matches(self, body: JSON) -> bool:
        """True when `body` looks like this codec's shape."""
        ...

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        ...

    def encode(self, turn: Turn, reply: Reply) -> JSON | list[JSON]:
        """The response body for `reply` (an object; Rasa's REST channel answers a list)."""
        ...
