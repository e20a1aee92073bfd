"""A bot's `custom.google`, read as written for ONE Google shape and written to each shape field by field.

A bot writes either v3 keys (prompt, scene, session, user, home, expected, device) or the legacy
payload.google keys (richResponse, expectUserResponse, systemIntent, userStorage, resetUserStorage,
noInputPrompts, speechBiasingHints, isSsml); each key is read in the shape it belongs to, then:
- simple responses are appended after the gateway's (simple response first, at most two: extra ones
  are merged into the second); suggestion chips are appended (unique, at most 8);
- the bot's rich item (card, media, table, browse carousel...) replaces the gateway's image card: one
  rich item per response; translated with gateway/channels/google_content.py;
- v3 `scene.next` gets `scene.name` from the request's scene; `scene.next` END_CONVERSATION (or a
  legacy `expectUserResponse: false`) ends the conversation in every shape;
- `user.params` <-> `userStorage` (the actions-on-google-nodejs {data: ...} convention, params.py),
  `expected.speech` <-> `speechBiasingHints`, v3 `session.params` are merged over the request's;
- v2 AppResponse puts speechBiasingHints in expectedInputs[0] and noInputPrompts in its inputPrompt;
  Dialogflow keeps them at payload.google level (as actions-on-google-nodejs serialises them);
- a legacy media response needs suggestion chips while the conversation goes on: without chips it
  is dropped;
- whatever a shape cannot express is dropped, with ONE warning per response naming what was dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.channels import chips, params, rich
from gateway.channels import google_content as gc
from gateway.channels.protocol import JSON, Reply, Turn

logger = logging.getLogger(__name__)

END_SCENE = "actions.scene.END_CONVERSATION"
START_SCENE = "actions.scene.START_CONVERSATION"
V3_KEYS = ("prompt", "scene", "session", "user", "home", "expected", "device")
LEGACY_KEYS = (
    "expectUserResponse",
    "richResponse",
    "systemIntent",
    "userStorage",
    "resetUserStorage",
    "noInputPrompts",
    "speechBiasingHints",
    "isSsml",
)


@dataclass
class Custom:
    """What a bot's custom.google asks for, ready for either generation."""

    simples: list[rich.Simple] = field(default_factory=list)
    chips: list[str] = field(default_factory=list)
    content: JSON | None = None  # v3 prompt.content (one key)
    item: JSON | None = None  # the legacy rich item
    link_v3: JSON | None = None
    link_v2: JSON | None = None
    end: bool = False
    v3: JSON = field(default_factory=dict)  # prompt extras, scene, session/user/home params, expected, device
    legacy: JSON = field(default_factory=dict)  # payload.google-level fields besides richResponse
    dropped_v3: list[str] = field(default_factory=list)
    dropped_legacy: list[str] = field(default_factory=list)

    def drop(self, name: str) -> None:
        self.drop_each((name,))

    def drop_each(self, names: Iterable[str]) -> None:
        for name in names:
            self.dropped_v3.append(name)
            self.dropped_legacy.append(name)


def ends(google: Any) -> bool:
    """Whether a custom.google object ends the conversation (either generation's way)."""
    if not isinstance(google, dict):
        return False
    scene_next = gc.obj(gc.obj(google.get("scene")).get("next")).get("name")
    return google.get("expectUserResponse") is False or scene_next == END_SCENE


def speaks(messages: Iterable[JSON]) -> bool:
    """Whether a custom.google of `messages` has a simple response of its own (the bot said something)."""
    return bool(read(rich.google_payload(messages)).simples)


def read(google: JSON) -> Custom:
    """`google` (every custom.google of a reply, merged) read into one Custom."""
    custom = Custom()
    for key in google:
        if key not in V3_KEYS and key not in LEGACY_KEYS:
            custom.drop(key)
    if any(key in google for key in V3_KEYS):
        _read_v3(google, custom)
    if any(key in google for key in LEGACY_KEYS):
        _read_legacy(google, custom)
    return custom


