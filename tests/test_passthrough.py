"""A bot's custom.google, written for one Google shape, comes out valid in each shape (passthrough.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.channels import params, passthrough
from gateway.channels.actions_builder import ActionsBuilderCodec
from gateway.channels.conversation_v2 import ConversationV2Codec
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.protocol import Reply, Turn, TurnKind
from gateway.routing.webhook import _ends, never_silent
from tests.shapes import schema_errors

V3, V2, DF = ActionsBuilderCodec(), ConversationV2Codec(), DialogflowCodec()
TURN = Turn(
    TurnKind.MESSAGE,
    "s-1",
    "en-US",
    text="hi",
    session_params={"_gateway": {"chips": {}}, "k": 1},
    echo={"scene": "Main"},
    context={"user_params": {"old": 1, "visits": 1}},
)
SONG = "https://example.com/song.mp3"
COVER = "https://example.com/cover.png"
V3_MEDIA = {
    "prompt": {
        "firstSimple": {"speech": "Here is the song.", "text": "Here is the song."},
        "content": {
            "media": {
                "mediaType": "AUDIO",
                "mediaObjects": [
                    {
                        "name": "Song",
                        "description": "A song",
                        "url": SONG,
                        "image": {"large": {"url": COVER, "alt": "Cover"}},
                    }
                ],
                "optionalMediaControls": ["PAUSED", "STOPPED"],
            }
        },
        "suggestions": [{"title": "Stop"}],
    }
}
V2_MEDIA_ITEM = {
    "mediaResponse": {
        "mediaType": "AUDIO",
        "mediaObjects": [
            {
                "name": "Song",
                "description": "A song",
                "contentUrl": SONG,
                "largeImage": {"url": COVER, "accessibilityText": "Cover"},
            }
        ],
    }
}


def encode_all(messages: list[dict[str, Any]], end: bool = False, turn: Turn = TURN) -> dict[str, Any]:
    """Each shape's answer to one reply, each valid against its schema written from the official types."""
    out = {}
    for codec in (V3, V2, DF):
        body = codec.encode(turn, Reply(messages, end_conversation=end))
        assert schema_errors(codec.channel, body) == [], (codec.channel, body)
        out[codec.channel] = body
    return out


def google(body: dict[str, Any]) -> dict[str, Any]:
    """The legacy response: v2's AppResponse or Dialogflow's payload.google."""
    return body["payload"]["google"] if "payload" in body else body


def rich_response(body: dict[str, Any]) -> dict[str, Any]:
    if "payload" in body:
        found: dict[str, Any] = body["payload"]["google"]["richResponse"]
        return found
    if body["expectUserResponse"]:
        return dict(body["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"])
    return dict(body["finalResponse"]["richResponse"])


def custom(google_object: dict[str, Any]) -> dict[str, Any]:
    return {"custom": {"google": google_object}}


# --- rich items, each direction -------------------------------------------------------------------------


def test_a_v3_media_response_becomes_a_legacy_media_item_after_the_simple_response() -> None:
    out = encode_all([{"text": "Playing."}, custom(V3_MEDIA)])
    prompt = out["actions_builder"]["prompt"]
    assert prompt["content"] == V3_MEDIA["prompt"]["content"]
    assert prompt["firstSimple"]["speech"] == "Playing."
    assert prompt["lastSimple"]["speech"] == "Here is the song."
    assert prompt["suggestions"] == [{"title": "Stop"}]
    for shape in ("conversation_v2", "dialogflow"):
        response = rich_response(out[shape])
        assert [next(iter(item)) for item in response["items"]] == [
            "simpleResponse",
            "simpleResponse",
            "mediaResponse",
        ]
        assert response["items"][2] == V2_MEDIA_ITEM
        assert response["suggestions"] == [{"title": "Stop"}]


