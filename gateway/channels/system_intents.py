"""Google's system intents (`actions.intent.*`) of both webhook generations, decoded for a Rasa bot.

A follow-up system intent (media status, confirmation, permission, sign-in, ...) reaches the bot as a
message the gateway builds itself, Rasa's intent shortcut `/<intent>{"entity": value}` (Turn.payload),
and as metadata: `system_intent` (the name the Rasa intent is chosen by) and `arguments` (the entities).
The Rasa intent is the system intent's name after `actions.intent.`, lower case
(`actions.intent.MEDIA_STATUS_FINISHED` -> `media_status_finished`), unless
`channels.<google|dialogflow_es>.system_intents` maps it to another one.

The legacy MEDIA_STATUS intent is named after its status (MEDIA_STATUS_FINISHED, MEDIA_STATUS_FAILED),
so one bot intent serves both generations. Conversation starts, cancels, silences and what the user said
(MAIN, CANCEL, NO_INPUT*, NO_MATCH*, TEXT, OPTION) keep their own turn kinds; OPTION is the selected key,
said as the user's choice. Argument shapes follow Google's GoogleActionsV2Argument (actions-on-google-nodejs
src/service/actionssdk/api/v2.ts); a wrong type is a BadRequest naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.channels import fields
from gateway.channels.protocol import JSON, Turn, TurnKind
from gateway.errors import BadRequest

PREFIX = "actions.intent."
FALLBACK_INTENT = "nlu_fallback"  # Rasa's default intent: in every domain, answered by the fallback rules
# What Rasa accepts as an intent name in the shortcut (no '{', '@', whitespace).
RASA_INTENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_ENUM_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")

# Actions Builder (v3) system intents and the turn each one is; None: sent to the bot as an intent.
V3 = {
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
    "actions.intent.HEALTH_CHECK": TurnKind.HEALTH_CHECK,
    "actions.intent.MEDIA_STATUS_FINISHED": None,
    "actions.intent.MEDIA_STATUS_PAUSED": None,
    "actions.intent.MEDIA_STATUS_STOPPED": None,
    "actions.intent.MEDIA_STATUS_FAILED": None,
}

Reader = Callable[[JSON, str], Any]


def _bool(arg: JSON, at: str) -> bool:
    return fields.boolean(arg, "boolValue", f"{at}.boolValue")  # documented: absent means false


def _text(arg: JSON, at: str) -> str | None:
    return fields.string(arg, "textValue", f"{at}.textValue") or None


def _extension(key: str) -> Reader:
    """An enum field of the argument's `extension` object (SignInValue.status, MediaStatus.status...)."""

    def read(arg: JSON, at: str) -> str | None:
        where = f"{at}.extension.{key}"
        value = fields.string(fields.obj(arg, "extension", f"{at}.extension"), key, where)
        if value and not _ENUM_RE.match(value):
            raise BadRequest(f"field {where} must be an enum name (upper case), got {value[:64]!r}")
        return value or None

    return read


def _number(parent: JSON, key: str, where: str, lo: int, hi: int) -> int:
    value = parent.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"field {where}.{key} must be an integer from {lo} to {hi}")
    return value


def _datetime(arg: JSON, at: str) -> str | None:
    """GoogleActionsV2DateTime as ISO 8601: "2026-11-29", "2026-11-29T15:30:00", "T15:30:00", or "--11-29"
    for a date without a year (google.type.Date: 0 means unspecified)."""
    where = f"{at}.datetimeValue"
    value = fields.obj(arg, "datetimeValue", where)
    date, time = fields.obj(value, "date", f"{where}.date"), fields.obj(value, "time", f"{where}.time")
    out = ""
    if date:
        d = f"{where}.date"
        year = _number(date, "year", d, 0, 9999)
        out = f"{year:04d}-" if year else "--"
        out += f"{_number(date, 'month', d, 0, 12):02d}-{_number(date, 'day', d, 0, 31):02d}"
    if time:
        t = f"{where}.time"
        out += f"T{_number(time, 'hours', t, 0, 24):02d}:{_number(time, 'minutes', t, 0, 59):02d}:"
        out += f"{_number(time, 'seconds', t, 0, 60):02d}"
    return out or None


def _place(arg: JSON, at: str) -> str | None:
    """GoogleActionsV2Location: its formatted address, else its name."""
    where = f"{at}.placeValue"
    value = fields.obj(arg, "placeValue", where)
    fields.obj(value, "coordinates", f"{where}.coordinates")
    address = fields.string(value, "formattedAddress", f"{where}.formattedAddress")
    return address or fields.string(value, "name", f"{where}.name") or None