def _simple(speech: Any, text: Any) -> rich.Simple | None:
    speech = speech if isinstance(speech, str) else ""
    text = text if isinstance(text, str) else ""
    if not (speech.strip() or text.strip()):
        return None
    return rich.Simple(
        speech=speech or text, text=rich.cut(text or rich.display(speech), rich.SIMPLE_MAX_CHARS)
    )


def _titles(suggestions: Any) -> list[str]:
    return [t for t in (rich.chip_title(s.get("title")) for s in gc.items(suggestions)) if t]


def _read_v3(google: JSON, custom: Custom) -> None:
    prompt = gc.obj(google.get("prompt"))
    for key, value in prompt.items():
        where = f"prompt.{key}"
        if key in ("firstSimple", "lastSimple"):
            bubble = _simple(gc.obj(value).get("speech"), gc.obj(value).get("text"))
            if bubble is not None:
                custom.simples.append(bubble)
        elif key == "content":
            dropped: list[str] = []  # what the content lost is lost in every shape
            content = gc.v3_content(value, where, dropped)
            custom.dropped_v3.extend(dropped)
            custom.dropped_legacy.extend(dropped)
            _set_content(custom, content, where)
        elif key == "suggestions":
            custom.chips.extend(_titles(value))
        elif key == "link":
            pair = gc.link_to_v2(value)
            if pair is None:
                custom.drop(where)
            else:
                custom.link_v3 = gc.link_to_v3(*pair)
                custom.link_v2 = {"destinationName": pair[0], "openUrlAction": pair[1]}
        elif (key in ("canvas", "orderUpdate") and isinstance(value, dict)) or (
            key == "override" and value is True
        ):
            if key == "canvas":
                canvas = gc.obj(value)
                custom.drop_each(f"{where}.{k}" for k in canvas if k not in _CANVAS_FIELDS)
                value = {k: v for k, v in canvas.items() if k in _CANVAS_FIELDS}
            custom.v3.setdefault("prompt", {})[key] = value
            custom.dropped_legacy.append(where)
        elif key != "override":
            custom.drop(where)
    _read_v3_state(google, custom)


# What a v3 response object may carry from a bot (scene.name always comes from the request).
_V3_FIELDS = {
    "scene": ("name", "slots", "next"),
    "session": ("params",),
    "user": ("params",),
    "home": ("params",),
    "expected": ("speech", "languageCode"),
    "device": ("capabilities", "currentLocation", "timeZone"),
}
_CANVAS_FIELDS = ("url", "data", "suppressMic", "enableFullScreen", "continueTtsDuringTouch")


def _read_v3_state(google: JSON, custom: Custom) -> None:
    for name, known in _V3_FIELDS.items():
        custom.drop_each(f"{name}.{key}" for key in gc.obj(google.get(name)) if key not in known)
    scene = gc.obj(google.get("scene"))
    next_name = gc.obj(scene.get("next")).get("name")
    if next_name == END_SCENE:
        custom.end = True
    elif isinstance(next_name, str) and next_name:
        custom.v3["scene_next"] = next_name
        custom.dropped_legacy.append("scene.next")
    if gc.obj(scene.get("slots")):
        custom.v3["scene_slots"] = scene["slots"]
        custom.dropped_legacy.append("scene.slots")
    session = gc.obj(google.get("session"))
    session_params = gc.obj(session.get("params"))
    if params.GATEWAY_KEY in session_params:
        custom.drop(f"session.params.{params.GATEWAY_KEY}")
    session_params = {k: v for k, v in session_params.items() if k != params.GATEWAY_KEY}
    if session_params:
        custom.v3["session_params"] = session_params
        custom.dropped_legacy.append("session.params")
    user_params = gc.obj(gc.obj(google.get("user")).get("params"))
    if user_params:
        custom.v3["user_params"] = user_params
        storage = params.encode_user_storage(user_params)
        if storage is None:
            custom.dropped_legacy.append("user.params (over 10k bytes)")
        else:
            custom.legacy["userStorage"] = storage
    home_params = gc.obj(gc.obj(google.get("home")).get("params"))
    if home_params:
        custom.v3["home_params"] = home_params
        custom.dropped_legacy.append("home.params")
    expected = gc.obj(google.get("expected"))
    speech = expected.get("speech")
    if isinstance(speech, list) and speech and all(isinstance(s, str) for s in speech):
        custom.v3.setdefault("expected", {})["speech"] = speech[:1000]
        custom.legacy["speechBiasingHints"] = speech[:1000]
    if isinstance(expected.get("languageCode"), str) and expected["languageCode"]:
        custom.v3.setdefault("expected", {})["languageCode"] = expected["languageCode"]
        custom.dropped_legacy.append("expected.languageCode")
    device = {k: v for k, v in gc.obj(google.get("device")).items() if k in _V3_FIELDS["device"]}
    if device:
        custom.v3["device"] = device
        custom.dropped_legacy.append("device")


