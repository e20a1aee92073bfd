"""Alexa custom skill (request and response JSON of the Alexa Skills Kit), verified as Amazon requires.

LaunchRequest starts with the bot's welcome; an IntentRequest carries the user's words in a catch-all
slot (an AMAZON.SearchQuery slot, usually named `query`); AMAZON.StopIntent / CancelIntent end politely,
AMAZON.FallbackIntent (and intents without words) reprompt, AMAZON.HelpIntent gets the welcome (it says
what the bot does). SessionEndedRequest gets 200 with an empty response and touches no bot or tracker.
The answer is `outputSpeech` (PlainText, or SSML when the bot's text is `<speak>...</speak>`), a
`reprompt` while the session stays open, `shouldEndSession`, and a Standard card when the bot sends an
image. `request.locale` picks the bot; the Alexa session is the conversation.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.auth.alexa import (
    CERT_URL_HEADER,
    SIGNATURE_HEADER,
    TRUST,
    AlexaTrust,
    AlexaVerifier,
    check_timestamp,
)
from gateway.channels import fields, rich
from gateway.channels.channel import Channel
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.errors import BadRequest, Refused
from gateway.settings import Settings

SEARCH_SLOT = "query"
_INTENT_KINDS = {
    "AMAZON.StopIntent": TurnKind.CANCEL,
    "AMAZON.CancelIntent": TurnKind.CANCEL,
    "AMAZON.FallbackIntent": TurnKind.NO_INPUT,
    "AMAZON.HelpIntent": TurnKind.WELCOME,
}
# Requests that expect no speech: the session is over (or Alexa reports an error in our last answer).
_ENDED = {"SessionEndedRequest", "System.ExceptionEncountered"}
CARD_TITLE_CHARS = 60


def _slot_text(intent: JSON) -> str:
    """The user's words: the `query` slot's value, else the first slot that has one."""
    slots = fields.obj(intent, "slots", "request.intent.slots")
    values: list[tuple[str, str]] = []
    for name, slot in slots.items():
        if not isinstance(slot, dict):
            raise BadRequest(f"field request.intent.slots.{str(name)[:64]} must be an object")
        values.append((name, fields.string(slot, "value", "request.intent.slots.<slot>.value")))
    for name, value in values:
        if name == SEARCH_SLOT and value.strip():
            return value
    return next((value for _, value in values if value.strip()), "")


class AlexaCodec:
    channel = "alexa"

    def matches(self, body: JSON) -> bool:
        return True

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        request = fields.obj(body, "request", "request", required=True)
        kind_name = fields.string(request, "type", "request.type", required=True)
        fields.string(request, "timestamp", "request.timestamp", required=True)
        locale = fields.string(request, "locale", "request.locale")
        session = fields.obj(body, "session", "session")
        attributes = fields.obj(session, "attributes", "session.attributes")
        session_id = fields.string(session, "sessionId", "session.sessionId")
        if kind_name in _ENDED:
            return Turn(TurnKind.ENDED, session_id, locale or None, intent=kind_name)
        session_id = fields.session_id(session_id, "session.sessionId")
        turn_locale = fields.locale((locale, "request.locale"))
        if kind_name == "LaunchRequest":
            return Turn(TurnKind.WELCOME, session_id, turn_locale, session_params=attributes)
        if kind_name != "IntentRequest":
            raise BadRequest(f"unsupported request.type {kind_name[:64]!r}")
        intent = fields.obj(request, "intent", "request.intent", required=True)
        name = fields.string(intent, "name", "request.intent.name", required=True)
        text = _slot_text(intent)
        kind = _INTENT_KINDS.get(name, TurnKind.MESSAGE if text.strip() else TurnKind.NO_INPUT)
        return Turn(kind, session_id, turn_locale, text=text, intent=name, session_params=attributes)

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """The skill's response: speech, a reprompt while the session goes on, a card for images."""
        if turn.kind is TurnKind.ENDED:
            return {"version": "1.0", "response": {}}
        texts = rich.texts(reply.messages)
        response: JSON = {"outputSpeech": _speech(texts)}
        if not reply.end_conversation and texts:
            response["reprompt"] = {"outputSpeech": _speech(texts[-1:])}
        image = rich.image(reply.messages)
        if image is not None:
            plain = " ".join(t for t in texts if not _is_ssml(t))
            response["card"] = {
                "type": "Standard",
                "title": rich.cut(plain or image.alt, CARD_TITLE_CHARS),
                "text": plain,
                "image": {"smallImageUrl": image.url, "largeImageUrl": image.url},
            }
        response["shouldEndSession"] = reply.end_conversation
        return {"version": "1.0", "sessionAttributes": turn.session_params, "response": response}


def _is_ssml(text: str) -> bool:
    stripped = text.strip()
    return stripped.startswith("<speak>") and stripped.endswith("</speak>")


def _speech(texts: list[str]) -> JSON:
    if len(texts) == 1 and _is_ssml(texts[0]):
        return {"type": "SSML", "ssml": texts[0].strip()}
    return {"type": "PlainText", "text": " ".join(t for t in texts if not _is_ssml(t))}


class AlexaChannel(Channel):
    name = "alexa"
    codecs = (AlexaCodec(),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.verifier: AlexaVerifier | None = None

    @property
    def verified(self) -> bool:
        return True  # always: the skill id is required to switch the channel on

    @contextlib.asynccontextmanager
    async def running(self, app: web.Application) -> AsyncIterator[None]:
        trust = app.get(TRUST) or AlexaTrust.public()
        assert self.settings.skill_id is not None  # settings refuse alexa without one
        async with AlexaVerifier(self.settings.skill_id, trust) as verifier:
            self.verifier = verifier
            try:
                yield
            finally:
                self.verifier = None

    async def admit(self, request: web.Request) -> None:
        if self.verifier is None:
            raise Refused(
                "not_configured", "cannot verify the request: verification is not ready", status=503
            )
        url = request.headers.get(CERT_URL_HEADER, "")
        if not url:
            raise Refused("missing_cert_url", f"missing {CERT_URL_HEADER} header")
        if not request.headers.get(SIGNATURE_HEADER, ""):
            raise Refused("missing_signature", f"missing {SIGNATURE_HEADER} header")
        request["alexa_key"] = await self.verifier.signing_key(url)

    async def accept(self, request: web.Request, raw: bytes, body: JSON) -> None:
        assert self.verifier is not None  # admit ran first
        self.verifier.check_signature(request["alexa_key"], request.headers[SIGNATURE_HEADER], raw)
        alexa_request = fields.obj(body, "request", "request", required=True)
        check_timestamp(fields.string(alexa_request, "timestamp", "request.timestamp", required=True))
        system = fields.obj(fields.obj(body, "context", "context"), "System", "context.System")
        application = fields.obj(system, "application", "context.System.application")
        if not application:
            application = fields.obj(
                fields.obj(body, "session", "session"), "application", "session.application"
            )
        self.verifier.check_application(fields.string(application, "applicationId", "applicationId"))
