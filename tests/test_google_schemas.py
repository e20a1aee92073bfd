"""The per-shape schemas (tests/schemas/) refuse what Google refuses: they are not vacuous."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.shapes import schema_errors

GOLDEN = Path(__file__).parent / "golden"
SIMPLE = {"simpleResponse": {"textToSpeech": "Hi"}}
CARD = {"basicCard": {"formattedText": "Card"}}
MEDIA = {"mediaResponse": {"mediaType": "AUDIO", "mediaObjects": [{"contentUrl": "https://x.org/a.mp3"}]}}


def golden(shape: str, case: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((GOLDEN / shape / f"{case}.response.json").read_text(encoding="utf-8"))
    return body


def v2_items(body: dict[str, Any]) -> dict[str, Any]:
    prompt: dict[str, Any] = body["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    return prompt


def set_items(items: list[Any]) -> Callable[[dict[str, Any]], None]:
    return lambda body: v2_items(body).update(items=items)


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("first item not a simple response", set_items([CARD, SIMPLE])),
        ("two rich items", set_items([SIMPLE, CARD, MEDIA])),
        ("three simple responses", set_items([SIMPLE, SIMPLE, SIMPLE])),
        (
            "media without chips while going on",
            lambda b: v2_items(b).update(items=[SIMPLE, MEDIA], suggestions=None),
        ),
        ("speechBiasingHints at the top level", lambda b: b.update(speechBiasingHints=["a"])),
        ("noInputPrompts at the top level", lambda b: b.update(noInputPrompts=[{"textToSpeech": "a"}])),
        ("an unknown AppResponse field", lambda b: b.update(richResponse={})),
        (
            "a bubble over 640 characters",
            set_items([{"simpleResponse": {"textToSpeech": "a", "displayText": "a" * 641}}]),
        ),
    ],
)
def test_the_app_response_schema_refuses(why: str, change: Callable[[dict[str, Any]], None]) -> None:
    body = golden("conversation_v2", "help_pl_chips")
    assert schema_errors("conversation_v2", body) == []
    broken = copy.deepcopy(body)
    change(broken)
    if v2_items(broken).get("suggestions") is None:
        v2_items(broken).pop("suggestions", None)
    assert schema_errors("conversation_v2", broken) != [], why


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("a richResponse at the top level", lambda b: b.update(richResponse={"items": [SIMPLE]})),
        ("scene.next without scene.name", lambda b: b.update(scene={"next": {"name": "Other"}})),
        (
            "two contents",
            lambda b: b["prompt"].update(content={"card": {"text": "a"}, "image": {"url": "https://x"}}),
        ),
        (
            "media from http",
            lambda b: b["prompt"].update(
                content={"media": {"mediaType": "AUDIO", "mediaObjects": [{"url": "http://x/a.mp3"}]}}
            ),
        ),
        ("an unknown prompt field", lambda b: b["prompt"].update(richResponse={})),
        ("nine chips", lambda b: b["prompt"].update(suggestions=[{"title": str(i)} for i in range(9)])),
    ],
)
def test_the_v3_schema_refuses(why: str, change: Callable[[dict[str, Any]], None]) -> None:
    body = golden("actions_builder", "help_en_chips_and_params")
    assert schema_errors("actions_builder", body) == []
    change(body)
    assert schema_errors("actions_builder", body) != [], why


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("prompt (v3) in payload.google", lambda g: g.update(prompt={})),
        ("resetUserStorage (not in payload.google)", lambda g: g.update(resetUserStorage=True)),
        ("userStorage over 10k", lambda g: g.update(userStorage="x" * 10_001)),
        ("first item not a simple response", lambda g: g["richResponse"].update(items=[CARD])),
    ],
)
def test_the_dialogflow_schema_refuses(why: str, change: Callable[[dict[str, Any]], None]) -> None:
    body = golden("dialogflow", "help_de_chips")
    assert schema_errors("dialogflow", body) == []
    change(body["payload"]["google"])
    assert schema_errors("dialogflow", body) != [], why