def _set_content(custom: Custom, content: JSON | None, where: str) -> None:
    """Keep the first rich item only; record its legacy form (or that it has none)."""
    if content is None:
        return
    if custom.content is not None or custom.item is not None:
        custom.drop(where)
        return
    custom.content = content
    custom.item = gc.to_item(content, where, custom.dropped_legacy)


def _read_legacy(google: JSON, custom: Custom) -> None:
    if google.get("expectUserResponse") is False:
        custom.end = True
    response = gc.obj(google.get("richResponse"))
    known = ("items", "suggestions", "linkOutSuggestion")
    custom.drop_each(f"richResponse.{key}" for key in response if key not in known)
    for key, kind in (("userStorage", str), ("systemIntent", dict), ("noInputPrompts", list)):
        if key in google and not isinstance(google[key], kind):
            custom.drop(key)
    for index, item in enumerate(gc.items(response.get("items"))):
        where = f"richResponse.items[{index}]"
        if "simpleResponse" in item:
            said = gc.obj(item["simpleResponse"])
            bubble = _simple(said.get("ssml") or said.get("textToSpeech"), said.get("displayText"))
            if bubble is not None:
                custom.simples.append(bubble)
        elif custom.content is not None or custom.item is not None:
            custom.drop(where)
        elif any(key in item for key in ("htmlResponse", "structuredResponse")):
            custom.item = item  # legacy only
            custom.dropped_v3.append(where)
        else:
            # The legacy answer carries the item re-read through the v3 form, so both lose the same fields.
            dropped: list[str] = []
            custom.content = gc.to_content(item, where, dropped)
            custom.dropped_v3.extend(dropped)
            custom.dropped_legacy.extend(dropped)
            if custom.content is not None:
                custom.item = gc.to_item(custom.content, where, custom.dropped_legacy)
    custom.chips.extend(_titles(response.get("suggestions")))
    if "linkOutSuggestion" in response:
        out = gc.obj(response["linkOutSuggestion"])
        # `url` is the field's deprecated form of openUrlAction.url
        action = out.get("openUrlAction") or {"url": out.get("url")}
        link = gc.link_to_v3(out.get("destinationName"), action)
        if link is None:
            custom.drop("richResponse.linkOutSuggestion")
        else:
            custom.link_v3 = link
            custom.link_v2 = {"destinationName": link["name"], "openUrlAction": link["open"]}
    _read_legacy_state(google, custom)