def test_a_legacy_media_response_becomes_v3_content_media() -> None:
    legacy = {"richResponse": {"items": [V2_MEDIA_ITEM], "suggestions": [{"title": "Stop"}]}}
    out = encode_all([{"text": "Playing."}, custom(legacy)])
    media = out["actions_builder"]["prompt"]["content"]["media"]
    assert media["mediaObjects"][0] == {
        "name": "Song",
        "description": "A song",
        "url": SONG,
        "image": {"large": {"url": COVER, "alt": "Cover"}},
    }
    assert rich_response(out["conversation_v2"])["items"][-1] == V2_MEDIA_ITEM


def test_a_legacy_media_response_without_chips_is_dropped_while_the_conversation_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Playing."}, custom({"richResponse": {"items": [V2_MEDIA_ITEM]}})])
    assert "media" in out["actions_builder"]["prompt"]["content"]  # v3 needs no chips
    for shape in ("conversation_v2", "dialogflow"):
        assert [next(iter(item)) for item in rich_response(out[shape])["items"]] == ["simpleResponse"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("mediaResponse (needs suggestion chips" in m for m in warned)


def test_a_bots_basic_card_replaces_the_gateways_image_card_rather_than_making_two() -> None:
    card = {"basicCard": {"title": "Menu", "formattedText": "Soup", "buttons": [
        {"title": "Open", "openUrlAction": {"url": "https://example.com/menu"}}
    ]}}  # fmt: skip
    messages = [
        {"text": "Look"},
        {"image": "https://example.com/a.png"},
        custom({"richResponse": {"items": [card]}}),
    ]
    out = encode_all(messages)
    for shape in ("conversation_v2", "dialogflow"):
        assert rich_response(out[shape])["items"] == [
            {"simpleResponse": {"textToSpeech": "Look", "displayText": "Look"}},
            card,
        ]
    assert out["actions_builder"]["prompt"]["content"] == {
        "card": {
            "title": "Menu",
            "text": "Soup",
            "button": {"name": "Open", "open": {"url": "https://example.com/menu"}},
        }
    }


def test_a_second_rich_item_is_dropped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = {"tableCard": {"rows": [{"cells": [{"text": "a"}], "dividerAfter": True}], "columnProperties": [
        {"header": "A", "horizontalAlignment": "CENTER"}
    ]}}  # fmt: skip
    legacy = {"richResponse": {"items": [table, {"basicCard": {"formattedText": "x"}}]}}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Table"}, custom(legacy)])
    assert out["actions_builder"]["prompt"]["content"] == {
        "table": {
            "columns": [{"header": "A", "align": "CENTER"}],
            "rows": [{"cells": [{"text": "a"}], "divider": True}],
        }
    }
    assert rich_response(out["conversation_v2"])["items"][-1] == table
    assert len(caplog.records) == 3  # one per response
    assert all("richResponse.items[1]" in r.getMessage() for r in caplog.records)


def test_a_v3_list_has_no_legacy_form_and_is_dropped_there_only(caplog: pytest.LogCaptureFixture) -> None:
    listed = {"list": {"title": "Pick", "items": [{"key": "A"}, {"key": "B"}]}}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Pick one"}, custom({"prompt": {"content": listed}})])
    assert out["actions_builder"]["prompt"]["content"] == listed
    assert len(rich_response(out["dialogflow"])["items"]) == 1
    assert len(caplog.records) == 2  # conversation_v2 and dialogflow, not actions_builder
    assert all("prompt.content.list" in r.getMessage() for r in caplog.records)


# --- bubbles and chips -------------------------------------------------------------------------------------


def test_bot_bubbles_are_appended_after_the_gateways_and_merged_into_the_second() -> None:
    legacy = {
        "richResponse": {"items": [{"simpleResponse": {"textToSpeech": "Third", "displayText": "Third"}}]}
    }
    out = encode_all([{"text": "First"}, {"text": "Second"}, custom(legacy)])
    prompt = out["actions_builder"]["prompt"]
    assert prompt["firstSimple"] == {"speech": "First", "text": "First"}
    assert prompt["lastSimple"] == {"speech": "Second Third", "text": "Second Third"}
    items = rich_response(out["conversation_v2"])["items"]
    assert [item["simpleResponse"]["textToSpeech"] for item in items] == ["First", "Second Third"]


def test_bot_chips_are_appended_unique_and_at_most_eight() -> None:
    buttons = [{"title": "Hours"}, {"title": "Menu"}]
    extra = [{"title": t} for t in ("menu", "A", "B", "C", "D", "E", "F", "G")]
    out = encode_all([{"text": "Hi", "buttons": buttons}, custom({"prompt": {"suggestions": extra}})])
    titles = [c["title"] for c in out["actions_builder"]["prompt"]["suggestions"]]
    assert titles == ["Hours", "Menu", "A", "B", "C", "D", "E", "F"]
    assert [c["title"] for c in rich_response(out["dialogflow"])["suggestions"]] == titles


def test_a_link_out_in_either_shape_reaches_both() -> None:
    v3 = encode_all(
        [{"text": "Site"}, custom({"prompt": {"link": {"name": "Site", "open": {"url": "https://x.org"}}}})]
    )
    legacy_link = {"destinationName": "Site", "openUrlAction": {"url": "https://x.org"}}
    assert rich_response(v3["conversation_v2"])["linkOutSuggestion"] == legacy_link
    legacy = encode_all([{"text": "Site"}, custom({"richResponse": {"linkOutSuggestion": legacy_link}})])
    assert legacy["actions_builder"]["prompt"]["link"] == {"name": "Site", "open": {"url": "https://x.org"}}


# --- scene, state and v2 field placement --------------------------------------------------------------------


def test_scene_next_gets_the_requests_scene_name_and_is_dropped_in_legacy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Go"}, custom({"scene": {"next": {"name": "Checkout"}}})])
    assert out["actions_builder"]["scene"] == {"name": "Main", "slots": {}, "next": {"name": "Checkout"}}
    assert "scene" not in out["conversation_v2"]
    assert [r.getMessage() for r in caplog.records] == [
        "bot for en-US: custom.google scene.next cannot be sent in conversation_v2 responses; dropped",
        "bot for en-US: custom.google scene.next cannot be sent in dialogflow responses; dropped",
    ]


def test_scene_next_end_conversation_ends_every_shape() -> None:
    messages = [{"text": "Bye"}, custom({"scene": {"next": {"name": passthrough.END_SCENE}}})]
    assert _ends(messages, frozenset())
    out = encode_all(messages, end=True)
    assert out["actions_builder"]["scene"]["next"] == {"name": passthrough.END_SCENE}
    assert out["conversation_v2"]["expectUserResponse"] is False
    assert google(out["dialogflow"])["expectUserResponse"] is False


def test_v2_fields_go_to_their_documented_places_in_each_shape() -> None:
    hints = ["pizza", "pasta"]
    no_input = [{"textToSpeech": "Still there?"}]
    out = encode_all([{"text": "Order?"}, custom({"speechBiasingHints": hints, "noInputPrompts": no_input})])
    v2 = out["conversation_v2"]
    assert "speechBiasingHints" not in v2 and "noInputPrompts" not in v2
    assert v2["expectedInputs"][0]["speechBiasingHints"] == hints
    assert v2["expectedInputs"][0]["inputPrompt"]["noInputPrompts"] == no_input
    assert google(out["dialogflow"])["speechBiasingHints"] == hints  # nodejs keeps them at payload.google
    assert google(out["dialogflow"])["noInputPrompts"] == no_input
    assert out["actions_builder"]["expected"] == {"speech": hints}


def test_v3_expected_speech_becomes_speech_biasing_hints() -> None:
    out = encode_all([{"text": "Order?"}, custom({"expected": {"speech": ["pizza"]}})])
    assert out["conversation_v2"]["expectedInputs"][0]["speechBiasingHints"] == ["pizza"]
    assert out["actions_builder"]["expected"] == {"speech": ["pizza"]}


def test_user_params_and_user_storage_are_the_same_thing_in_each_shape() -> None:
    out = encode_all([{"text": "Saved"}, custom({"user": {"params": {"visits": 2}}})])
    assert out["actions_builder"]["user"] == {"params": {"visits": 2}}
    for shape in ("conversation_v2", "dialogflow"):
        storage = google(out[shape])["userStorage"]
        assert json.loads(storage) == {"data": {"visits": 2}}  # actions-on-google-nodejs' convention
    legacy = encode_all([{"text": "Saved"}, custom({"userStorage": json.dumps({"data": {"visits": 3}})})])
    assert legacy["actions_builder"]["user"] == {"params": {"visits": 3}}


def test_reset_user_storage_nulls_the_requests_user_params_in_v3_and_writes_empty_storage_in_dialogflow() -> (
    None
):
    out = encode_all([{"text": "Forgotten"}, custom({"resetUserStorage": True})])
    assert out["actions_builder"]["user"] == {"params": {"old": None, "visits": None}}
    assert out["conversation_v2"]["resetUserStorage"] is True
    assert google(out["dialogflow"])["userStorage"] == '{"data":{}}'


def test_bot_session_params_merge_over_the_requests_and_the_gateway_key_stays_the_gateways(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written = {"session": {"params": {"cart": ["soup"], "_gateway": "mine"}}}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        body = V3.encode(TURN, Reply([{"text": "Added"}, custom(written)]))
    # The bot's "mine" is never written; the request's chip memory is deleted (null: Google merges params),
    # as this reply has no chips to remember (gateway/channels/chips.py).
    assert body["session"]["params"] == {"_gateway": None, "k": 1, "cart": ["soup"]}
    assert "session.params._gateway" in caplog.records[0].getMessage()


def test_everything_a_shape_cannot_carry_is_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    written = {
        "prompt": {"canvas": {"url": "https://example.com/canvas"}, "bogus": 1},
        "home": {"params": {"lamp": "on"}},
        "unknown": True,
    }
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Hi"}, custom(written)])
    assert out["actions_builder"]["prompt"]["canvas"] == {"url": "https://example.com/canvas"}
    assert out["actions_builder"]["home"] == {"params": {"lamp": "on"}}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "bot for en-US: custom.google prompt.bogus, unknown cannot be sent in actions_builder responses; "
        "dropped",
        "bot for en-US: custom.google home.params, prompt.bogus, prompt.canvas, unknown cannot be sent in "
        "conversation_v2 responses; dropped",
        "bot for en-US: custom.google home.params, prompt.bogus, prompt.canvas, unknown cannot be sent in "
        "dialogflow responses; dropped",
    ]


def test_a_system_intent_keeps_its_legacy_places_and_is_dropped_in_v3(
    caplog: pytest.LogCaptureFixture,
) -> None:
    system = {"intent": "actions.intent.OPTION", "data": {"@type": "type.googleapis.com/x"}}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Pick"}, custom({"systemIntent": system})])
    assert out["conversation_v2"]["expectedInputs"][0]["possibleIntents"] == [
        {"intent": "actions.intent.OPTION", "inputValueData": {"@type": "type.googleapis.com/x"}}
    ]
    assert google(out["dialogflow"])["systemIntent"] == system
    assert [r.getMessage().split(" cannot")[0] for r in caplog.records] == [
        "bot for en-US: custom.google systemIntent"
    ]


# --- the userStorage convention -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "storage"),
    [
        ("", {}),
        ('{"data":{"visits":2}}', {"visits": 2}),
        ('{"visits": 2}', {"visits": 2}),
        ("opaque-token", {"userStorage": "opaque-token"}),
        ("[1, 2]", {"userStorage": "[1, 2]"}),
    ],
)
def test_user_storage_strings_decode_by_the_nodejs_convention_and_tolerate_others(
    raw: str, storage: Any
) -> None:
    assert params.decode_user_storage(raw) == storage


