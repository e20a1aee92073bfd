"""Dialogflow CX webhook (google.cloud.dialogflow.cx.v3 WebhookRequest -> WebhookResponse).

The CX session (`sessionInfo.session`) is the conversation and `languageCode` picks the bot. The text
comes from `text` (typed) or `transcript` (speech); the fulfillment tag `welcome` starts the
conversation with the bot's welcome, `cancel` ends it politely, and `sys.no-input-*` events reprompt.
The answer REPLACEs CX's own messages with the bot's (`fulfillmentResponse.messages[].text.text[]`);
chips, images and Rasa custom payloads travel as a `payload` message in Dialogflow Messenger's
`richContent` format. The session parameter `rasa_end_conversation` tells the flow whether the bot
ended the conversation; when it did, the webhook also targets the flow's END_SESSION page, which is how
CX ends a session (EndInteraction is output-only).

Verification (each configured mechanism must pass): the Google-signed OIDC ID token CX sends with
service agent auth (`Authorization: Bearer`, aud = channels.dialogflow_cx.audience, optionally from one of
channels.dialogflow_cx.service_accounts), and/or static headers (channels.dialogflow_cx.headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

from aiohttp import hdrs, web

from gateway.auth import static
from gateway.auth.google_keys import GoogleKeys
from gateway.auth.google_token import GoogleVerifier, TokenRejected
from gateway.channels import fields, rich
from gateway.channels.channel import Channel
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.errors import Refused
from gateway.settings import Settings

logger = logging.getLogger(__name__)

WELCOME_TAG = "welcome"
CANCEL_TAG = "cancel"
NO_INPUT_EVENT = "sys.no-input-"
END_SESSION_PAGE = "END_SESSION"
# projects/<p>/locations/<l>/agents/<a>/flows/<f>/pages/<page>: the flow part names END_SESSION's page.
_PAGE_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/agents/[^/]+/flows/[^/]+)/pages/[^/]+$")


class DialogflowCxCodec:
    channel = "dialogflow_cx"

    def matches(self, body: JSON) -> bool:
        return True

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        fields.string(body, "detectIntentResponseId", "detectIntentResponseId")
        language = fields.string(body, "languageCode", "languageCode")
        session_info = fields.obj(body, "sessionInfo", "sessionInfo", required=True)
        session = fields.session_id(
            fields.string(session_info, "session", "sessionInfo.session"), "sessionInfo.session"
        )
        params = fields.obj(session_info, "parameters", "sessionInfo.parameters")
        tag = fields.string(
            fields.obj(body, "fulfillmentInfo", "fulfillmentInfo"), "tag", "fulfillmentInfo.tag"
        )
        intent = fields.string(
            fields.obj(body, "intentInfo", "intentInfo"), "displayName", "intentInfo.displayName"
        )
        page = fields.string(fields.obj(body, "pageInfo", "pageInfo"), "currentPage", "pageInfo.currentPage")
        fields.obj(body, "payload", "payload")
        text = fields.string(body, "text", "text") or fields.string(body, "transcript", "transcript")
        event = fields.string(body, "triggerEvent", "triggerEvent")
        fields.string(body, "triggerIntent", "triggerIntent")
        kind = TurnKind.MESSAGE
        if tag.lower() == WELCOME_TAG:
            kind = TurnKind.WELCOME
        elif tag.lower() == CANCEL_TAG:
            kind = TurnKind.CANCEL
        elif event.startswith(NO_INPUT_EVENT):
            kind = TurnKind.NO_INPUT
        return Turn(
            kind=kind,
            session_id=session,
            locale=fields.locale((language, "languageCode")),
            text=text,
            intent=intent,
            handler=tag,
            session_params=params,
            echo={"page": page},
        )

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """WebhookResponse replacing CX's pending messages with the bot's."""
        messages: list[JSON] = [{"text": {"text": [text]}} for text in rich.texts(reply.messages)]
        layout = rich.render(reply.messages)
        rich_content: list[JSON] = []
        if layout.image is not None:
            rich_content.append(
                {"type": "image", "rawUrl": layout.image.url, "accessibilityText": layout.image.alt}
            )
        if layout.chips and not reply.end_conversation:
            rich_content.append({"type": "chips", "options": [{"text": title} for title in layout.chips]})
        if rich_content:
            messages.append({"payload": {"richContent": [rich_content]}})
        for message in reply.messages:
            custom = message.get("custom")
            if isinstance(custom, dict) and "google" not in custom:
                messages.append({"payload": custom})
        out: JSON = {
            "fulfillmentResponse": {"messages": messages, "mergeBehavior": "REPLACE"},
            "sessionInfo": {
                "parameters": {"rasa_end_conversation": reply.end_conversation},
            },
        }
        page = _PAGE_RE.match(str(turn.echo.get("page") or ""))
        if reply.end_conversation and page is not None:
            out["targetPage"] = f"{page.group(1)}/pages/{END_SESSION_PAGE}"
        return out


class DialogflowCxChannel(Channel):
    name = "dialogflow_cx"
    codecs = (DialogflowCxCodec(),)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.verifier: GoogleVerifier | None = None

    @property
    def verified(self) -> bool:
        return self.settings.audience is not None or bool(self.settings.headers)

    @property
    def credentials_hint(self) -> str:
        return "channels.dialogflow_cx.audience and/or channels.dialogflow_cx.headers"

    @contextlib.asynccontextmanager
    async def running(self, app: web.Application) -> AsyncIterator[None]:
        if self.settings.audience is None:
            yield
            return
        google = self.gateway.google
        keys = GoogleKeys(file=google.jwks_file) if google.jwks_file else GoogleKeys(url=google.jwks_url)
        async with keys:
            self.verifier = GoogleVerifier(self.settings.audience, keys, google.leeway_seconds)
            prefetch = None
            if google.jwks_file is not None:
                await keys.refresh(strict=True)
            else:
                prefetch = asyncio.create_task(keys.refresh(), name="dialogflow-cx-keys-prefetch")
                await asyncio.sleep(0)
            logger.info("Dialogflow CX requests must carry a Google ID token for %s", self.settings.audience)
            try:
                yield
            finally:
                self.verifier = None
                if prefetch is not None:
                    prefetch.cancel()
                    await asyncio.gather(prefetch, return_exceptions=True)

    async def admit(self, request: web.Request) -> None:
        if self.settings.headers:
            static.headers(request.headers, self.settings.headers)
        if self.settings.audience is not None:
            await self._check_token(request.headers.get(hdrs.AUTHORIZATION, ""))

    async def _check_token(self, authorization: str) -> None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused("missing_token", "missing Authorization: Bearer <Google ID token>")
        if self.verifier is None:  # fail closed
            raise Refused(
                "not_configured", "cannot verify the request: verification is not initialised", status=503
            )
        try:
            claims = await self.verifier.verify(token.strip())
        except TokenRejected as exc:
            text = (
                "token audience is not channels.dialogflow_cx.audience"
                if exc.reason == "wrong_audience"
                else exc.text
            )
            raise Refused(exc.reason, text, status=exc.status) from None
        accounts = self.settings.service_accounts
        if accounts and (claims.get("email") not in accounts or claims.get("email_verified") is not True):
            raise Refused("wrong_account", "token is not from an accepted service account")
