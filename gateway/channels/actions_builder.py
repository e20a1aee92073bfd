"""Actions Builder / Actions SDK conversation webhook (the current generation, API version 3)."""

from __future__ import annotations

import re

from gateway.channels import chips, fields, rich
from gateway.channels.context import google_context
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.errors import BadRequest

END_SCENE = "actions.scene.END_CONVERSATION"
START_SCENE = "actions.scene.START_CONVERSATION"
HEALTH_CHECK = "actions.handler.HEALTH_CHECK"
SYSTEM_PREFIX = "actions.intent."
_SYSTEM_INTENTS = {
    "actions.intent.MAIN": TurnKind.WELCOME,
    "actions.intent.PLAY_GAME": TurnKind.WELCOME,
    "actions.intent.CANCEL": TurnKind.CANCEL,
    "actions.intent.NO_INPUT_1": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_2": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_FINAL": TurnKind.NO_INPUT,
    # What the user said matched no Builder intent: exactly what the Rasa bot is for.
    "actions.intent.NO_MATCH_1": TurnKind.MESSAGE,
    "actions.intent.NO_MATCH_2": TurnKind.MESSAGE,
    "actions.intent.NO_MATCH_FINAL": TurnKind.MESSAGE,
    "actions.intent.TEXT": TurnKind.MESSAGE,
}
# User-defined Builder intents: letters, digits, '_', '.', '-'.
_CUSTOM_INTENT_RE = re.compile(r"^[\w.-]{1,128}$")


class ActionsBuilderCodec:
    """handler/intent/scene/session/user request -> session/prompt/scene response.

    Routing prefers `session.languageCode` (set once the action asked for `expected.languageCode`)
    over `user.locale`; a request carrying neither is refused with 400. System intents the gateway
    does not know (`actions.intent.*`) are refused too; custom Builder intents pass their query on.
    """

    channel = "actions_builder"

    def matches(self, body: JSON) -> bool:
        """A v3 body has a handler, an intent or scene object, or a session object."""
        return any(key in body for key in ("handler", "intent", "scene")) or isinstance(
            body.get("session"), dict
        )

    def decode(self, body: JSON) -> Turn:
        """Turn or BadRequest naming the field at fault."""
        handler = fields.string(fields.obj(body, "handler", "handler"), "name", "handler.name")
        session = fields.obj(body, "session", "session", required=handler != HEALTH_CHECK)
        user = fields.obj(body, "user", "user")
        language = fields.string(session, "languageCode", "session.languageCode")
        user_locale = fields.string(user, "locale", "user.locale")
        if handler == HEALTH_CHECK:
            # Google's health check: answered with {} and no other work, whatever else the body holds.
            return Turn(TurnKind.HEALTH_CHECK, "", language or user_locale or None, handler=handler)
        session_id = fields.session_id(fields.string(session, "id", "session.id"), "session.id")
        params = fields.obj(session, "params", "session.params")
        locale = fields.locale((language, "session.languageCode"), (user_locale, "user.locale"))
        intent = fields.obj(body, "intent", "intent")
        name = fields.string(intent, "name", "intent.name")
        fields.obj(intent, "params", "intent.params")
        query = fields.string(intent, "query", "intent.query")
        scene = fields.string(fields.obj(body, "scene", "scene"), "name", "scene.name")
        kind = _kind(name)
        return Turn(
            kind=kind,
            session_id=session_id,
            locale=locale,
            text=query,
            intent=name,
            handler=handler,
            session_params=params,
            final=name == "actions.intent.NO_INPUT_FINAL",
            echo={"scene": scene, **_memory(params)},
            context=google_context(self.channel, locale, user, fields.obj(body, "device", "device"), {}),
        )

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """The response body for `reply`: prompt, session echo, and the end scene when it ends."""
        if turn.kind is TurnKind.HEALTH_CHECK:
            return {}
        layout = rich.render_reply(reply, turn.context)
        prompt: JSON = {"override": False}
        if layout.simples:
            first = layout.simples[0]
            prompt["firstSimple"] = {"speech": first.speech, "text": first.text}
        if len(layout.simples) > 1:
            last = layout.simples[1]
            prompt["lastSimple"] = {"speech": last.speech, "text": last.text}
        if layout.image is not None:
            prompt["content"] = {"image": {"url": layout.image.url, "alt": layout.image.alt}}
        if layout.chips and not reply.end_conversation:
            prompt["suggestions"] = [{"title": title} for title in layout.chips]
        out: JSON = {"session": {"id": turn.session_id, "params": _params(turn, reply)}, "prompt": prompt}
        if reply.end_conversation:
            scene = turn.echo.get("scene") or START_SCENE
            out["scene"] = {"name": scene, "slots": {}, "next": {"name": END_SCENE}}
        # expectUserResponse is the legacy way to end; here it was already turned into the end scene.
        passthrough = {k: v for k, v in layout.google.items() if k != "expectUserResponse"}
        return rich.merge(out, passthrough)


def _memory(params: JSON) -> JSON:
    """The chip memory kept in the session params, for chips.recall (which checks it)."""
    return {"memory": params[chips.MEMORY_KEY]} if chips.MEMORY_KEY in params else {}


def _params(turn: Turn, reply: Reply) -> JSON:
    """The session params echoed, with this turn's chip memory under the reserved key (chips.py)."""
    params = {k: v for k, v in turn.session_params.items() if k != chips.MEMORY_KEY}
    if reply.memory is not None:
        params[chips.MEMORY_KEY] = reply.memory
    elif chips.MEMORY_KEY in turn.session_params:
        params[chips.MEMORY_KEY] = None  # Google merges params: null is how one is deleted
    return params


def _kind(name: str) -> TurnKind:
    """What an intent name asks for; unknown system intents and malformed names are refused."""
    if not name:
        return TurnKind.MESSAGE
    kind = _SYSTEM_INTENTS.get(name)
    if kind is not None:
        return kind
    if name.startswith(SYSTEM_PREFIX):
        raise BadRequest(f"unsupported intent {name[:128]!r}")
    if not _CUSTOM_INTENT_RE.match(name):
        raise BadRequest("field intent.name is not a valid intent name")
    return TurnKind.MESSAGE
