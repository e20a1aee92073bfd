"""Actions Builder / Actions SDK conversation webhook (the current generation, API version 3)."""

from __future__ import annotations

import re

from gateway.channels import chips, fields, params, passthrough, passthrough_write, system_intents
from gateway.channels.context import google_context
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.errors import BadRequest

END_SCENE = "actions.scene.END_CONVERSATION"
START_SCENE = "actions.scene.START_CONVERSATION"
HEALTH_CHECK = "actions.handler.HEALTH_CHECK"
HEALTH_CHECK_INTENT = "actions.intent.HEALTH_CHECK"
# User-defined Builder intents: letters, digits, '_', '.', '-'.
_CUSTOM_INTENT_RE = re.compile(r"^[\w.-]{1,128}$")


class ActionsBuilderCodec:
    """handler/intent/scene/session/user request -> session/prompt/scene response.

    Routing prefers `session.languageCode` (set once the action asked for `expected.languageCode`)
    over `user.locale`; a request carrying neither is refused with 400. System intents are decoded by
    gateway/channels/system_intents.py; undocumented ones (`actions.intent.*`) are refused, custom Builder
    intents pass their query on.
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
        raw_intent = body.get("intent")
        # Google's documented health check names both; either one is enough, whatever else the body holds.
        health_check = handler == HEALTH_CHECK or (
            isinstance(raw_intent, dict) and raw_intent.get("name") == HEALTH_CHECK_INTENT
        )
        session = fields.obj(body, "session", "session", required=not health_check)
        user = fields.obj(body, "user", "user")
        language = fields.string(session, "languageCode", "session.languageCode")
        user_locale = fields.string(user, "locale", "user.locale")
        if health_check:
            # Google's health check: answered with {} and no other work, whatever else the body holds.
            return Turn(TurnKind.HEALTH_CHECK, "", language or user_locale or None, handler=handler)
        session_id = fields.session_id(fields.string(session, "id", "session.id"), "session.id")
        session_params = fields.obj(session, "params", "session.params")
        locale = fields.locale((language, "session.languageCode"), (user_locale, "user.locale"))
        intent = fields.obj(body, "intent", "intent")
        name = fields.string(intent, "name", "intent.name")
        query = fields.string(intent, "query", "intent.query")
        scene = fields.string(fields.obj(body, "scene", "scene"), "name", "scene.name")
        kind = _kind(name)
        turn = Turn(
            kind=kind,
            session_id=session_id,
            locale=locale,
            text=query,
            intent=name,
            handler=handler,
            session_params=session_params,
            final=name == "actions.intent.NO_INPUT_FINAL",
            echo={"scene": scene, **_memory(session_params)},
            context={
                **google_context(self.channel, locale, user, fields.obj(body, "device", "device"), {}),
                **params.v3_params(body, session, user),
            },
        )
        system = system_intents.v3_system_intent(name, body)
        return turn if system is None else system_intents.with_intent(turn, system)

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        """The response body for `reply`: prompt, session echo, and the end scene when it ends."""
        if turn.kind is TurnKind.HEALTH_CHECK:
            return {}
        layout, custom = passthrough.layout_reply(reply, turn.context)
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
        return passthrough_write.v3(out, custom, turn, ending=reply.end_conversation)


def _memory(params: JSON) -> JSON:
    """The chip memory kept in the session params, for chips.recall (which checks it)."""
    return {"memory": params[chips.MEMORY_KEY]} if chips.MEMORY_KEY in params else {}


def _params(turn: Turn, reply: Reply) -> JSON:
    """The session params echoed, with this turn's chip memory under the reserved key (chips.py)."""
    echoed = {k: v for k, v in turn.session_params.items() if k != chips.MEMORY_KEY}
    if reply.memory is not None:
        echoed[chips.MEMORY_KEY] = reply.memory
    elif chips.MEMORY_KEY in turn.session_params:
        echoed[chips.MEMORY_KEY] = None  # Google merges params: null is how one is deleted
    return echoed


def _kind(name: str) -> TurnKind:
    """What an intent name asks for; unknown system intents and malformed names are refused."""
    if not name or name in system_intents.V3:
        return system_intents.V3.get(name) or TurnKind.MESSAGE
    if name.startswith(system_intents.PREFIX):
        raise BadRequest(f"unsupported intent {name[:128]!r}")
    if not _CUSTOM_INTENT_RE.match(name):
        raise BadRequest("field intent.name is not a valid intent name")
    return TurnKind.MESSAGE
