"""Dialogflow ES fulfillment carrying Google's AppRequest in originalDetectIntentRequest.payload."""

from __future__ import annotations

import re

from gateway.channels import chips, fields, params, passthrough, passthrough_write, rich, system_intents
from gateway.channels.conversation_v2 import TEXT_INTENT, read_input, request_context
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.settings import MAX_CANCEL_CHARS

# The query text Dialogflow reports when Google starts the conversation (the welcome event).
WELCOME_QUERY = "GOOGLE_ASSISTANT_WELCOME"
_PAYLOAD = "originalDetectIntentRequest.payload."
# A Dialogflow ES session path, the prefix of its context names (WebhookRequest.session).
_SESSION_RE = re.compile(
    r"^projects/[^/]+/(locations/[^/]+/)?agent/(environments/[^/]+/users/[^/]+/)?sessions/[^/]+$"
)


class DialogflowCodec:
    """WebhookRequest (session, queryResult, originalDetectIntentRequest) -> WebhookResponse.

    The Dialogflow session is the conversation. Routing prefers `queryResult.languageCode` (the
    language Dialogflow matched in) over the payload's `user.locale`; with neither the request is
    refused with 400. When the payload holds Google's inputs they decide the turn (welcome, cancel,
    no-input, health check, system intents) exactly as in the legacy conversation webhook; an
    event-triggered request's queryText (the event's name) is then not what the user said.
    """

    channel = "dialogflow"

    def matches(self, body: JSON) -> bool:
        """A Dialogflow body has queryResult or originalDetectIntentRequest."""
        return "queryResult" in body or "originalDetectIntentRequest" in body

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        result = fields.obj(body, "queryResult", "queryResult", required=True)
        query = fields.string(result, "queryText", "queryResult.queryText")
        language = fields.string(result, "languageCode", "queryResult.languageCode")
        intent = fields.string(
            fields.obj(result, "intent", "queryResult.intent"),
            "displayName",
            "queryResult.intent.displayName",
        )
        original = fields.obj(body, "originalDetectIntentRequest", "originalDetectIntentRequest")
        payload = fields.obj(original, "payload", "originalDetectIntentRequest.payload")
        user_locale = fields.string(
            fields.obj(payload, "user", _PAYLOAD + "user"), "locale", _PAYLOAD + "user.locale"
        )
        kind, text, final, system, extra = TurnKind.MESSAGE, query, False, None, {}
        if "inputs" in payload:
            wanted = read_input(payload, _PAYLOAD)
            if wanted.kind is TurnKind.HEALTH_CHECK:
                return Turn(TurnKind.HEALTH_CHECK, "", language or user_locale or None, intent=intent)
            kind, final, system, extra = wanted.kind, wanted.final, wanted.system, wanted.context
            # An event-triggered request's queryText is the event's name ("actions_intent_OPTION"): the
            # payload's input is what the user did; only typed or spoken text is queryText's to say.
            system_input = wanted.intent.startswith(system_intents.PREFIX) and wanted.intent != TEXT_INTENT
            text = wanted.text if system_input else query or wanted.text
        if query == WELCOME_QUERY:
            kind = TurnKind.WELCOME
        session = fields.session_id(fields.string(body, "session", "session"), "session")
        locale = fields.locale(
            (language, "queryResult.languageCode"), (user_locale, _PAYLOAD + "user.locale")
        )
        turn = Turn(
            kind=kind,
            session_id=session,
            locale=locale,
            text=text,
            intent=intent,
            final=final,
            echo=_memory(result),
            context={
                **request_context(self.channel, locale, payload, _PAYLOAD),
                **params.dialogflow_params(result),
                **extra,
            },
        )
        return turn if system is None else system_intents.with_intent(turn, system)

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """fulfillmentText for any integration, payload.google for the Assistant."""
        layout, custom = passthrough.layout_reply(reply, turn.context)
        max_chars = rich.SIMPLE_MAX_CHARS
        if turn.kind is TurnKind.CANCEL:
            layout = rich.Rich(simples=layout.simples[:1], google=layout.google)
            max_chars = MAX_CANCEL_CHARS
        ending = reply.end_conversation
        dropped: list[str] = []
        response = rich.legacy_rich_response(layout, with_chips=not ending, max_chars=max_chars)
        google: JSON = {
            "expectUserResponse": not ending,
            "richResponse": passthrough_write.legacy_rich(response, custom, dropped, ending=ending),
        }
        out: JSON = {
            "fulfillmentText": layout.display_text,
            "payload": {"google": passthrough_write.dialogflow(google, custom, turn, dropped)},
        }
        if reply.memory is not None and _SESSION_RE.match(turn.session_id):
            # Lives for the next query only: a chip is an answer to this prompt, not to later ones. A
            # session that is no Dialogflow session path cannot name a context: its chips post back as text.
            name = f"{turn.session_id}/contexts/{chips.CONTEXT_ID}"
            out["outputContexts"] = [{"name": name, "lifespanCount": 1, "parameters": reply.memory}]
        return out


def _memory(result: JSON) -> JSON:
    """The parameters of the chip-memory context among the active ones, for chips.recall (which
    checks them); a malformed context list is no memory, not an error (Dialogflow owns that field)."""
    contexts = result.get("outputContexts")
    for context in contexts if isinstance(contexts, list) else []:
        name = context.get("name") if isinstance(context, dict) else None
        if isinstance(name, str) and name.endswith(f"/contexts/{chips.CONTEXT_ID}"):
            return {"memory": context.get("parameters")}
    return {}
