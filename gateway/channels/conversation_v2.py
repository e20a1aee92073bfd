"""Legacy conversation webhook (Actions SDK v2): AppRequest in, AppResponse out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gateway.channels import chips, fields, params, passthrough, passthrough_write, rich, system_intents
from gateway.channels.context import google_context
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.channels.system_intents import SystemIntent
from gateway.errors import BadRequest
from gateway.settings import MAX_CANCEL_CHARS

TEXT_INTENT = "actions.intent.TEXT"
_KINDS = {
    "actions.intent.MAIN": TurnKind.WELCOME,
    "actions.intent.TEXT": TurnKind.MESSAGE,
    "actions.intent.OPTION": TurnKind.MESSAGE,
    "actions.intent.CANCEL": TurnKind.CANCEL,
    "actions.intent.NO_INPUT": TurnKind.NO_INPUT,
}


@dataclass(frozen=True)
class LegacyInput:
    """What the first `inputs[]` entry of an AppRequest asks for."""

    kind: TurnKind
    intent: str
    text: str = ""
    final: bool = False
    # A follow-up system intent (MEDIA_STATUS, CONFIRMATION...): the bot gets it, not text.
    system: SystemIntent | None = None
    # More for the bot's metadata (the OPTION intent and its key).
    context: JSON = field(default_factory=dict)


def read_input(app_request: JSON, where: str) -> LegacyInput:
    """Decode `inputs[0]` of an AppRequest (also found inside Dialogflow's payload)."""
    inputs = fields.objects(app_request, "inputs", f"{where}inputs", required=True)
    first = inputs[0]
    at = f"{where}inputs[0]"
    intent = fields.string(first, "intent", f"{at}.intent", required=True)
    arguments = fields.objects(first, "arguments", f"{at}.arguments")
    # Google marks its health check with this argument, on MAIN or whichever launch intent it checks.
    if _flag(fields.argument(arguments, "is_health_check"), at):
        return LegacyInput(TurnKind.HEALTH_CHECK, intent)
    system = system_intents.v2_system_intent(intent, arguments, at)
    if system is not None:
        return LegacyInput(TurnKind.MESSAGE, intent, system=system)
    kind = _KINDS.get(intent)
    if kind is None:
        raise BadRequest(f"unsupported intent {intent[:128]!r}")
    raw_inputs = fields.objects(first, "rawInputs", f"{at}.rawInputs")
    queries = [fields.string(raw, "query", f"{at}.rawInputs[{i}].query") for i, raw in enumerate(raw_inputs)]
    if kind is TurnKind.NO_INPUT:
        return LegacyInput(kind, intent, final=_flag(fields.argument(arguments, "IS_FINAL_REPROMPT"), at))
    if intent == "actions.intent.OPTION":
        key = _text_value(fields.argument(arguments, "OPTION"), at)
        option = {"system_intent": intent, "arguments": {"option": key}}
        return LegacyInput(kind, intent, key, context=option)  # the key is the user's choice, said
    text = next((q for q in queries if q.strip()), "")
    if not text and kind is TurnKind.MESSAGE:
        text = _text_value(fields.argument(arguments, "text"), at)
    return LegacyInput(kind, intent, text)


def request_context(channel: str, locale: str, app_request: JSON, where: str) -> JSON:
    """The caller's context (gateway/channels/context.py) from an AppRequest's user, device and surface."""
    user, device, surface = (fields.obj(app_request, k, f"{where}{k}") for k in ("user", "device", "surface"))
    return {
        **google_context(channel, locale, user, device, surface, where),
        **params.legacy_user_params(user, where),
    }


def _flag(arg: JSON | None, at: str) -> bool:
    """A boolean argument (boolValue true, or textValue "1"/"true" as older requests carry it; Google's
    health-check sample spells it text_value)."""
    if arg is None:
        return False
    if fields.boolean(arg, "boolValue", f"{at}.arguments.boolValue"):
        return True
    text = fields.string(arg, "textValue", f"{at}.arguments.textValue")
    return (text or fields.string(arg, "text_value", f"{at}.arguments.text_value")).lower() in ("1", "true")


def _text_value(arg: JSON | None, at: str) -> str:
    if arg is None:
        return ""
    value = fields.string(arg, "textValue", f"{at}.arguments.textValue")
    return value or fields.string(arg, "rawText", f"{at}.arguments.rawText")


class ConversationV2Codec:
    """AppRequest (user, conversation, inputs[]) -> AppResponse (expectedInputs or finalResponse).

    The conversation id is the session; the conversation token comes back on every answer so whatever
    the action keeps in it survives (wrapped with the chip memory while chips are shown: wrap_token).
    A request without `user.locale` is refused with 400, except Google's health check, which is
    answered without routing anything.
    """

    channel = "conversation_v2"

    def matches(self, body: JSON) -> bool:
        """A v2 body has `inputs` or `conversation` at the top level."""
        return "inputs" in body or "conversation" in body

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        user = fields.obj(body, "user", "user")
        user_locale = fields.string(user, "locale", "user.locale")
        conversation = fields.obj(body, "conversation", "conversation", required=True)
        fields.string(conversation, "type", "conversation.type")
        token = conversation.get("conversationToken")
        if token is not None and not isinstance(token, str):
            raise BadRequest("field conversation.conversationToken must be a string")
        wanted = read_input(body, "")
        if wanted.kind is TurnKind.HEALTH_CHECK:
            return Turn(TurnKind.HEALTH_CHECK, "", user_locale or None, intent=wanted.intent)
        conversation_id = fields.string(conversation, "conversationId", "conversation.conversationId")
        locale = fields.locale((user_locale, "user.locale"))
        turn = Turn(
            kind=wanted.kind,
            session_id=fields.session_id(conversation_id, "conversation.conversationId"),
            locale=locale,
            text=wanted.text,
            intent=wanted.intent,
            final=wanted.final,
            echo=unwrap_token(token),
            context={**request_context(self.channel, locale, body, ""), **wanted.context},
        )
        return turn if wanted.system is None else system_intents.with_intent(turn, wanted.system)

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """expectedInputs with a rich initial prompt while the conversation goes on, else finalResponse."""
        layout, custom = passthrough.layout_reply(reply, turn.context)
        cancel = turn.kind is TurnKind.CANCEL
        max_chars = MAX_CANCEL_CHARS if cancel else rich.SIMPLE_MAX_CHARS
        if cancel:
            layout = rich.Rich(simples=layout.simples[:1], google=layout.google)
        prompt = rich.legacy_rich_response(layout, with_chips=not reply.end_conversation, max_chars=max_chars)
        dropped: list[str] = []
        prompt = passthrough_write.legacy_rich(prompt, custom, dropped, ending=reply.end_conversation)
        out: JSON
        if reply.end_conversation:
            out = {"expectUserResponse": False, "finalResponse": {"richResponse": prompt}}
        else:
            expected: JSON = {
                "inputPrompt": {"richInitialPrompt": prompt},
                "possibleIntents": [{"intent": TEXT_INTENT}],
            }
            out = {"expectUserResponse": True, "expectedInputs": [expected]}
        token = wrap_token(turn.echo.get("conversationToken"), reply.memory)
        if token is not None:
            out["conversationToken"] = token
        return passthrough_write.v2(out, custom, turn, dropped)


# The token is the action's own state: when the gateway has chips to remember it wraps that state as
# {"_gateway": memory, "token": <the token as it was>} and unwraps it on the way in, so a bot's custom
# token (custom.google.conversationToken) and anything else Google echoes survive unchanged.


def unwrap_token(token: str | None) -> JSON:
    """The echo of a request's token: the action's own token and, when wrapped, the chip memory."""
    if token is None or not token.startswith("{"):
        return {"conversationToken": token}
    try:
        wrapped = json.loads(token)
        # Python's parser lets "\ud800" escapes through as lone surrogates, which no answer can carry.
        json.dumps(wrapped, ensure_ascii=False).encode("utf-8")
    except ValueError:  # a foreign token that merely starts like JSON: kept as it is
        return {"conversationToken": token}
    if not isinstance(wrapped, dict) or chips.MEMORY_KEY not in wrapped:
        return {"conversationToken": token}
    inner = wrapped.get("token")
    own = inner if isinstance(inner, str) else None
    return {"conversationToken": own, "memory": wrapped[chips.MEMORY_KEY]}


def wrap_token(token: object, memory: JSON | None) -> str | None:
    """The token to answer with: the action's own one, wrapped with `memory` when there is some."""
    own = token if isinstance(token, str) else None
    if memory is None:
        return own
    wrapped: JSON = {chips.MEMORY_KEY: memory}
    if own is not None:
        wrapped["token"] = own
    return json.dumps(wrapped, ensure_ascii=False, separators=(",", ":"))