def test_user_storage_over_googles_limit_is_not_written(caplog: pytest.LogCaptureFixture) -> None:
    big = {"blob": "x" * 10_000}
    assert params.encode_user_storage(big) is None
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        body = V2.encode(TURN, Reply([{"text": "Hi"}, custom({"user": {"params": big}})]))
    assert "userStorage" not in body
    assert "user.params (over 10k bytes)" in caplog.records[0].getMessage()


# --- every rich item, both directions -----------------------------------------------------------------------

TILES_V3 = [
    {
        "title": f"T{i}",
        "description": "d",
        "openUriAction": {"url": f"https://x.org/{i}"},
        "image": {"url": COVER, "alt": "c"},
    }
    for i in (1, 2)
]
TILES_V2 = [
    {
        "title": f"T{i}",
        "description": "d",
        "openUrlAction": {"url": f"https://x.org/{i}"},
        "image": {"url": COVER, "accessibilityText": "c"},
    }
    for i in (1, 2)
]
PAIRS = [
    (
        {
            "card": {
                "title": "T",
                "subtitle": "S",
                "text": "Body",
                "image": {"url": COVER, "alt": "c"},
                "imageFill": "WHITE",
            }
        },
        {
            "basicCard": {
                "title": "T",
                "subtitle": "S",
                "formattedText": "Body",
                "image": {"url": COVER, "accessibilityText": "c"},
                "imageDisplayOptions": "WHITE",
            }
        },
    ),
    (
        {
            "table": {
                "title": "T",
                "columns": [{"header": "H", "align": "TRAILING"}],
                "rows": [{"cells": [{"text": "1"}]}],
                "button": {"name": "More", "open": {"url": "https://x.org"}},
            }
        },
        {
            "tableCard": {
                "title": "T",
                "columnProperties": [{"header": "H", "horizontalAlignment": "TRAILING"}],
                "rows": [{"cells": [{"text": "1"}]}],
                "buttons": [{"title": "More", "openUrlAction": {"url": "https://x.org"}}],
            }
        },
    ),
    (
        {"collectionBrowse": {"items": TILES_V3, "imageFill": "CROPPED"}},
        {"carouselBrowse": {"items": TILES_V2, "imageDisplayOptions": "CROPPED"}},
    ),
]


