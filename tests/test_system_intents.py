"""Google's system intents of every webhook generation, decoded into the Turn a Rasa bot handles.

Argument shapes are GoogleActionsV2Argument's (actions-on-google-nodejs src/service/actionssdk/api/v2.ts);
the v3 ones are Actions Builder's system intents (media status, health check).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.channels import system_intents
from gateway.channels.actions_builder import ActionsBuilderCodec
from gateway.channels.conversation_v2 import ConversationV2Codec
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.dialogflow_es_channel import DialogflowEsChannel
from gateway.channels.google import GoogleChannel
from gateway.channels.protocol import Turn, TurnKind
from gateway.errors import BadRequest, ConfigError
from gateway.settings import load_settings
from tests.shapes import dialogflow_request, v2_request
from tests.support import builder_request

V3, V2, DF = ActionsBuilderCodec(), ConversationV2Codec(), DialogflowCodec()


def ext(type_name: str, **values: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/google.actions.v2.{type_name}", **values}


# Each documented v2 follow-up intent: a sample of its arguments, the bot message and the entities.
V2_CASES: dict[str, tuple[list[dict[str, Any]], str, dict[str, Any]]] = {
    "actions.intent.PERMISSION": (
        [{"name": "PERMISSION", "boolValue": True, "textValue": "true"}],
        "permission",
        {"permission": True},
    ),
    "actions.intent.CONFIRMATION": (
        [{"name": "CONFIRMATION", "boolValue": False}],
        "confirmation",
        {"confirmation": False},
    ),
    "actions.intent.DATETIME": (
        [
            {
                "name": "DATETIME",
                "datetimeValue": {
                    "date": {"year": 2026, "month": 12, "day": 24},
                    "time": {"hours": 19, "minutes": 30},
                },
            }
        ],
        "datetime",
        {"datetime": "2026-12-24T19:30:00"},
    ),
    "actions.intent.PLACE": (
        [
            {
                "name": "PLACE",
                "placeValue": {
                    "coordinates": {"latitude": 37.42, "longitude": -122.08},
                    "formattedAddress": "1600 Amphitheatre Pkwy, Mountain View, CA 94043",
                    "name": "Googleplex",
                },
            }
        ],
        "place",
        {"place": "1600 Amphitheatre Pkwy, Mountain View, CA 94043"},
    ),
    "actions.intent.SIGN_IN": (
        [{"name": "SIGN_IN", "extension": ext("SignInValue", status="OK")}],
        "sign_in",
        {"status": "OK"},
    ),
    "actions.intent.NEW_SURFACE": (
        [{"name": "NEW_SURFACE", "extension": ext("NewSurfaceValue", status="CANCELLED")}],
        "new_surface",
        {"status": "CANCELLED"},
    ),
    "actions.intent.REGISTER_UPDATE": (
        [{"name": "REGISTER_UPDATE", "extension": ext("RegisterUpdateValue", status="OK")}],
        "register_update",
        {"status": "OK"},
    ),
    "actions.intent.CONFIGURE_UPDATES": ([], "configure_updates", {}),
    "actions.intent.LINK": ([], "link", {}),
    "actions.intent.MEDIA_STATUS": (
        [{"name": "MEDIA_STATUS", "extension": ext("MediaStatus", status="FINISHED")}],
        "media_status_finished",
        {"status": "FINISHED"},
    ),
    "actions.intent.TRANSACTION_REQUIREMENTS_CHECK": (
        [
            {
                "name": "TRANSACTION_REQUIREMENTS_CHECK_RESULT",
                "extension": ext("TransactionRequirementsCheckResult", resultType="CAN_TRANSACT"),
            }
        ],
        "transaction_requirements_check",
        {"result_type": "CAN_TRANSACT"},
    ),
    "actions.intent.DELIVERY_ADDRESS": (
        [
            {
                "name": "DELIVERY_ADDRESS_VALUE",
                "extension": ext("DeliveryAddressValue", userDecision="ACCEPTED", location={}),
            }
        ],
        "delivery_address",
        {"user_decision": "ACCEPTED"},
    ),
    "actions.intent.TRANSACTION_DECISION": (
        [
            {
                "name": "TRANSACTION_DECISION_VALUE",
                "extension": ext("TransactionDecisionValue", userDecision="ORDER_ACCEPTED"),
            }
        ],
        "transaction_decision",
        {"user_decision": "ORDER_ACCEPTED"},
    ),
    "actions.intent.COMPLETE_PURCHASE": (
        [
            {
                "name": "COMPLETE_PURCHASE_VALUE",
                "extension": ext("CompletePurchaseValue", purchaseStatus="PURCHASE_STATUS_OK"),
            }
        ],
        "complete_purchase",
        {"purchase_status": "PURCHASE_STATUS_OK"},
    ),
    "actions.intent.DIGITAL_PURCHASE_CHECK": (
        [
            {
                "name": "DIGITAL_PURCHASE_CHECK_RESULT",
                "extension": ext("DigitalPurchaseCheckResult", resultType="CAN_PURCHASE"),
            }
        ],
        "digital_purchase_check",
        {"result_type": "CAN_PURCHASE"},
    ),
}


def message(intent: str, entities: dict[str, Any]) -> str:
    return f"/{intent}{json.dumps(entities, sort_keys=True)}" if entities else f"/{intent}"


def test_every_documented_v2_follow_up_intent_has_a_case() -> None:
    assert set(V2_CASES) == set(system_intents.V2_ARGUMENTS)


@pytest.mark.parametrize("intent", sorted(V2_CASES))
def test_v2_follow_up_intent_reaches_the_bot_as_its_intent(intent: str) -> None:
    arguments, rasa_intent, entities = V2_CASES[intent]
    turn = V2.decode(v2_request("", "en-US", "c-1", intent=intent, arguments=arguments))
    assert (turn.kind, turn.intent, turn.text) == (TurnKind.MESSAGE, intent, "")
    assert turn.payload == message(rasa_intent, entities)
    assert turn.context["arguments"] == entities
    assert turn.context["system_intent"].startswith(intent)


@pytest.mark.parametrize("intent", sorted(V2_CASES))
def test_dialogflow_follow_up_intent_is_decided_by_the_payload_not_the_event_name(intent: str) -> None:
    arguments, rasa_intent, entities = V2_CASES[intent]
    event = intent.replace(".", "_")  # Dialogflow's queryText for an event-triggered request
    payload = v2_request("", None, "c-1", intent=intent, arguments=arguments)
    turn = DF.decode(dialogflow_request(event, "en", payload=payload, display_name="media"))
    assert (turn.kind, turn.text, turn.payload) == (TurnKind.MESSAGE, "", message(rasa_intent, entities))
    assert turn.context["arguments"] == entities


def test_dialogflow_option_sends_the_selected_key_not_the_event_name() -> None:
    payload = v2_request(
        "",
        None,
        intent="actions.intent.OPTION",
        arguments=[{"name": "OPTION", "textValue": "SELECTION_KEY_TWO"}],
    )
    turn = DF.decode(dialogflow_request("actions_intent_OPTION", "en", payload=payload))
    assert (turn.kind, turn.text, turn.payload) == (TurnKind.MESSAGE, "SELECTION_KEY_TWO", "")
    assert turn.context["system_intent"] == "actions.intent.OPTION"
    assert turn.context["arguments"] == {"option": "SELECTION_KEY_TWO"}


def test_dialogflow_typed_text_still_comes_from_query_text() -> None:
    turn = DF.decode(dialogflow_request("what are your hours", "en"))
    assert (turn.text, turn.payload) == ("what are your hours", "")


def test_v2_media_status_without_a_named_status_is_the_generic_intent() -> None:
    body = v2_request(
        "",
        intent="actions.intent.MEDIA_STATUS",
        arguments=[{"name": "MEDIA_STATUS", "extension": ext("MediaStatus", status="STATUS_UNSPECIFIED")}],
    )
    assert V2.decode(body).payload == '/media_status{"status": "STATUS_UNSPECIFIED"}'


def test_v2_date_without_a_year() -> None:
    date = {"name": "DATETIME", "datetimeValue": {"date": {"month": 12, "day": 24}}}
    turn = V2.decode(v2_request("", intent="actions.intent.DATETIME", arguments=[date]))
    assert turn.payload == '/datetime{"datetime": "--12-24"}'


def test_v2_absent_boolean_argument_means_false() -> None:
    turn = V2.decode(v2_request("", intent="actions.intent.PERMISSION", arguments=[]))
    assert turn.payload == '/permission{"permission": false}'


@pytest.mark.parametrize(
    ("intent", "arguments", "reason"),
    [
        (
            "actions.intent.CONFIRMATION",
            [{"name": "CONFIRMATION", "boolValue": "yes"}],
            "inputs[0].arguments[0].boolValue must be a boolean, got str",
        ),
        (
            "actions.intent.MEDIA_STATUS",
            [{"name": "MEDIA_STATUS", "extension": {"status": 3}}],
            "inputs[0].arguments[0].extension.status must be a string, got int",
        ),
        (
            "actions.intent.MEDIA_STATUS",
            [{"name": "MEDIA_STATUS", "extension": "FINISHED"}],
            "inputs[0].arguments[0].extension must be an object, got str",
        ),
        (
            "actions.intent.SIGN_IN",
            [{"name": "SIGN_IN", "extension": {"status": "/greet{"}}],
            "inputs[0].arguments[0].extension.status must be an enum name",
        ),
        (
            "actions.intent.DATETIME",
            [{"name": "DATETIME", "datetimeValue": {"date": {"year": 2026, "month": 13, "day": 1}}}],
            "inputs[0].arguments[0].datetimeValue.date.month must be an integer from 0 to 12",
        ),
        (
            "actions.intent.PLACE",
            [{"name": "PLACE", "placeValue": {"formattedAddress": ["x"]}}],
            "inputs[0].arguments[0].placeValue.formattedAddress must be a string, got list",
        ),
        ("actions.intent.MADE_UP", [], "unsupported intent 'actions.intent.MADE_UP'"),
    ],
)
def test_v2_bad_arguments_are_refused_naming_the_field(
    intent: str, arguments: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(BadRequest) as info:
        V2.decode(v2_request("", intent=intent, arguments=arguments))
    assert info.value.status == 400
    assert reason in info.value.reason


# --- Actions Builder (v3) ---------------------------------------------------------------------------------

V3_KINDS = {
    "actions.intent.MAIN": TurnKind.WELCOME,
    "actions.intent.PLAY_GAME": TurnKind.WELCOME,
    "actions.intent.CANCEL": TurnKind.CANCEL,
    "actions.intent.NO_INPUT_1": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_2": TurnKind.NO_INPUT,
    "actions.intent.NO_INPUT_FINAL": TurnKind.NO_INPUT,
    "actions.intent.NO_MATCH_1": TurnKind.MESSAGE,
    "actions.intent.NO_MATCH_2": TurnKind.MESSAGE,
    "actions.intent.NO_MATCH_FINAL": TurnKind.MESSAGE,
    "actions.intent.TEXT": TurnKind.MESSAGE,
    "actions.intent.HEALTH_CHECK": TurnKind.HEALTH_CHECK,
    "actions.intent.MEDIA_STATUS_FINISHED": TurnKind.MESSAGE,
    "actions.intent.MEDIA_STATUS_PAUSED": TurnKind.MESSAGE,
    "actions.intent.MEDIA_STATUS_STOPPED": TurnKind.MESSAGE,
    "actions.intent.MEDIA_STATUS_FAILED": TurnKind.MESSAGE,
}


def test_every_v3_system_intent_has_a_case() -> None:
    assert set(V3_KINDS) == set(system_intents.V3)


@pytest.mark.parametrize("intent", sorted(V3_KINDS))
def test_v3_system_intent_decodes_to_its_turn(intent: str) -> None:
    turn = V3.decode(builder_request("", "en-US", "s-1", intent=intent, handler="media_status"))
    assert turn.kind is V3_KINDS[intent]
    if intent.startswith("actions.intent.MEDIA_STATUS_"):
        status = intent.rsplit("_", 1)[1]
        assert turn.payload == f'/media_status_{status.lower()}{{"status": "{status}"}}'
        assert turn.context["system_intent"] == intent
    else:
        assert turn.payload == ""


def test_v3_media_progress_is_metadata_only() -> None:
    body = builder_request("", intent="actions.intent.MEDIA_STATUS_PAUSED")
    body["context"] = {"media": {"progress": "12.500s", "index": 0}}
    turn = V3.decode(body)
    assert turn.payload == '/media_status_paused{"status": "PAUSED"}'
    assert turn.context["media"] == {"progress": "12.500s", "index": 0}


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ({"media": {"progress": 12}}, "context.media.progress must be a string, got int"),
        ({"media": {"index": "0"}}, "context.media.index must be an integer"),
        ({"media": []}, "context.media must be an object, got list"),
    ],
)
def test_v3_bad_media_context_is_refused_naming_the_field(context: dict[str, Any], reason: str) -> None:
    body = builder_request("", intent="actions.intent.MEDIA_STATUS_FINISHED")
    body["context"] = context
    with pytest.raises(BadRequest) as info:
        V3.decode(body)
    assert reason in info.value.reason


def test_v3_documented_health_check_is_a_health_check() -> None:
    body = {
        "handler": {"name": "actions.handler.HEALTH_CHECK"},
        "intent": {"name": "actions.intent.HEALTH_CHECK"},
        "session": {"id": "actions.session.HEALTH_CHECK"},
        "user": {"locale": "en-US"},
        "device": {"capabilities": []},
    }
    assert V3.decode(body).kind is TurnKind.HEALTH_CHECK
    del body["handler"]
    assert V3.decode(body).kind is TurnKind.HEALTH_CHECK


@pytest.mark.parametrize("intent", ["actions.intent.MAIN", "actions.intent.TEXT"])
@pytest.mark.parametrize("argument", [{"boolValue": True, "textValue": "1"}, {"text_value": "1"}])
def test_legacy_health_check_argument_marks_any_launch_intent(intent: str, argument: dict[str, Any]) -> None:
    arguments = [{"name": "is_health_check", **argument}]
    assert V2.decode(v2_request("hi", intent=intent, arguments=arguments)).kind is TurnKind.HEALTH_CHECK
    payload = v2_request("hi", None, intent=intent, arguments=arguments)
    assert DF.decode(dialogflow_request("hi", "en", payload=payload)).kind is TurnKind.HEALTH_CHECK


# --- configuration and the bot's domain -------------------------------------------------------------------


def test_configured_mapping_picks_the_bots_intent() -> None:
    turn = V3.decode(builder_request("", intent="actions.intent.MEDIA_STATUS_FINISHED"))
    mapped = system_intents.configured(turn, {"actions.intent.MEDIA_STATUS_FINISHED": "track_over"})
    assert mapped.payload == '/track_over{"status": "FINISHED"}'
    assert system_intents.configured(turn, {"actions.intent.SIGN_IN": "signed"}) is turn
    plain = Turn(TurnKind.MESSAGE, "s", "en", text="hi")
    assert system_intents.configured(plain, {"actions.intent.SIGN_IN": "signed"}) is plain


def test_settings_map_system_intents_and_refuse_unknown_ones() -> None:
    mapping = {"actions.intent.MEDIA_STATUS_FINISHED": "track_over"}
    settings = load_settings(overrides={"channels.google.system_intents": mapping})
    assert settings.channels["google"].system_intents == mapping
    assert load_settings().channels["dialogflow_es"].system_intents == {}
    with pytest.raises(ConfigError, match=r"channels\.google\.system_intents\.actions\.intent\.NOPE"):
        load_settings(overrides={"channels.google.system_intents": {"actions.intent.NOPE": "x"}})
    with pytest.raises(ConfigError, match="a Rasa intent name"):
        load_settings(
            overrides={"channels.dialogflow_es.system_intents": {"actions.intent.LINK": "/greet{}"}}
        )


def test_a_bot_without_the_intent_gets_rasas_nlu_fallback() -> None:
    intents = {"greet", "media_status_finished", "nlu_fallback"}
    assert system_intents.for_domain('/media_status_finished{"status": "FINISHED"}', intents) == (
        '/media_status_finished{"status": "FINISHED"}'
    )
    assert system_intents.for_domain('/sign_in{"status": "OK"}', intents) == "/nlu_fallback"


def test_channels_apply_their_configured_mapping() -> None:
    mapping = {"actions.intent.MEDIA_STATUS": "track_event", "actions.intent.MEDIA_STATUS_FINISHED": "over"}
    settings = load_settings(
        overrides={
            "channels.google.system_intents": mapping,
            "channels.dialogflow_es.system_intents": {"actions.intent.MEDIA_STATUS_FINISHED": "es_over"},
        }
    )
    finished = [{"name": "MEDIA_STATUS", "extension": ext("MediaStatus", status="FINISHED")}]
    body = v2_request("", intent="actions.intent.MEDIA_STATUS", arguments=finished)
    request: Any = None  # the Google and ES channels decide from the body alone
    assert GoogleChannel(settings).decode(request, body)[1].payload == '/over{"status": "FINISHED"}'
    es = dialogflow_request("actions_intent_MEDIA_STATUS", "en", payload=body)
    assert DialogflowEsChannel(settings).decode(request, es)[1].payload == '/es_over{"status": "FINISHED"}'


def test_system_intents_can_be_mapped_from_the_environment() -> None:
    env = {"GATEWAY_CHANNELS_GOOGLE_SYSTEM_INTENTS": "{actions.intent.LINK: linked}"}
    assert load_settings(env=env).channels["google"].system_intents == {"actions.intent.LINK": "linked"}
