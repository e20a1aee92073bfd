"""Rasa's REST channel, as Rasa 3.6 serves it (rasa/core/channels/rest.py), for existing Rasa clients.

POST <path>/webhook with `{"sender", "message", "metadata"?}` answers the list Rasa's
CollectingOutputChannel collects: `[{"recipient_id", "text"?, "image"?, "buttons"?, "attachment"?,
"custom"?}]`, keys in Rasa's order and absent values left out. GET <path>/ answers `{"status": "ok"}`.
The bot is chosen by `metadata.locale`, else `?lang=`, else the Accept-Language header, else the default
bot. An optional bearer token (channels.rest.token) is compared in constant time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from aiohttp import hdrs, web

from gateway.auth import static
from gateway.channels import fields
from gateway.channels.channel import Channel
from gateway.channels.protocol import JSON, Codec, Reply, Turn, TurnKind
from gateway.errors import BadRequest

# CollectingOutputChannel._message builds its dicts in this order, dropping None values.
RASA_KEYS = ("text", "image", "buttons", "attachment", "custom")
MAX_ACCEPT_LANGUAGE_CHARS = 512
_Q_RE = re.compile(r"^q=([01](?:\.\d{0,3})?)$")


def accept_language(header: str) -> str | None:
    """The most preferred tag of an Accept-Language header (earliest among equals; `*` ignored)."""
    best: tuple[float, str] | None = None
    for item in header[:MAX_ACCEPT_LANGUAGE_CHARS].split(","):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        weight = 1.0
        match = _Q_RE.match(params.strip().replace(" ", ""))
        if params and match is None:
            continue  # a malformed weight: skip the entry rather than guess
        if match is not None:
            weight = float(match.group(1))
        if weight > 0 and (best is None or weight > best[0]):
            best = (weight, tag)
    return best[1] if best else None


class RestCodec:
    """`{"sender", "message", "metadata"}` -> Rasa's list of collected messages."""

    channel = "rest"

    def matches(self, body: JSON) -> bool:
        return True

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault (the locale is filled in by RestChannel)."""
        sender = fields.session_id(fields.string(body, "sender", "sender"), "sender")
        if body.get("message") is None:
            raise BadRequest("missing field message")
        text = fields.string(body, "message", "message")
        metadata = fields.obj(body, "metadata", "metadata")
        locale = fields.string(metadata, "locale", "metadata.locale").strip()
        return Turn(TurnKind.MESSAGE, sender, locale or None, text=text)

    def encode(self, turn: Turn, reply: Reply) -> list[JSON]:
        """One dict per message, addressed to the client's own sender id."""
        out: list[JSON] = []
        for message in reply.messages:
            item: JSON = {"recipient_id": turn.session_id}
            item.update((key, message[key]) for key in RASA_KEYS if message.get(key) is not None)
            if len(item) > 1:
                out.append(item)
        return out


class RestChannel(Channel):
    name = "rest"
    codecs = (RestCodec(),)

    @property
    def post_paths(self) -> tuple[str, ...]:
        return (self.settings.path + "/webhook",)

    @property
    def get_routes(self) -> Mapping[str, JSON]:
        # Rasa answers GET /webhooks/rest/ (with the slash); the bare prefix is served too.
        return {self.settings.path + "/": {"status": "ok"}, self.settings.path: {"status": "ok"}}

    @property
    def verified(self) -> bool:
        return self.settings.token is not None

    @property
    def credentials_hint(self) -> str:
        return "channels.rest.token"

    async def admit(self, request: web.Request) -> None:
        if self.settings.token is not None:
            static.bearer(request.headers.get(hdrs.AUTHORIZATION, ""), self.settings.token)

    def decode(self, request: web.Request, body: JSON) -> tuple[Codec, Turn]:
        codec = self.codecs[0]
        if request.query.get("stream", "").lower() in ("true", "1", "yes"):
            raise BadRequest("?stream=true is not supported: leave it out to get the whole answer list")
        turn = codec.decode(body)
        if turn.locale is None:
            tag = request.query.get("lang", "").strip() or accept_language(
                request.headers.get(hdrs.ACCEPT_LANGUAGE, "")
            )
            if tag:
                turn = dataclasses.replace(turn, locale=tag[:64])
        return codec, turn