@pytest.mark.parametrize(("content", "item"), PAIRS, ids=lambda p: next(iter(p)))
def test_each_rich_item_translates_both_ways(content: dict[str, Any], item: dict[str, Any]) -> None:
    from_v3 = encode_all([{"text": "See"}, custom({"prompt": {"content": content}})])
    assert from_v3["actions_builder"]["prompt"]["content"] == content
    assert rich_response(from_v3["conversation_v2"])["items"][-1] == item
    from_legacy = encode_all([{"text": "See"}, custom({"richResponse": {"items": [item]}})])
    assert from_legacy["actions_builder"]["prompt"]["content"] == content
    assert rich_response(from_legacy["dialogflow"])["items"][-1] == item


def test_a_v3_image_is_a_basic_card_in_legacy_shapes() -> None:
    out = encode_all(
        [{"text": "See"}, custom({"prompt": {"content": {"image": {"url": COVER, "alt": "c"}}}})]
    )
    assert rich_response(out["conversation_v2"])["items"][-1] == {
        "basicCard": {"image": {"url": COVER, "accessibilityText": "c"}, "imageDisplayOptions": "DEFAULT"}
    }


def test_an_invalid_item_is_dropped_in_every_shape_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    plain_http = {"mediaType": "AUDIO", "mediaObjects": [{"name": "x", "url": "http://example.com/a.mp3"}]}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all([{"text": "Hi"}, custom({"prompt": {"content": {"media": plain_http}}})])
    assert "content" not in out["actions_builder"]["prompt"]
    assert len(rich_response(out["conversation_v2"])["items"]) == 1
    assert len(caplog.records) == 3 and all("prompt.content.media" in r.getMessage() for r in caplog.records)