def _read_legacy_state(google: JSON, custom: Custom) -> None:
    intent = gc.obj(google.get("systemIntent"))
    if isinstance(intent.get("intent"), str):
        custom.legacy["systemIntent"] = {k: intent[k] for k in ("intent", "data") if k in intent}
        custom.dropped_v3.append("systemIntent")
    storage = google.get("userStorage")
    if isinstance(storage, str):
        custom.legacy["userStorage"] = storage
        custom.v3["user_params"] = params.decode_user_storage(storage)
    if google.get("resetUserStorage") is True:
        custom.legacy["resetUserStorage"] = True
        custom.v3["reset_user"] = True
    prompts = [
        {
            k: v
            for k, v in gc.obj(p).items()
            if k in ("textToSpeech", "ssml", "displayText") and isinstance(v, str)
        }
        for p in gc.items(google.get("noInputPrompts"))
    ]
    if any(prompts):
        custom.legacy["noInputPrompts"] = [p for p in prompts if p][:3]
        custom.dropped_v3.append("noInputPrompts")
    hints = google.get("speechBiasingHints")
    if isinstance(hints, list) and hints and all(isinstance(h, str) for h in hints):
        custom.legacy["speechBiasingHints"] = hints[:1000]
        custom.v3.setdefault("expected", {})["speech"] = hints[:1000]
    if isinstance(google.get("isSsml"), bool):
        custom.legacy["isSsml"] = google["isSsml"]
        custom.dropped_v3.append("isSsml")


def layout(messages: list[JSON]) -> tuple[rich.Rich, Custom]:
    """The reply laid out by Google's rules with the bot's custom.google folded in, and what is left."""
    base = rich.render(messages)
    custom = read(base.google)
    return fold(base, custom), custom


def layout_reply(reply: Reply, context: JSON) -> tuple[rich.Rich, Custom]:
    """layout() for the caller `context` describes (gateway/channels/chips.py): without a screen no chips
    and no image, and speech with nothing to show displays the language's `silent_display`."""
    screen = chips.has_screen(context)
    base = rich.render(reply.messages, screen=screen, silent_display=reply.silent_display)
    custom = for_surface(read(base.google), screen, chips.plays_media(context))
    folded = fold(base, custom)
    return (folded if screen else replace(folded, chips=())), custom


def for_surface(custom: Custom, screen: bool, media: bool) -> Custom:
    """`custom` without what the caller's surface cannot show: no card, table, collection or link without
    a screen, no media response without long-form audio (Google's guidance for speakers is what is said,
    and the bubbles and spoken choices stay)."""
    is_media = (custom.content is not None and "media" in custom.content) or (
        custom.item is not None and "mediaResponse" in custom.item
    )
    keep = media if is_media else screen
    if not keep:
        custom.content = None
        custom.item = None
    if not screen:
        custom.link_v3 = custom.link_v2 = None
    return custom


def fold(base: rich.Rich, custom: Custom) -> rich.Rich:
    """`base` with the bot's bubbles and chips appended, and without the image if the bot has a rich item."""
    bubbles = list(base.simples) + custom.simples
    if len(bubbles) > 2:
        rest = bubbles[1:]
        merged = rich.simple([b.speech for b in rest])
        text = rich.cut(" ".join(b.text for b in rest if b.text), rich.SIMPLE_MAX_CHARS)
        bubbles = [bubbles[0], rich.Simple(speech=merged.speech, text=text)]
    chips: list[str] = []
    for title in (*base.chips, *custom.chips):
        if title.casefold() not in {c.casefold() for c in chips}:
            chips.append(title)
    has_item = custom.content is not None or custom.item is not None
    return replace(
        base,
        simples=tuple(bubbles),
        chips=tuple(chips[: rich.MAX_CHIPS]),
        image=None if has_item else base.image,
    )


def warn(turn: Turn, channel: str, dropped: Iterable[str]) -> None:
    """ONE warning per response naming what the bot wrote that `channel` cannot carry."""
    names = sorted(set(dropped))
    if names:
        logger.warning(
            "bot for %s: custom.google %s cannot be sent in %s responses; dropped",
            turn.locale or "?",
            ", ".join(names),
            channel,
        )
