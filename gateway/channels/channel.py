"""The Channel interface: one request shape end to end, from its credentials to its answer body.

A channel owns its paths, its request verification (headers before the body is read, then the body
itself when the signature covers it), its codec(s) and the namespace of its conversations. The HTTP
handler (gateway/routing/webhook.py) runs every channel the same way: admit, read, accept, decode, route
by locale, answer under the deadline, encode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar

from aiohttp import web

from gateway.channels import system_intents
from gateway.channels.protocol import JSON, Codec, Turn
from gateway.errors import BadRequest
from gateway.settings import ChannelSettings, Settings


class Channel:
    """Base class of every channel; subclasses set `name` and `codecs` and override what differs."""

    name: ClassVar[str]
    # Tried in order on each body; a channel with one shape has one codec.
    codecs: tuple[Codec, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.gateway = settings
        self.settings: ChannelSettings = settings.channels[self.name]

    @property
    def post_paths(self) -> tuple[str, ...]:
        """The webhook paths (POST)."""
        return (self.settings.path,)

    @property
    def get_routes(self) -> Mapping[str, JSON]:
        """GET paths answered with a fixed JSON body (status endpoints some clients expect)."""
        return {}

    @property
    def verified(self) -> bool:
        """True when credentials are configured, so strangers are refused."""
        return False

    @property
    def credentials_hint(self) -> str:
        """The settings that switch verification on, for start-up warnings."""
        return f"channels.{self.name}.*"

    @property
    def namespace(self) -> str:
        """Prefix of this channel's Rasa sender ids: the same session id on two channels never meets."""
        return f"{self.name}:"

    @contextlib.asynccontextmanager
    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """Resources the channel needs while the app runs (key caches, HTTP sessions)."""
        yield

    async def admit(self, request: web.Request) -> None:
        """Refused unless the request's headers carry valid credentials; runs before the body is read."""

    async def accept(self, request: web.Request, raw: bytes, body: JSON) -> None:
        """Refused unless the body itself is acceptable (signatures over the bytes, ids inside it)."""

    def codec_for(self, body: JSON) -> Codec:
        """The codec whose shape `body` has, or BadRequest."""
        if len(self.codecs) == 1:
            return self.codecs[0]  # its decode names the field at fault, more useful than "unrecognised"
        for codec in self.codecs:
            if codec.matches(body):
                return codec
        raise BadRequest(f"unrecognised {self.name} request body")

    def decode(self, request: web.Request, body: JSON) -> tuple[Codec, Turn]:
        """The codec for `body` and the Turn it asks for (BadRequest naming the field at fault)."""
        codec = self.codec_for(body)
        return codec, system_intents.configured(codec.decode(body), self.settings.system_intents)
