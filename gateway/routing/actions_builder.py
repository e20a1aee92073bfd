"""Actions Builder / Actions SDK conversation webhook (the current generation, API version 3)."""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.routing.protocol import JSON, Reply, Turn, TurnKind

END_SCENE = "actions.scene.END_CONVERSATION"
HEALTH_CHECK = "actions.handler.HEALTH_CHECK"
_KIND_BY_INTENT = {
    "actions.intent.MAIN": TurnKind.WELCOME,
    "actions.intent.CANCEL": TurnKind.CANCEL,
    "actions.intent.NO_INPUT_1": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_2": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_FINAL": TurnKind.NO_INPUT,
}


def _obj(body: JSON, key: str, *, required: bool = False) -> JSON:
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"missing field {key!r}")
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"field {key!r} must be an object, got {type(value).__name__}")
    return value


def _str(obj: JSON, key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"field {where}.{key} must be a string, got {type(value).__name__}")
    return value


class ActionsBuilderCodec:
    """handler/intent/scene/session/user request -> session/prompt/scene response."""

    channel = "actions_builder"

    def matches(self, body: JSON) -> bool:
        return "handler" in body or ("session" in body and "user" in body and "inputs" not in body)

    def decode(self, body: JSON) -> Turn:
        handler = _str(_obj(body, "handler"), "name", "handler")
        session = _obj(body, "session", required=True)
        session_id = _str(session, "id", "session")
        if not session_id:
            raise BadRequest("missing field session.id")
        params = session.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("field session.params must be an object")
        user = _obj(body, "user")
        # After the action set expected.languageCode, the session's language wins over the device's.
        locale = _str(session, "languageCode", "session") or _str(user, "locale", "user") or None
        intent = _obj(body, "intent")
        intent_name = _str(intent, "name", "intent")
        query = _str(intent, "query", "intent")
        if handler == HEALTH_CHECK:
            kind = TurnKind.HEALTH_CHECK
        else:
            kind = _KIND_BY_INTENT.get(intent_name, TurnKind.MESSAGE)
        scene = _obj(body, "scene")
        return Turn(
            kind=kind,
            session_id=session_id,
            locale=locale,
            text=query,
            intent=intent_name,
            handler=handler,
            session_params=params,
            echo={"scene": _str(scene, "name", "scene")},
        )

    def encode(self, turn: Turn, reply: Reply) -> JSON:
        if turn.kind is TurnKind.HEALTH_CHECK:
            return {}
        texts = [m["text"] for m in reply.messages if isinstance(m.get("text"), str) and m["text"]]
        speech = " ".join(texts)
        prompt: dict[str, Any] = {"override": False, "firstSimple": {"speech": speech, "text": speech}}
        chips = _chips(reply.messages)
        if chips:
            prompt["suggestions"] = [{"title": title} for title in chips]
        out: JSON = {
            "session": {"id": turn.session_id, "params": turn.session_params},
            "prompt": prompt,
        }
        if reply.end_conversation:
            out["scene"] = {"name": turn.echo.get("scene") or "", "next": {"name": END_SCENE}}
        return out


def _chips(messages: list[JSON]) -> list[str]:
    titles: list[str] = []
    for message in messages:
        for button in message.get("buttons") or []:
            title = str(button.get("title", "")).strip()[:25]
            if title and title not in titles:
                titles.append(title)
    return titles[:8]
