"""A Google Assistant (Actions Builder, conversation webhook v3) input channel for `rasa run`.

Rasa 3.6 ships no Google channel, so the usual deployment's users write one like this and name it in the
credentials.yml given to `rasa run --credentials` (with this folder's parent on PYTHONPATH):

    bench.rasa_google_connector.GoogleConnector:
      welcome: /greet     # what actions.intent.MAIN sends to the bot (optional)

It answers POST /webhooks/google/webhook: `intent.query` of `session.id` goes to the bot, and what the bot
says comes back as `prompt.firstSimple` (the texts joined) with its buttons as `prompt.suggestions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

MAIN = "actions.intent.MAIN"
# Google's limits on suggestion chips: at most 8, titles of at most 25 characters.
MAX_SUGGESTIONS, MAX_TITLE = 8, 25


class BadWebhook(ValueError):
    """The request body is not an Actions Builder webhook; the message names the field."""


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadWebhook(f"field {where} must be an object")
    return value


def _str(parent: dict[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadWebhook(f"field {where} must be a string")
    return value


def decode(body: Any, welcome: str) -> tuple[str, str, str, dict[str, Any]]:
    """(text, sender id, locale, session params) of an Actions Builder request."""
    if not isinstance(body, dict):
        raise BadWebhook("body must be a JSON object")
    session, intent = _obj(body, "session", "session"), _obj(body, "intent", "intent")
    sender = _str(session, "id", "session.id")
    if not sender:
        raise BadWebhook("field session.id is required")
    name = _str(intent, "name", "intent.name")
    text = welcome if name == MAIN else _str(intent, "query", "intent.query")
    locale = _str(_obj(body, "user", "user"), "locale", "user.locale")
    return text, sender, locale, _obj(session, "params", "session.params")


def encode(sender: str, params: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The v3 response: the bot's texts as the first simple prompt, its buttons as suggestions."""
    speech = " ".join(m["text"] for m in messages if m.get("text"))
    prompt: dict[str, Any] = {"override": False, "firstSimple": {"speech": speech, "text": speech}}
    titles = [b["title"][:MAX_TITLE] for m in messages for b in m.get("buttons") or [] if b.get("title")]
    if titles:
        prompt["suggestions"] = [{"title": title} for title in titles[:MAX_SUGGESTIONS]]
    return {"session": {"id": sender, "params": params}, "prompt": prompt}


class GoogleConnector(InputChannel):
    """Actions Builder webhook in, one bot turn, Actions Builder response out."""

    def __init__(self, welcome: str = "/greet") -> None:
        self.welcome = welcome

    @classmethod
    def name(cls) -> str:
        return "google"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        return cls(str((credentials or {}).get("welcome") or "/greet"))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        module = inspect.getmodule(self)
        google = Blueprint("google_webhook", module.__name__ if module else None)

        @google.route("/", methods=["GET"])  # type: ignore[untyped-decorator]  # sanic
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @google.route("/webhook", methods=["POST"])  # type: ignore[untyped-decorator]  # sanic
        async def receive(request: Request) -> HTTPResponse:
            try:
                text, sender, locale, params = decode(request.json, self.welcome)
            except BadWebhook as exc:
                return response.json({"error": str(exc)}, status=400)
            collector = CollectingOutputChannel()
            message = UserMessage(
                text, collector, sender, input_channel=self.name(), metadata={"locale": locale}
            )
            await on_new_message(message)
            return response.json(encode(sender, params, collector.messages))

        return google
