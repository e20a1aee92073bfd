"""Each rule mapping bot messages onto Google's rich responses, in every webhook generation."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.channels import rich
from gateway.channels.actions_builder import END_SCENE, ActionsBuilderCodec
from gateway.channels.conversation_v2 import ConversationV2Codec
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.protocol import Reply, Turn, TurnKind
from gateway.routing.webhook import _ends, never_silent
from tests.shapes import schema_errors

V3, V2, DF = ActionsBuilderCodec(), ConversationV2Codec(), DialogflowCodec()
TURN = Turn(TurnKind.MESSAGE, "s-1", "en-US", text="hi", session_params={"k": [1]}, echo={"scene": "Main"})
LONG = " ".join(["word"] * 200)  # 999 characters


def encode_all(messages: list[dict[str, Any]], end: bool = False, turn: Turn = TURN) -> dict[str, Any]:
    """The three encodings of one reply, each checked against its response schema."""
    out = {}
    for codec in (V3, V2, DF):
        body = codec.encode(turn, Reply(messages, end_conversation=end))
        assert schema_errors(codec.channel, body) == [], (codec.channel, body)
        out[codec.channel] = body
    return out


def legacy_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "payload" in body:
        items: list[dict[str, Any]] = body["payload"]["google"]["richResponse"]["items"]
        return items
    if body["expectUserResponse"]:
        return list(body["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]["items"])
    return list(body["finalResponse"]["richResponse"]["items"])


def legacy_prompt(body: dict[str, Any]) -> dict[str, Any]:
    if "payload" in body:
        prompt: dict[str, Any] = body["payload"]["google"]["richResponse"]
        return prompt
    return dict(body["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"])


# --- texts -> bubbles -------------------------------------------------------------------------------


def test_one_text_is_the_first_simple_response() -> None:
    out = encode_all([{"text": "Hello there."}])
    assert out["actions_builder"]["prompt"]["firstSimple"] == {
        "speech": "Hello there.",
        "text": "Hello there.",
    }
    assert "lastSimple" not in out["actions_builder"]["prompt"]
    for body in (out["conversation_v2"], out["dialogflow"]):
        assert legacy_items(body) == [
            {"simpleResponse": {"textToSpeech": "Hello there.", "displayText": "Hello there."}}
        ]
    assert out["dialogflow"]["fulfillmentText"] == "Hello there."


def test_several_texts_become_first_and_last_simple_with_extras_merged() -> None:
    out = encode_all([{"text": "One."}, {"text": "Two."}, {"text": "  "}, {"text": "Three."}])
    prompt = out["actions_builder"]["prompt"]
    assert prompt["firstSimple"]["speech"] == "One."
    assert prompt["lastSimple"] == {"speech": "Two. Three.", "text": "Two. Three."}
    for body in (out["conversation_v2"], out["dialogflow"]):
        speeches = [item["simpleResponse"]["textToSpeech"] for item in legacy_items(body)]
        assert speeches == ["One.", "Two. Three."]  # at most two simple responses
    assert out["dialogflow"]["fulfillmentText"] == "One. Two. Three."


def test_text_over_640_characters_is_cut_at_a_word_break_and_speech_keeps_every_word() -> None:
    out = encode_all([{"text": LONG}])
    first = out["actions_builder"]["prompt"]["firstSimple"]
    assert first["speech"] == LONG
    assert len(first["text"]) <= 640
    assert first["text"].endswith("word…")
    assert LONG.startswith(first["text"][:-1])
    for body in (out["conversation_v2"], out["dialogflow"]):
        simple = legacy_items(body)[0]["simpleResponse"]
        assert simple["textToSpeech"] == LONG
        assert simple["displayText"] == first["text"]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 640, "short"),
        ("a" * 640, 640, "a" * 640),
        ("a" * 641, 640, "a" * 639 + "…"),  # one long word: cut mid-word
        ("alpha beta gamma", 12, "alpha beta…"),
    ],
)
def test_cut(text: str, limit: int, expected: str) -> None:
    assert rich.cut(text, limit) == expected
    assert len(rich.cut(text, limit)) <= limit


def test_ssml_is_spoken_as_ssml_and_shown_without_tags() -> None:
    ssml = '<speak>Hi <break time="1s"/> there &amp; welcome</speak>'
    out = encode_all([{"text": ssml}, {"text": "a < b"}])
    prompt = out["actions_builder"]["prompt"]
    assert prompt["firstSimple"] == {"speech": ssml, "text": "Hi there & welcome"}
    assert prompt["lastSimple"] == {"speech": "a < b", "text": "a < b"}
    items = legacy_items(out["conversation_v2"])
    assert items[0]["simpleResponse"] == {"ssml": ssml, "displayText": "Hi there & welcome"}
    # Merging plain text into an SSML bubble escapes the plain text.
    merged = rich.simple(["<speak>One</speak>", "a < b"])
    assert merged == rich.Simple("<speak>One a &lt; b</speak>", "One a < b")


# --- buttons -> suggestion chips --------------------------------------------------------------------


def test_buttons_and_quick_replies_become_at_most_8_unique_chips_of_25_characters() -> None:
    buttons = [{"title": f"Option number {i}", "payload": f"/o{i}"} for i in range(6)]
    messages = [
        {"text": "Pick one", "buttons": [*buttons, {"title": "option NUMBER 1"}, {"title": "x" * 40}]},
        {"text": "Or", "quick_replies": [{"title": "  Spaced   out  "}, {"title": 42}, {"title": "Late"}]},
        {"text": "Bad", "buttons": [{"title": None}, {"title": True}, "not a dict", {"payload": "/x"}]},
    ]
    titles = [c["title"] for c in encode_all(messages)["actions_builder"]["prompt"]["suggestions"]]
    # One word longer than a chip: cut to 24 characters and marked (the only cut made mid-word).
    assert titles == [*(f"Option number {i}" for i in range(6)), "x" * 24 + "…", "Spaced out"]
    for channel in ("conversation_v2", "dialogflow"):
        body = encode_all(messages)[channel]
        assert [c["title"] for c in legacy_prompt(body)["suggestions"]] == titles


def test_chip_titles_shortened_alike_keep_their_last_word() -> None:
    same_prefix = [
        {"title": "A very long chip title that goes on 1"},
        {"title": "A very long chip title that goes on 2"},
    ]
    shown = ("A very long chip title… 1", "A very long chip title… 2")
    assert rich.chips([{"buttons": same_prefix}]) == shown


def test_no_chips_when_the_conversation_ends() -> None:
    out = encode_all([{"text": "Bye", "buttons": [{"title": "Again"}]}], end=True)
    assert "suggestions" not in out["actions_builder"]["prompt"]
    assert "suggestions" not in out["conversation_v2"]["finalResponse"]["richResponse"]
    assert "suggestions" not in out["dialogflow"]["payload"]["google"]["richResponse"]


# --- images -------------------------------------------------------------------------------------------


def test_the_first_image_becomes_content_image_or_a_basic_card() -> None:
    messages = [
        {"text": "Our terrace"},
        {"image": "https://example.com/terrace.jpg"},
        {"image": "https://example.com/second.jpg"},
        {"image": "ftp://example.com/ignored.jpg"},
    ]
    out = encode_all(messages)
    assert out["actions_builder"]["prompt"]["content"] == {
        "image": {"url": "https://example.com/terrace.jpg", "alt": "Our terrace"}
    }
    for body in (out["conversation_v2"], out["dialogflow"]):
        items = legacy_items(body)
        assert items[0]["simpleResponse"]["textToSpeech"] == "Our terrace"
        assert items[1] == {
            "basicCard": {
                "image": {"url": "https://example.com/terrace.jpg", "accessibilityText": "Our terrace"},
                "imageDisplayOptions": "DEFAULT",
            }
        }
        assert len(items) == 2


def test_non_http_images_are_ignored() -> None:
    assert rich.image([{"text": "x"}, {"image": "javascript:alert(1)"}, {"image": 5}]) is None


# --- custom payloads ----------------------------------------------------------------------------------


def test_custom_google_payload_is_passed_through_in_each_generation() -> None:
    card = {"card": {"title": "Menu", "text": "Today's specials"}}
    v3 = ActionsBuilderCodec().encode(
        TURN, Reply([{"text": "Here"}, {"custom": {"google": {"prompt": {"content": card}}, "slack": {}}}])
    )
    assert v3["prompt"]["content"] == card
    assert v3["prompt"]["firstSimple"]["speech"] == "Here"  # merged over, not replacing, the prompt

    system = {"intent": "actions.intent.OPTION", "data": {"@type": "type.googleapis.com/x"}}
    legacy = {
        "systemIntent": system,
        "userStorage": '{"visits": 3}',
        "richResponse": {"linkOutSuggestion": {"destinationName": "Site", "url": "https://example.com"}},
    }
    v2 = ConversationV2Codec().encode(TURN, Reply([{"text": "Pick"}, {"custom": {"google": legacy}}]))
    assert v2["expectedInputs"][0]["possibleIntents"] == [
        {"intent": "actions.intent.OPTION", "inputValueData": {"@type": "type.googleapis.com/x"}}
    ]
    assert v2["userStorage"] == '{"visits": 3}'
    assert v2["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]["linkOutSuggestion"] == {
        "destinationName": "Site",
        "openUrlAction": {"url": "https://example.com"},  # the deprecated `url` in its current place
    }

    df = DialogflowCodec().encode(TURN, Reply([{"text": "Pick"}, {"custom": {"google": legacy}}]))
    assert df["payload"]["google"]["systemIntent"] == system
    assert df["payload"]["google"]["userStorage"] == '{"visits": 3}'


def test_custom_payload_without_google_key_changes_nothing() -> None:
    plain = encode_all([{"text": "Hi"}])
    assert encode_all([{"text": "Hi"}, {"custom": {"facebook": {"x": 1}}}]) == plain


def test_merge_is_deep_for_objects_appends_lists_and_replaces_everything_else() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    assert rich.merge(base, {"a": {"c": [2], "e": 3}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": [1, 2], "e": 3},
        "d": {"x": 1},
    }
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}  # inputs untouched


# --- ending ---------------------------------------------------------------------------------------------


def test_ending_actions_and_custom_expect_user_response_false_end_the_conversation() -> None:
    ending = frozenset({"utter_goodbye"})
    assert _ends([{"text": "Bye", "utter_action": "utter_goodbye"}], ending)
    assert _ends([{"text": "x"}, {"custom": {"google": {"expectUserResponse": False}}}], ending)
    assert not _ends([{"text": "Hi", "utter_action": "utter_greet"}], ending)
    assert not _ends([{"custom": {"google": {"expectUserResponse": True}}}], ending)


def test_an_ending_reply_in_each_generation() -> None:
    out = encode_all([{"text": "Bye"}, {"custom": {"google": {"expectUserResponse": False}}}], end=True)
    assert out["actions_builder"]["scene"] == {"name": "Main", "slots": {}, "next": {"name": END_SCENE}}
    assert "expectUserResponse" not in out["actions_builder"]  # a legacy key has no place in v3
    assert out["conversation_v2"]["expectUserResponse"] is False
    assert "expectedInputs" not in out["conversation_v2"]
    assert out["dialogflow"]["payload"]["google"]["expectUserResponse"] is False


def test_an_ending_reply_without_a_scene_names_the_start_scene() -> None:
    turn = Turn(TurnKind.MESSAGE, "s-1", "en-US", text="bye")
    body = ActionsBuilderCodec().encode(turn, Reply([{"text": "Bye"}], end_conversation=True))
    assert body["scene"]["name"] == "actions.scene.START_CONVERSATION"
    assert schema_errors("actions_builder", body) == []


def test_cancel_answer_is_one_bubble_of_at_most_60_characters_in_legacy_shapes() -> None:
    turn = Turn(TurnKind.CANCEL, "s-1", "en-US")
    out = encode_all([{"text": "Okay, goodbye! " * 10}, {"text": "More"}], end=True, turn=turn)
    for body in (out["conversation_v2"], out["dialogflow"]):
        items = legacy_items(body)
        assert len(items) == 1
        assert len(items[0]["simpleResponse"]["displayText"]) <= 60


def test_session_params_round_trip_in_v3() -> None:
    body = ActionsBuilderCodec().encode(TURN, Reply([{"text": "Hi"}]))
    assert body["session"] == {"id": "s-1", "params": {"k": [1]}}


# --- never an empty prompt --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"text": "   "}],
        [{"image": "https://example.com/a.png"}],
        [{"custom": {"google": {"expectUserResponse": False}}}],
        [{"text": "", "buttons": [{"title": "Hours"}]}],
    ],
)
def test_a_reply_that_says_nothing_gets_the_empty_prompt(messages: list[dict[str, Any]]) -> None:
    filled = never_silent(messages, "Sorry, nothing to say.")
    assert filled[-1] == {"text": "Sorry, nothing to say."}
    for body in encode_all(filled).values():  # and every shape then has a non-empty first bubble
        assert "Sorry, nothing to say." in str(body)


def test_a_reply_with_text_is_left_alone() -> None:
    messages = [{"text": "Hi"}, {"image": "https://example.com/a.png"}]
    assert never_silent(messages, "unused") == messages
