"""Builders of the legacy webhook shapes (shaped like Google's documented samples) and their JSON schemas."""

from __future__ import annotations

import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, RefResolver

SCHEMAS = Path(__file__).parent / "schemas"


def v2_request(
    text: str = "",
    locale: str | None = "en-US",
    conversation_id: str | None = None,
    intent: str = "actions.intent.TEXT",
    token: str | None = None,
    arguments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A legacy conversation webhook AppRequest (Actions SDK v2)."""
    raw: dict[str, Any] = {"inputType": "KEYBOARD"}
    if text:
        raw["query"] = text
    first: dict[str, Any] = {"intent": intent, "rawInputs": [raw]}
    if arguments is not None:
        first["arguments"] = arguments
    elif intent == "actions.intent.TEXT":
        first["arguments"] = [{"name": "text", "rawText": text, "textValue": text}]
    conversation: dict[str, Any] = {
        "conversationId": conversation_id or f"conv-{uuid.uuid4().hex}",
        "type": "NEW" if intent == "actions.intent.MAIN" else "ACTIVE",
    }
    if token is not None:
        conversation["conversationToken"] = token
    user: dict[str, Any] = {"userId": "user-1", "lastSeen": "2018-05-06T02:23:10Z"}
    if locale is not None:
        user["locale"] = locale
    return {
        "user": user,
        "conversation": conversation,
        "inputs": [first],
        "surface": {  # a phone, as in Google's samples
            "capabilities": [
                {"name": "actions.capability.MEDIA_RESPONSE_AUDIO"},
                {"name": "actions.capability.WEB_BROWSER"},
                {"name": "actions.capability.AUDIO_OUTPUT"},
                {"name": "actions.capability.SCREEN_OUTPUT"},
            ]
        },
        "isInSandbox": True,
        "availableSurfaces": [{"capabilities": [{"name": "actions.capability.SCREEN_OUTPUT"}]}],
    }


def dialogflow_request(
    text: str = "",
    language: str | None = "en",
    session: str | None = None,
    payload: dict[str, Any] | None = None,
    display_name: str = "Default Fallback Intent",
) -> dict[str, Any]:
    """A Dialogflow ES WebhookRequest carrying Google's AppRequest in originalDetectIntentRequest.payload."""
    session = session or f"projects/p/agent/sessions/{uuid.uuid4().hex}"
    result: dict[str, Any] = {
        "queryText": text,
        "parameters": {},
        "allRequiredParamsPresent": True,
        "intent": {"name": "projects/p/agent/intents/1", "displayName": display_name},
        "intentDetectionConfidence": 1,
    }
    if language is not None:
        result["languageCode"] = language
    return {
        "responseId": str(uuid.uuid4()),
        "session": session,
        "queryResult": result,
        "originalDetectIntentRequest": {
            "source": "google",
            "version": "2",
            "payload": payload if payload is not None else v2_request(text, None),
        },
    }


# Google's response shapes: one schema file each, from the official types, sharing google_legacy.json.
GOOGLE_SCHEMAS = ("actions_builder", "conversation_v2", "dialogflow")


@cache
def validator(name: str) -> Draft7Validator:
    """A validator for `name`: a Google shape's own schema file, else that definition of responses.json.

    Every schema is checked itself, the shared legacy types too (they are reached by relative $ref).
    """
    if name in GOOGLE_SCHEMAS:
        path = SCHEMAS / f"{name}.json"
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft7Validator.check_schema(schema)
        Draft7Validator.check_schema(json.loads((SCHEMAS / "google_legacy.json").read_text(encoding="utf-8")))
        return Draft7Validator(schema, resolver=RefResolver(base_uri=path.as_uri(), referrer=schema))
    schema = json.loads((SCHEMAS / "responses.json").read_text(encoding="utf-8"))
    if name not in schema["definitions"]:
        raise KeyError(f"no schema definition {name!r}")
    Draft7Validator.check_schema(schema)
    return Draft7Validator({**schema, "$ref": f"#/definitions/{name}"})


def schema_errors(name: str, body: Any) -> list[str]:
    """Why `body` breaks schema `name` (empty when it is valid)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(body)]


def shape_of(body: Any) -> str:
    """Which webhook generation a request body is, by the documented top-level keys (else 'unknown')."""
    if not isinstance(body, dict):
        return "unknown"
    if "queryResult" in body or "originalDetectIntentRequest" in body:
        return "dialogflow"
    if "inputs" in body or "conversation" in body:
        return "conversation_v2"
    if any(k in body for k in ("handler", "intent", "scene")) or isinstance(body.get("session"), dict):
        return "actions_builder"
    return "unknown"