def test_a_media_status_ack_exists_in_v3_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all(
            [{"text": "Ok"}, custom({"prompt": {"content": {"media": {"mediaType": "MEDIA_STATUS_ACK"}}}})]
        )
    assert out["actions_builder"]["prompt"]["content"] == {"media": {"mediaType": "MEDIA_STATUS_ACK"}}
    assert len(rich_response(out["dialogflow"])["items"]) == 1
    assert len(caplog.records) == 2


def test_a_bot_speaking_only_through_custom_google_is_not_silent() -> None:
    media_only = [custom(V3_MEDIA)]
    assert never_silent(media_only, "Sorry, nothing to say.", google=True) == media_only
    # elsewhere (REST, Dialogflow CX, Alexa) custom.google is not rendered: the empty prompt is added
    assert never_silent(media_only, "Sorry, nothing to say.")[-1] == {"text": "Sorry, nothing to say."}
    out = encode_all(media_only)
    assert out["actions_builder"]["prompt"]["firstSimple"]["speech"] == "Here is the song."
    assert [next(iter(i)) for i in rich_response(out["conversation_v2"])["items"]] == [
        "simpleResponse",
        "mediaResponse",
    ]
    assert out["dialogflow"]["fulfillmentText"] == "Here is the song."
    silent = [custom({"prompt": {"content": {"image": {"url": COVER, "alt": "c"}}}})]
    assert never_silent(silent, "Sorry, nothing to say.", google=True)[-1] == {
        "text": "Sorry, nothing to say."
    }


