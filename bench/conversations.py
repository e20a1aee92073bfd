"""The conversation mix every system gets: the same six turns per language, checked against the domain."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import yaml

from gateway.settings import ROOT

LANGS = ("en", "pl", "de")
LOCALES = {"en": "en-US", "pl": "pl-PL", "de": "de-DE"}
PEOPLE = "4"

# (user text, the response the bot must answer with): greet, help, book a table -> number, hours, goodbye.
SCRIPTS: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (
        ("hello", "utter_greet"),
        ("help", "utter_help"),
        ("I would like to book a table", "utter_ask_people"),
        (PEOPLE, "utter_booked"),
        ("what are your opening hours?", "utter_hours"),
        ("bye", "utter_goodbye"),
    ),
    "pl": (
        ("cześć", "utter_greet"),
        ("pomoc", "utter_help"),
        ("chciałbym zarezerwować stolik", "utter_ask_people"),
        (PEOPLE, "utter_booked"),
        ("jakie są godziny otwarcia?", "utter_hours"),
        ("pa", "utter_goodbye"),
    ),
    "de": (
        ("hallo", "utter_greet"),
        ("hilfe", "utter_help"),
        ("ich möchte einen Tisch reservieren", "utter_ask_people"),
        (PEOPLE, "utter_booked"),
        ("öffnungszeiten", "utter_hours"),
        ("tschüss", "utter_goodbye"),
    ),
}


@functools.cache
def expected(lang: str) -> tuple[frozenset[str], ...]:
    """Per turn of `lang`'s script, the texts a correct answer may be (from the bot's domain.yml)."""
    domain = yaml.safe_load((ROOT / "bots" / lang / "domain.yml").read_text(encoding="utf-8"))
    out = []
    for _, response in SCRIPTS[lang]:
        texts = [variant["text"].replace("{people}", PEOPLE) for variant in domain["responses"][response]]
        out.append(frozenset(texts))
    return tuple(out)


def session_id(worker: int, number: int) -> str:
    """A fresh conversation id: every conversation starts with an empty tracker."""
    return f"bench-{worker}-{number}-{uuid.uuid4().hex[:12]}"


def lang_for(worker: int, number: int, langs: tuple[str, ...]) -> str:
    """Rotate languages per conversation so every concurrency level sees the same mix."""
    return langs[(worker + number) % len(langs)]


def builder_request(lang: str, session: str, text: str) -> dict[str, Any]:
    """An Actions Builder webhook request carrying `text` in `lang`'s locale."""
    return {
        "handler": {"name": "main"},
        "intent": {"name": "actions.intent.TEXT", "params": {}, "query": text},
        "scene": {"name": "Conversation", "slotFillingStatus": "UNSPECIFIED", "slots": {}},
        "session": {"id": session, "params": {}, "typeOverrides": []},
        "user": {"locale": LOCALES[lang], "params": {}, "verificationStatus": "VERIFIED"},
        "home": {"params": {}},
        "device": {"capabilities": ["SPEECH", "RICH_RESPONSE", "LONG_FORM_AUDIO"]},
    }


def speech(answer: Any) -> str | None:
    """The spoken text of an Actions Builder response, or None when it has none."""
    try:
        return str(answer["prompt"]["firstSimple"]["speech"])
    except (KeyError, TypeError):
        return None


# Channels the load generator can speak to the gateway (`--channel`), with their webhook paths.
CHANNEL_PATHS = {
    "google": "/webhook/google",
    "rest": "/webhooks/rest/webhook",
    "dialogflow_cx": "/webhook/dialogflow-cx",
}


def request_for(channel: str, lang: str, session: str, text: str) -> dict[str, Any]:
    """One turn of `session` on `channel`, carrying `text` in `lang`'s locale."""
    if channel == "rest":
        return {"sender": session, "message": text, "metadata": {"locale": LOCALES[lang]}}
    if channel == "dialogflow_cx":
        return {
            "detectIntentResponseId": session,
            "sessionInfo": {"session": f"projects/bench/locations/global/agents/bench/sessions/{session}"},
            "fulfillmentInfo": {"tag": "rasa"},
            "languageCode": LOCALES[lang],
            "text": text,
        }
    return builder_request(lang, session, text)


def speech_for(channel: str, answer: Any) -> str | None:
    """The first thing the bot said in `channel`'s answer, or None when it said nothing."""
    try:
        if channel == "rest":
            return str(answer[0]["text"])
        if channel == "dialogflow_cx":
            return str(answer["fulfillmentResponse"]["messages"][0]["text"]["text"][0])
    except (KeyError, IndexError, TypeError):
        return None
    return speech(answer)
