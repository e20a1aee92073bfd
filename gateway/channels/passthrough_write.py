"""Writing what a bot's custom.google asks for (passthrough.Custom) into each Google response shape.

The rules are in gateway/channels/passthrough.py; each function here completes a response the codec
already built from the folded layout, and logs one warning naming what the shape could not carry.
"""

from __future__ import annotations

from gateway.channels import params
from gateway.channels.passthrough import START_SCENE, Custom, warn
from gateway.channels.protocol import JSON, Turn

OPTION_INTENT = "actions.intent.OPTION"


def v3(out: JSON, custom: Custom, turn: Turn, *, ending: bool) -> JSON:
    """An Actions Builder response completed with the bot's v3 fields."""
    dropped = list(custom.dropped_v3)
    prompt = out["prompt"]
    if custom.content is not None:
        prompt["content"] = custom.content
    if custom.link_v3 is not None and not ending:
        prompt["link"] = custom.link_v3
    prompt.update(custom.v3.get("prompt", {}))
    extra = custom.v3
    if "session_params" in extra:
        # Over what the codec echoes (the request's params with this turn's chip memory, chips.py).
        out["session"]["params"] = {**out["session"]["params"], **extra["session_params"]}
    user_params = dict(extra.get("user_params", {}))
    if extra.get("reset_user"):
        # v3 removes a user param set to null: reset = every param the request carried, not rewritten.
        for name in turn.context.get("user_params", {}):
            user_params.setdefault(name, None)
    if user_params or "user_params" in extra:
        out["user"] = {"params": user_params}
    if "home_params" in extra:
        out["home"] = {"params": extra["home_params"]}
    for key in ("expected", "device"):
        if key in extra:
            out[key] = extra[key]
    if not ending and ("scene_next" in extra or "scene_slots" in extra):
        scene: JSON = {"name": turn.echo.get("scene") or START_SCENE, "slots": extra.get("scene_slots", {})}
        if "scene_next" in extra:
            scene["next"] = {"name": extra["scene_next"]}
        out["scene"] = scene
    elif ending and "scene_next" in extra:
        dropped.append("scene.next (the conversation ends)")
    warn(turn, "actions_builder", dropped)
    return out


def legacy_rich(response: JSON, custom: Custom, dropped: list[str], *, ending: bool) -> JSON:
    """A legacy RichResponse completed with the bot's rich item and link-out chip."""
    item = custom.item
    if item is not None and "mediaResponse" in item and not ending and not response.get("suggestions"):
        # Google: a media response needs suggestion chips while the conversation goes on.
        dropped.append("mediaResponse (needs suggestion chips while the conversation goes on)")
        item = None
    if item is not None and custom.legacy.get("systemIntent", {}).get("intent") == OPTION_INTENT:
        # RichResponse: cards may not be used with actions.intent.OPTION (a list or carousel select).
        dropped.append(f"{next(iter(item))} (not allowed with {OPTION_INTENT})")
        item = None
    if item is not None and response["items"]:
        response["items"].append(item)
    elif item is not None:
        dropped.append(f"{next(iter(item))} (no simple response to show first)")
    if custom.link_v2 is not None and not ending:
        response["linkOutSuggestion"] = custom.link_v2
    return response


def _with_v2_fields(expected_input: JSON, legacy: JSON) -> None:
    if "speechBiasingHints" in legacy:
        expected_input["speechBiasingHints"] = legacy["speechBiasingHints"]
    if "noInputPrompts" in legacy:
        expected_input["inputPrompt"]["noInputPrompts"] = legacy["noInputPrompts"]
    intent = legacy.get("systemIntent")
    if intent is not None:
        wanted: JSON = {"intent": intent["intent"]}
        if "data" in intent:
            wanted["inputValueData"] = intent["data"]
        expected_input["possibleIntents"] = [wanted]


def v2(out: JSON, custom: Custom, turn: Turn, dropped: list[str]) -> JSON:
    """A conversation v2 AppResponse completed with the bot's legacy fields at their documented places."""
    dropped = [*custom.dropped_legacy, *dropped]
    legacy = custom.legacy
    if out.get("expectedInputs"):
        _with_v2_fields(out["expectedInputs"][0], legacy)
    else:
        dropped.extend(k for k in ("speechBiasingHints", "noInputPrompts", "systemIntent") if k in legacy)
    if "userStorage" in legacy:
        out["userStorage"] = legacy["userStorage"]
    if legacy.get("resetUserStorage"):
        out["resetUserStorage"] = True
    if "isSsml" in legacy:
        dropped.append("isSsml")
    warn(turn, "conversation_v2", dropped)
    return out


def dialogflow(google: JSON, custom: Custom, turn: Turn, dropped: list[str]) -> JSON:
    """Dialogflow's payload.google completed the way actions-on-google-nodejs serialises it."""
    dropped = [*custom.dropped_legacy, *dropped]
    legacy = custom.legacy
    for key in ("systemIntent", "noInputPrompts", "speechBiasingHints"):
        if key in legacy and google["expectUserResponse"]:
            google[key] = legacy[key]
        elif key in legacy:
            dropped.append(key)
    if "isSsml" in legacy:
        google["isSsml"] = legacy["isSsml"]
    if "userStorage" in legacy:
        google["userStorage"] = legacy["userStorage"]
    elif legacy.get("resetUserStorage"):
        # payload.google has no resetUserStorage: an empty storage written the nodejs way clears it.
        google["userStorage"] = params.encode_user_storage({})
    warn(turn, "dialogflow", dropped)
    return google