# Conversation webhook (v2, also inside Dialogflow's payload) follow-up intents: their arguments as
# (argument name, entity, reader). MAIN, TEXT, OPTION, CANCEL and NO_INPUT are read by conversation_v2.
V2_ARGUMENTS: Mapping[str, tuple[tuple[str, str, Reader], ...]] = {
    "actions.intent.PERMISSION": (("PERMISSION", "permission", _bool), ("UPDATES_USER_ID", "user_id", _text)),
    "actions.intent.CONFIRMATION": (("CONFIRMATION", "confirmation", _bool),),
    "actions.intent.DATETIME": (("DATETIME", "datetime", _datetime),),
    "actions.intent.PLACE": (("PLACE", "place", _place),),
    "actions.intent.SIGN_IN": (("SIGN_IN", "status", _extension("status")),),
    "actions.intent.NEW_SURFACE": (("NEW_SURFACE", "status", _extension("status")),),
    "actions.intent.REGISTER_UPDATE": (("REGISTER_UPDATE", "status", _extension("status")),),
    "actions.intent.CONFIGURE_UPDATES": (),
    "actions.intent.LINK": (),
    "actions.intent.MEDIA_STATUS": (("MEDIA_STATUS", "status", _extension("status")),),
    "actions.intent.TRANSACTION_REQUIREMENTS_CHECK": (
        ("TRANSACTION_REQUIREMENTS_CHECK_RESULT", "result_type", _extension("resultType")),
    ),
    "actions.intent.DELIVERY_ADDRESS": (
        ("DELIVERY_ADDRESS_VALUE", "user_decision", _extension("userDecision")),
    ),
    "actions.intent.TRANSACTION_DECISION": (
        ("TRANSACTION_DECISION_VALUE", "user_decision", _extension("userDecision")),
    ),
    "actions.intent.COMPLETE_PURCHASE": (
        ("COMPLETE_PURCHASE_VALUE", "purchase_status", _extension("purchaseStatus")),
    ),
    "actions.intent.DIGITAL_PURCHASE_CHECK": (
        ("DIGITAL_PURCHASE_CHECK_RESULT", "result_type", _extension("resultType")),
    ),
}
# Legacy MEDIA_STATUS statuses with their own name (GoogleActionsV2MediaStatusStatus).
_MEDIA_STATUSES = {"FINISHED", "FAILED"}
# Every name `system_intents` settings may map: what reaches a bot as an intent.
MAPPABLE = frozenset([name for name, kind in V3.items() if kind is None] + list(V2_ARGUMENTS))


@dataclass(frozen=True)
class SystemIntent:
    """A follow-up system intent: the name its Rasa intent is chosen by, and its arguments as entities."""

    name: str
    entities: JSON
    # More for the bot's metadata only (v3 `context.media`: where a paused or stopped stream stood).
    details: JSON = dataclasses.field(default_factory=dict)

    def context(self) -> JSON:
        """What the bot's metadata says about it."""
        return {"system_intent": self.name, "arguments": dict(self.entities), **self.details}


def rasa_intent(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The bot intent of system intent `name`: configured, else its name after the prefix, lower case."""
    if overrides and name in overrides:
        return overrides[name]
    return name.removeprefix(PREFIX).lower()


def payload(intent: str, entities: JSON) -> str:
    """Rasa's intent shortcut, built here (never from what a user typed)."""
    if not entities:
        return f"/{intent}"
    return f"/{intent}{json.dumps(entities, ensure_ascii=False, sort_keys=True)}"


def v2_system_intent(intent: str, arguments: list[JSON], at: str) -> SystemIntent | None:
    """A documented v2 follow-up intent with its arguments read, or None for any other intent."""
    specs = V2_ARGUMENTS.get(intent)
    if specs is None:
        return None
    entities: JSON = {}
    for index, arg in enumerate(arguments):
        name = arg.get("name")
        spec = next((s for s in specs if isinstance(name, str) and s[0] == name), None)
        if spec is not None:
            value = spec[2](arg, f"{at}.arguments[{index}]")
            if value is not None:
                entities[spec[1]] = value
    for arg_name, entity, reader in specs:
        if reader is _bool and entity not in entities and fields.argument(arguments, arg_name) is None:
            entities[entity] = False  # an absent boolean argument means false (v2.ts)
    name = intent
    if intent == "actions.intent.MEDIA_STATUS" and entities.get("status") in _MEDIA_STATUSES:
        name = f"{intent}_{entities['status']}"
    return SystemIntent(name, entities)


def v3_system_intent(name: str, body: JSON) -> SystemIntent | None:
    """A v3 system intent sent to the bot (media status), or None when `name` is no such intent."""
    if V3.get(name, TurnKind.MESSAGE) is not None:
        return None
    media = fields.obj(fields.obj(body, "context", "context"), "media", "context.media")
    details: JSON = {}
    progress = fields.string(media, "progress", "context.media.progress")
    if progress:
        details["progress"] = progress[:32]  # "12.5s": where a paused or stopped stream stood
    if "index" in media:
        details["index"] = _number(media, "index", "context.media", 0, 1000)
    status = name.removeprefix(f"{PREFIX}MEDIA_STATUS_")
    return SystemIntent(name, {"status": status}, {"media": details} if details else {})


def with_intent(turn: Turn, system: SystemIntent) -> Turn:
    """`turn` carrying `system` to the bot (its default intent; see `configured`) and its metadata."""
    return dataclasses.replace(
        turn,
        payload=payload(rasa_intent(system.name), system.entities),
        context={**turn.context, **system.context()},
    )


def configured(turn: Turn, overrides: Mapping[str, str]) -> Turn:
    """`turn` with its system intent mapped by the channel's settings (unchanged when it has none)."""
    name = turn.context.get("system_intent")
    if not overrides or not isinstance(name, str) or name not in overrides:
        return turn
    return dataclasses.replace(
        turn, payload=payload(rasa_intent(name, overrides), turn.context.get("arguments") or {})
    )


def for_domain(message: str, intents: Collection[str]) -> str:
    """A gateway-built `/intent{...}` message the bot's domain can take.

    Rasa treats a shortcut naming an intent its domain lacks as typed text and classifies it (any intent
    might win); a bot that does not handle a system intent gets Rasa's `nlu_fallback` instead, so its
    fallback rule answers.
    """
    match = re.match(r"^/([^{@\s]+)", message)
    if match is None or match.group(1) in intents:
        return message
    return f"/{FALLBACK_INTENT}"
