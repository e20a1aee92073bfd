"""Google's webhook shapes on one endpoint: Actions Builder, conversation v2 and Dialogflow ES bodies.

The shape is detected from the body. Requests are verified by Google's signed JWT when
google.project_id is set (gateway/auth/google.py). Sender ids keep their original form
(`{lang}:{session}`), so conversations stored before channels existed continue.
"""

from __future__ import annotations

from aiohttp import web

from gateway.auth import google as google_auth
from gateway.channels.actions_builder import ActionsBuilderCodec
from gateway.channels.channel import Channel
from gateway.channels.conversation_v2 import ConversationV2Codec
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.protocol import JSON, Codec
from gateway.errors import BadRequest

LEGACY_PATH = "/google_action"
# Most specific shape first: a Dialogflow body nests an AppRequest, an AppRequest has no handler.
CODECS: tuple[Codec, ...] = (DialogflowCodec(), ConversationV2Codec(), ActionsBuilderCodec())


def detect(body: JSON) -> Codec:
    """The codec whose shape `body` has, or BadRequest."""
    for codec in CODECS:
        if codec.matches(body):
            return codec
    raise BadRequest(
        "unrecognised webhook body: expected an Actions Builder, conversation v2 or Dialogflow request"
    )


class GoogleChannel(Channel):
    name = "google"
    codecs = CODECS

    @property
    def post_paths(self) -> tuple[str, ...]:
        return (self.settings.path, LEGACY_PATH)

    @property
    def verified(self) -> bool:
        return self.gateway.google.project_id is not None

    @property
    def credentials_hint(self) -> str:
        return "google.project_id"

    @property
    def namespace(self) -> str:
        return ""

    async def admit(self, request: web.Request) -> None:
        await google_auth.check(request)

    def codec_for(self, body: JSON) -> Codec:
        return detect(body)
