"""Decoding each webhook shape: what a request asks for, and which requests are refused with a reason."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.channels.actions_builder import ActionsBuilderCodec
from gateway.channels.conversation_v2 import ConversationV2Codec
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.google import detect
from gateway.channels.protocol import TurnKind
from gateway.errors import BadRequest, ConfigError
from gateway.settings import load_settings
from tests.shapes import dialogflow_request, v2_request
from tests.support import builder_request

V3, V2, DF = ActionsBuilderCodec(), ConversationV2Codec(), DialogflowCodec()


def refused(codec: Any, body: dict[str, Any]) -> str:
    with pytest.raises(BadRequest) as info:
        codec.decode(body)
    assert 400 <= info.value.status < 500
    return info.value.reason


# --- detection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "channel"),
    [
        (builder_request("hi"), "actions_builder"),
        ({"handler": {"name": "actions.handler.HEALTH_CHECK"}}, "actions_builder"),
        (v2_request("hi"), "conversation_v2"),
        (dialogflow_request("hi"), "dialogflow"),
        ({"session": "projects/p/agent/sessions/1", "queryResult": {}}, "dialogflow"),
    ],
)
def test_detect_picks_the_shape(body: dict[str, Any], channel: str) -> None:
    assert detect(body).channel == channel


@pytest.mark.parametrize("body", [{}, {"hello": "world"}, {"session": "not-an-object"}])
def test_detect_refuses_unknown_shapes(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="unrecognised webhook body"):
        detect(body)


# --- Actions Builder ---------------------------------------------------------------------------------------


def test_v3_session_language_code_wins_over_user_locale() -> None:
    body = builder_request("hallo", "en-US", "s-1")
    body["session"]["languageCode"] = "de-DE"
    turn = V3.decode(body)
    assert (turn.locale, turn.session_id, turn.text, turn.kind) == ("de-DE", "s-1", "hallo", TurnKind.MESSAGE)
    body["session"]["languageCode"] = ""
    assert V3.decode(body).locale == "en-US"


@pytest.mark.parametrize(
    ("intent", "kind", "final"),
    [
        ("actions.intent.MAIN", TurnKind.WELCOME, False),
        ("actions.intent.PLAY_GAME", TurnKind.WELCOME, False),
        ("actions.intent.CANCEL", TurnKind.CANCEL, False),
        ("actions.intent.NO_INPUT_1", TurnKind.NO_INPUT, False),
        ("actions.intent.NO_INPUT_FINAL", TurnKind.NO_INPUT, True),
        ("actions.intent.NO_MATCH_1", TurnKind.MESSAGE, False),
        ("book_table", TurnKind.MESSAGE, False),  # a custom Builder intent passes its query on
        ("", TurnKind.MESSAGE, False),
    ],
)
def test_v3_intents(intent: str, kind: TurnKind, final: bool) -> None:
    turn = V3.decode(builder_request("x", intent=intent))
    assert (turn.kind, turn.final, turn.intent) == (kind, final, intent)


def test_v3_health_check_needs_nothing_else() -> None:
    turn = V3.decode({"handler": {"name": "actions.handler.HEALTH_CHECK"}})
    assert turn.kind is TurnKind.HEALTH_CHECK


def test_v3_scene_and_params_are_kept_for_the_answer() -> None:
    body = builder_request("x", params={"a": {"b": 1}})
    body["scene"]["name"] = "Booking"
    turn = V3.decode(body)
    assert turn.session_params == {"a": {"b": 1}}
    assert turn.echo == {"scene": "Booking"}


def _v3(**changes: Any) -> dict[str, Any]:
    body = builder_request("hi", "en-US", "s-1")
    for path, value in changes.items():
        node = body
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"session": _DELETE}, "missing field session"),
        ({"session__id": _DELETE}, "missing field session.id"),
        ({"session__id": ""}, "missing field session.id"),
        ({"session__id": 12}, "session.id must be a string, got int"),
        ({"session__id": "x" * 513}, "session.id is longer than 512"),
        ({"session__id": "a\nb"}, "session.id contains control characters"),
        ({"session__params": []}, "session.params must be an object"),
        ({"user__locale": _DELETE}, "missing locale"),
        ({"user__locale": "  "}, "missing locale"),
        ({"user__locale": ["en"]}, "user.locale must be a string, got list"),
        ({"user": "en-US"}, "user must be an object, got str"),
        ({"intent__query": 5}, "intent.query must be a string"),
        ({"intent__name": "actions.intent.MADE_UP"}, "unsupported intent 'actions.intent.MADE_UP'"),
        ({"intent__name": "two words"}, "not a valid intent name"),
        ({"intent__params": "x"}, "intent.params must be an object"),
        ({"intent": []}, "intent must be an object, got list"),
        ({"scene__name": {}}, "scene.name must be a string, got dict"),
    ],
)
def test_v3_bad_requests_name_the_field(changes: dict[str, Any], reason: str) -> None:
    assert reason in refused(V3, _v3(**changes))


# --- conversation v2 ---------------------------------------------------------------------------------------


def test_v2_text_turn() -> None:
    turn = V2.decode(v2_request("book a table", "pl-PL", "c-1", token="tok"))
    assert (turn.kind, turn.text, turn.locale, turn.session_id) == (
        TurnKind.MESSAGE,
        "book a table",
        "pl-PL",
        "c-1",
    )
    assert turn.echo == {"conversationToken": "tok"}


def test_v2_text_falls_back_to_the_text_argument() -> None:
    body = v2_request("", arguments=[{"name": "text", "rawText": "hours", "textValue": "hours"}])
    assert V2.decode(body).text == "hours"


@pytest.mark.parametrize(
    ("intent", "arguments", "kind", "final"),
    [
        ("actions.intent.MAIN", None, TurnKind.WELCOME, False),
        ("actions.intent.CANCEL", None, TurnKind.CANCEL, False),
        ("actions.intent.NO_INPUT", [{"name": "REPROMPT_COUNT", "intValue": "1"}], TurnKind.NO_INPUT, False),
        (
            "actions.intent.NO_INPUT",
            [{"name": "IS_FINAL_REPROMPT", "boolValue": True}],
            TurnKind.NO_INPUT,
            True,
        ),
        (
            "actions.intent.MAIN",
            [{"name": "is_health_check", "boolValue": True}],
            TurnKind.HEALTH_CHECK,
            False,
        ),
        (
            "actions.intent.MAIN",
            [{"name": "is_health_check", "textValue": "1"}],
            TurnKind.HEALTH_CHECK,
            False,
        ),
    ],
)
def test_v2_intents(intent: str, arguments: Any, kind: TurnKind, final: bool) -> None:
    turn = V2.decode(v2_request("", intent=intent, arguments=arguments))
    assert (turn.kind, turn.final) == (kind, final)


def test_v2_option_carries_the_chosen_key() -> None:
    body = v2_request(
        "", intent="actions.intent.OPTION", arguments=[{"name": "OPTION", "textValue": "hours"}]
    )
    turn = V2.decode(body)
    assert (turn.kind, turn.text) == (TurnKind.MESSAGE, "hours")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.pop("conversation"), "missing field conversation"),
        (lambda b: b["conversation"].pop("conversationId"), "missing field conversation.conversationId"),
        (lambda b: b["conversation"].update(conversationToken=["x"]), "conversationToken must be a string"),
        (lambda b: b["user"].pop("locale"), "missing locale: expected user.locale"),
        (lambda b: b.update(inputs=[]), "missing field inputs"),
        (lambda b: b.update(inputs={"intent": "x"}), "field inputs must be a list, got dict"),
        (lambda b: b.update(inputs=["x"]), "inputs[0] must be an object, got str"),
        (lambda b: b["inputs"][0].pop("intent"), "missing field inputs[0].intent"),
        (lambda b: b["inputs"][0].update(intent="actions.intent.MADE_UP"), "unsupported intent"),
        (
            lambda b: b["inputs"][0].update(rawInputs=[{"query": 1}]),
            "inputs[0].rawInputs[0].query must be a string",
        ),
        (
            lambda b: b["inputs"][0].update(
                intent="actions.intent.MAIN", arguments=[{"name": "is_health_check", "boolValue": "yes"}]
            ),
            "boolValue must be a boolean, got str",
        ),
    ],
)
def test_v2_bad_requests_name_the_field(mutate: Any, reason: str) -> None:
    body = v2_request("hi", "en-US", "c-1")
    mutate(body)
    assert reason in refused(V2, body)


# --- Dialogflow --------------------------------------------------------------------------------------------


def test_dialogflow_turn_prefers_its_language_code_and_uses_the_session() -> None:
    body = dialogflow_request(
        "hallo", "de", "projects/p/agent/sessions/abc", payload=v2_request("hallo", "en-US")
    )
    turn = DF.decode(body)
    assert (turn.locale, turn.session_id, turn.text) == ("de", "projects/p/agent/sessions/abc", "hallo")
    del body["queryResult"]["languageCode"]
    assert DF.decode(body).locale == "en-US"


def test_dialogflow_welcome_cancel_and_health_check_follow_the_payload() -> None:
    welcome = dialogflow_request("GOOGLE_ASSISTANT_WELCOME", payload={})
    assert DF.decode(welcome).kind is TurnKind.WELCOME
    cancel = dialogflow_request("cancel", payload=v2_request("cancel", intent="actions.intent.CANCEL"))
    assert DF.decode(cancel).kind is TurnKind.CANCEL
    health = v2_request(
        "", intent="actions.intent.MAIN", arguments=[{"name": "is_health_check", "boolValue": True}]
    )
    assert (
        DF.decode(dialogflow_request("GOOGLE_ASSISTANT_WELCOME", payload=health)).kind
        is TurnKind.HEALTH_CHECK
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.pop("queryResult"), "missing field queryResult"),
        (lambda b: b.pop("session"), "missing field session"),
        (lambda b: b.update(session=["s"]), "session must be a string"),
        (lambda b: b["queryResult"].update(queryText=3.5), "queryResult.queryText must be a string"),
        (lambda b: b["queryResult"].pop("languageCode"), "missing locale"),
        (lambda b: b["originalDetectIntentRequest"].update(payload="x"), "payload must be an object"),
        (
            lambda b: b["originalDetectIntentRequest"]["payload"]["inputs"][0].update(intent="nope"),
            "unsupported intent 'nope'",
        ),
    ],
)
def test_dialogflow_bad_requests_name_the_field(mutate: Any, reason: str) -> None:
    body = dialogflow_request("hi", "en")
    mutate(body)
    assert reason in refused(DF, body)


def test_decoding_never_changes_the_request() -> None:
    for codec, body in ((V3, builder_request("hi")), (V2, v2_request("hi")), (DF, dialogflow_request("hi"))):
        before = copy.deepcopy(body)
        codec.decode(body)
        assert body == before


# --- prompts configuration ---------------------------------------------------------------------------------


def test_every_bot_has_a_no_input_prompt_and_a_short_cancel_prompt() -> None:
    settings = load_settings(env={})
    for bot in settings.bots.values():
        assert bot.prompts.no_input
        assert 0 < len(bot.prompts.cancel) <= 60


def test_a_cancel_prompt_over_60_characters_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"bots\.languages\.en\.prompts\.cancel=.*at most 60 characters"):
        load_settings(overrides={"bots.languages.en.prompts.cancel": "x" * 61}, env={})