def test_fields_outside_the_official_v3_objects_are_dropped_by_name(caplog: pytest.LogCaptureFixture) -> None:
    written = {
        "user": {"params": {"a": 1}, "locale": "en-US"},
        "device": {"timeZone": {"id": "Europe/Paris"}, "screen": 1},
        "prompt": {"canvas": {"url": "https://example.com/c", "html": "<b>"}},
    }
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        body = V3.encode(TURN, Reply([{"text": "Hi"}, custom(written)]))
    assert schema_errors("actions_builder", body) == []
    assert body["device"] == {"timeZone": {"id": "Europe/Paris"}}
    assert body["prompt"]["canvas"] == {"url": "https://example.com/c"}
    assert caplog.records[0].getMessage() == (
        "bot for en-US: custom.google device.screen, prompt.canvas.html, user.locale cannot be sent in "
        "actions_builder responses; dropped"
    )


def test_no_card_goes_with_an_option_select(caplog: pytest.LogCaptureFixture) -> None:
    system = {"intent": "actions.intent.OPTION", "data": {"@type": "type.googleapis.com/x"}}
    card = {"basicCard": {"formattedText": "x"}}
    with caplog.at_level(logging.WARNING, logger="gateway.channels.passthrough"):
        out = encode_all(
            [{"text": "Pick"}, custom({"systemIntent": system, "richResponse": {"items": [card]}})]
        )
    assert [next(iter(i)) for i in rich_response(out["conversation_v2"])["items"]] == ["simpleResponse"]
    assert "basicCard (not allowed with actions.intent.OPTION)" in caplog.records[1].getMessage()


def test_a_speaker_gets_no_card_or_link_but_keeps_media_it_can_play() -> None:
    card = {"custom": {"google": {"prompt": {"content": {"card": {"title": "Menu", "text": "Soup"}}}}}}
    link = {
        "custom": {"google": {"prompt": {"link": {"name": "Site", "open": {"url": "https://example.com"}}}}}
    }
    media = {"custom": {"google": V3_MEDIA}}
    speaker = {"capabilities": ["speech", "long_form_audio"]}
    for messages in ([{"text": "Here"}, card], [{"text": "Here"}, link]):
        _, custom = passthrough.layout_reply(Reply(messages), speaker)
        assert (custom.content, custom.item, custom.link_v3, custom.link_v2) == (None, None, None, None)
        _, on_screen = passthrough.layout_reply(
            Reply(messages), {"capabilities": ["speech", "rich_response"]}
        )
        assert on_screen.content is not None or on_screen.link_v3 is not None
    _, custom = passthrough.layout_reply(Reply([{"text": "Jazz"}, media]), speaker)
    assert custom.content is not None and "media" in custom.content
    _, silent = passthrough.layout_reply(Reply([{"text": "Jazz"}, media]), {"capabilities": ["speech"]})
    assert silent.content is None and silent.item is None
