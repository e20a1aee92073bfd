"""Chip titles, the sealed title -> payload memory in each Google shape, spoken choices and display text."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson
import pytest

from gateway.channels import chips, rich
from gateway.channels.actions_builder import ActionsBuilderCodec
from gateway.channels.conversation_v2 import ConversationV2Codec, unwrap_token, wrap_token
from gateway.channels.dialogflow_es import DialogflowCodec
from gateway.channels.protocol import Reply, Turn, TurnKind
from gateway.channels.registry import enabled_channels
from gateway.errors import ConfigError
from gateway.routing.webhook import user_text
from gateway.settings import load_settings
from tests.shapes import dialogflow_request, schema_errors, v2_request
from tests.support import builder_request

KEY = b"unit-test-memory-key-0123456789"
V3, V2, DF = ActionsBuilderCodec(), ConversationV2Codec(), DialogflowCodec()
PROMPTS = {lang: bot.prompts for lang, bot in load_settings(env={}).bots.items()}
BOOKING = [
    {
        "text": "Für wie viele Personen?",
        "buttons": [
            {"title": "Reservierung für zwei Personen", "payload": '/inform{"people": "2"}'},
            {"title": "Reservierung für vier Personen", "payload": '/inform{"people": "4"}'},
        ],
    }
]


# --- titles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "short"),
    [
        ("Reservierung für heute Abend", "Reservierung für heute"),
        ("Öffnungszeiten am Wochenende anzeigen", "Öffnungszeiten am"),
        ("Rezerwacja stolika dla czterech osób", "Rezerwacja stolika dla"),
        ("Sprawdź godziny otwarcia w weekend", "Sprawdź godziny otwarcia"),
        ("Tisch reservieren", "Tisch reservieren"),
        ("Zarezerwuj duży stolik, dziękuję", "Zarezerwuj duży stolik"),  # no dangling comma
    ],
)
def test_long_titles_are_shortened_at_a_word_boundary(title: str, short: str) -> None:
    assert chips.shorten(title) == short
    assert len(short) <= chips.CHIP_MAX_CHARS
    assert title == short or title.startswith((short + " ", short + ","))


def test_one_word_longer_than_a_chip_is_cut_and_marked() -> None:
    word = "Donaudampfschifffahrtsgesellschaft"
    assert chips.shorten(f"{word} ahoi") == word[:24] + "…"


@pytest.mark.parametrize(
    ("titles", "shown"),
    [
        (
            ["Reservierung für heute Abend", "Reservierung für heute Mittag"],
            ["Reservierung für… Abend", "Reservierung für… Mittag"],
        ),
        (
            ["Rezerwacja stolika dla dwóch osób", "Rezerwacja stolika dla czterech osób"],
            ["Rezerwacja… dwóch osób", "Rezerwacja… czterech osób"],
        ),
        (
            ["Donaudampfschifffahrtsgesellschaft A", "Donaudampfschifffahrtsgesellschaft B"],
            ["Donaudampfschifffahrtsge…", "Donaudampfschifffahrts… 2"],
        ),
    ],
)
def test_titles_shortened_alike_stay_unique(titles: list[str], shown: list[str]) -> None:
    buttons = [{"title": t, "payload": f"/pick{i}"} for i, t in enumerate(titles)]
    found = chips.collect([{"buttons": buttons}])
    assert [c.title for c in found] == shown
    assert [c.full for c in found] == titles
    assert all(len(c.title) <= chips.CHIP_MAX_CHARS for c in found)


def test_at_most_eight_chips_unique_by_whole_title() -> None:
    buttons = [{"title": f"Same long prefix for every choice {i}", "payload": f"/p{i}"} for i in range(10)]
    buttons.insert(1, {"title": "SAME long prefix for every  choice 0", "payload": "/dup"})
    found = chips.collect([{"buttons": buttons}])
    assert len(found) == chips.MAX_CHIPS
    assert len({chips.normal(c.title) for c in found}) == chips.MAX_CHIPS
    assert "/dup" not in [c.payload for c in found]  # the first of two equal titles wins


# --- the memory ------------------------------------------------------------------------------------------


def sealed(session: str = "s-1", key: bytes = KEY) -> dict[str, Any]:
    memory = chips.seal(chips.collect(BOOKING), session, key)
    assert memory is not None
    return memory


def test_memory_maps_shown_and_whole_titles_to_payloads() -> None:
    remembered = chips.unseal(sealed(), "s-1", KEY)
    assert remembered == {
        "reservierung für zwei": '/inform{"people": "2"}',
        "reservierung für zwei personen": '/inform{"people": "2"}',
        "reservierung für vier": '/inform{"people": "4"}',
        "reservierung für vier personen": '/inform{"people": "4"}',
    }


def test_buttons_without_a_payload_are_not_remembered() -> None:
    assert chips.seal(chips.collect([{"buttons": [{"title": "Just text"}]}]), "s", KEY) is None


def forged(change: Any) -> Any:
    memory = json.loads(json.dumps(sealed()))
    return change(memory) or memory


@pytest.mark.parametrize(
    "memory",
    [
        forged(lambda m: m["chips"].update({"Reservierung für zwei": '/inform{"people": "400"}'})),
        forged(lambda m: m["chips"].update({"hack": "/restart"})),
        forged(lambda m: m.update(sig="A" * 43)),
        forged(lambda m: m.pop("sig")),
        forged(lambda m: m.update(sig=12)),
        forged(lambda m: m.update(chips=["Reservierung für zwei"])),
        forged(lambda m: m["chips"].update({"x": 4})),
        forged(lambda m: m["chips"].update({f"t{i}": "/p" for i in range(20)})),
        forged(lambda m: m["chips"].update({"t" * 300: "/p"})),
        chips.seal(chips.collect(BOOKING), "another-session", KEY),
        chips.seal(chips.collect(BOOKING), "s-1", b"another key entirely, 32 bytes!"),
        "not an object",
        None,
        [],
    ],
)
def test_memory_that_fails_its_check_is_ignored(memory: Any) -> None:
    assert chips.unseal(memory, "s-1", KEY) == {}
    turn = Turn(TurnKind.MESSAGE, "s-1", "de-DE", text="Reservierung für zwei", echo={"memory": memory})
    assert chips.recall(turn, KEY).payload == ""


@pytest.mark.parametrize(
    "said", ["Reservierung für vier", "  reservierung   FÜR vier ", "Reservierung für vier Personen"]
)
def test_a_remembered_title_becomes_its_payload(said: str) -> None:
    turn = Turn(TurnKind.MESSAGE, "s-1", "de-DE", text=said, echo={"memory": sealed()})
    assert chips.recall(turn, KEY).payload == '/inform{"people": "4"}'


def test_typed_payloads_stay_refused_with_a_memory() -> None:
    turn = Turn(TurnKind.MESSAGE, "s-1", "de-DE", text='/inform{"people": "4"}', echo={"memory": sealed()})
    recalled = chips.recall(turn, KEY)
    assert recalled.payload == ""
    assert user_text(recalled.text) == 'inform{"people": "4"}'


def test_only_messages_recall() -> None:
    turn = Turn(TurnKind.NO_INPUT, "s-1", "de-DE", text="Reservierung für vier", echo={"memory": sealed()})
    assert chips.recall(turn, KEY).payload == ""


# --- the memory in each shape ----------------------------------------------------------------------------


def prepared(turn: Turn, messages: list[dict[str, Any]] = BOOKING, lang: str = "de") -> Reply:
    return chips.prepare(Reply(messages), turn, PROMPTS[lang], KEY)


def test_v3_memory_lives_in_one_reserved_session_param() -> None:
    turn = V3.decode(builder_request("hilfe", "de-DE", "v3-s", params={"visits": 1}))
    answer = V3.encode(turn, prepared(turn))
    assert schema_errors("actions_builder", answer) == []
    params = answer["session"]["params"]
    assert params["visits"] == 1 and set(params) == {"visits", chips.MEMORY_KEY}
    assert [s["title"] for s in answer["prompt"]["suggestions"]] == [
        "Reservierung für zwei",
        "Reservierung für vier",
    ]
    tap = V3.decode(builder_request("Reservierung für vier", "de-DE", "v3-s", params=params))
    assert chips.recall(tap, KEY).payload == '/inform{"people": "4"}'
    # Nothing to remember next: Google merges params, so the old memory is deleted with null.
    after = V3.encode(tap, prepared(tap, [{"text": "Erledigt!"}]))
    assert after["session"]["params"] == {"visits": 1, chips.MEMORY_KEY: None}


@pytest.mark.parametrize("memory", ["text", 42, [1], {"chips": "x"}])
def test_v3_malformed_memory_param_is_no_memory(memory: Any) -> None:
    turn = V3.decode(
        builder_request("Reservierung für vier", "de-DE", "v3-s", params={chips.MEMORY_KEY: memory})
    )
    assert chips.recall(turn, KEY).payload == ""


@pytest.mark.parametrize("own", [None, "plain state", '["_actions_on_google"]', '{"step": 2}', "{not json"])
def test_v2_token_wraps_the_memory_and_keeps_the_actions_own_token(own: str | None) -> None:
    turn = V2.decode(v2_request("pomoc", "pl-PL", "v2-c", token=own))
    answer = V2.encode(turn, prepared(turn))
    assert schema_errors("conversation_v2", answer) == []
    token = answer["conversationToken"]
    assert json.loads(token)[chips.MEMORY_KEY]["chips"]
    tap = V2.decode(v2_request("Reservierung für zwei", "pl-PL", "v2-c", token=token))
    assert tap.echo["conversationToken"] == own
    assert chips.recall(tap, KEY).payload == '/inform{"people": "2"}'
    after = V2.encode(tap, prepared(tap, [{"text": "Gotowe!"}]))
    assert after.get("conversationToken") == own  # no chips: the action's own token as it was


@pytest.mark.parametrize(
    "token", ['{"_gateway": "x"}', '{"_gateway": {"chips": {}}, "token": 5}', '{"_gateway": null}']
)
def test_v2_malformed_wrapped_token_is_no_memory(token: str) -> None:
    turn = V2.decode(v2_request("Reservierung für zwei", "pl-PL", "v2-c", token=token))
    assert chips.recall(turn, KEY).payload == ""
    assert unwrap_token(wrap_token(turn.echo["conversationToken"], None)) == {
        "conversationToken": turn.echo["conversationToken"]
    }


@pytest.mark.parametrize(
    "token",
    [
        '{"_gateway": {"chips": {"\\ud800": "/x"}, "sig": "s"}, "token": "t"}',
        '{"_gateway": {"chips": {}, "sig": "s"}, "token": "\\udfff"}',
    ],
)
def test_v2_token_with_lone_surrogates_stays_a_foreign_token(token: str) -> None:
    turn = V2.decode(v2_request("Reservierung für zwei", "pl-PL", "v2-c", token=token))
    assert turn.echo == {"conversationToken": token}
    assert orjson.loads(orjson.dumps(V2.encode(turn, prepared(turn))))  # an answer that serialises


def test_dialogflow_memory_is_a_one_turn_output_context() -> None:
    session = "projects/p/agent/sessions/df-s"
    turn = DF.decode(dialogflow_request("hilfe", "de", session))
    answer = DF.encode(turn, prepared(turn))
    assert schema_errors("dialogflow", answer) == []
    (context,) = answer["outputContexts"]
    assert context["name"] == f"{session}/contexts/{chips.CONTEXT_ID}" and context["lifespanCount"] == 1
    # Dialogflow adds matched parameters to active contexts: extra keys do not break the seal.
    params = {**context["parameters"], "people": "9", "people.original": "neun"}
    body = dialogflow_request("reservierung für zwei personen", "de", session)
    body["queryResult"]["outputContexts"] = [
        {"name": f"{session}/contexts/other", "parameters": {}},
        {"name": context["name"], "lifespanCount": 1, "parameters": params},
    ]
    assert chips.recall(DF.decode(body), KEY).payload == '/inform{"people": "2"}'


@pytest.mark.parametrize(
    "contexts",
    [
        "not a list",
        ["not an object"],
        [{"name": 5}],
        [{"name": f"projects/p/agent/sessions/df-s/contexts/{chips.CONTEXT_ID}", "parameters": "x"}],
    ],
)
def test_dialogflow_malformed_contexts_are_no_memory(contexts: Any) -> None:
    body = dialogflow_request("Reservierung für zwei", "de", "projects/p/agent/sessions/df-s")
    body["queryResult"]["outputContexts"] = contexts
    assert chips.recall(DF.decode(body), KEY).payload == ""


# --- speakers and display text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("de", "Du kannst Reservierung für zwei Personen oder Reservierung für vier Personen sagen."),
        ("pl", "Możesz powiedzieć Reservierung für zwei Personen lub Reservierung für vier Personen."),
        ("en", "You can say Reservierung für zwei Personen or Reservierung für vier Personen."),
    ],
)
def test_a_speaker_hears_the_choices_and_gets_no_chips_or_image(lang: str, said: str) -> None:
    body = builder_request("hilfe", "de-DE", "v3-speaker")
    body["device"]["capabilities"] = ["SPEECH", "LONG_FORM_AUDIO"]
    turn = V3.decode(body)
    messages = [*BOOKING, {"image": "https://example.com/table.png"}]
    answer = V3.encode(turn, prepared(turn, messages, lang))
    assert answer["prompt"]["lastSimple"]["speech"] == said
    assert "suggestions" not in answer["prompt"] and "content" not in answer["prompt"]
    # Still remembered: the user says a whole title.
    tap = V3.decode(
        builder_request(
            "reservierung für zwei personen", "de-DE", "v3-speaker", params=answer["session"]["params"]
        )
    )
    assert chips.recall(tap, KEY).payload == '/inform{"people": "2"}'


def test_v2_speaker_and_a_request_without_capabilities() -> None:
    speaker = v2_request("hilfe", "de-DE", "v2-speaker")
    speaker["surface"]["capabilities"] = [{"name": "actions.capability.AUDIO_OUTPUT"}]
    turn = V2.decode(speaker)
    prompt = V2.encode(turn, prepared(turn))["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    assert "suggestions" not in prompt
    assert prompt["items"][1]["simpleResponse"]["textToSpeech"].startswith("Du kannst Reservierung")
    unknown = v2_request("hilfe", "de-DE", "v2-unknown")
    del unknown["surface"]
    turn = V2.decode(unknown)
    prompt = V2.encode(turn, prepared(turn))["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    assert len(prompt["suggestions"]) == 2  # no capability info: a screen is assumed, as before


@pytest.mark.parametrize(
    ("ssml", "shown"),
    [
        ('<speak><audio src="https://example.com/bell.ogg"/></speak>', "(Audio)"),
        (
            '<speak><audio src="https://example.com/b.ogg"><desc>Eine Glocke</desc>Ding</audio></speak>',
            "Eine Glocke",
        ),
        ('<speak><audio src="https://example.com/b.ogg">Ding dong</audio></speak>', "Ding dong"),
        ('<speak>Hallo <break time="1s"/> <audio src="https://example.com/b.ogg"/> du</speak>', "Hallo du"),
    ],
)
def test_every_bubble_shows_text(ssml: str, shown: str) -> None:
    for body, codec in (
        (builder_request("x", "de-DE", "v3-ssml"), V3),
        (v2_request("x", "de-DE", "v2-ssml"), V2),
        (dialogflow_request("x", "de", "projects/p/agent/sessions/df-ssml"), DF),
    ):
        turn = codec.decode(body)
        answer = codec.encode(turn, prepared(turn, [{"text": ssml}]))
        if codec is V3:
            assert answer["prompt"]["firstSimple"] == {"speech": ssml, "text": shown}
        else:
            google = answer.get("payload", {}).get("google", answer)
            prompt = (
                google.get("richResponse") or google["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
            )
            assert prompt["items"][0]["simpleResponse"] == {"ssml": ssml, "displayText": shown}


def test_render_without_a_reply_fallback_keeps_speech() -> None:
    layout = rich.render([{"text": '<speak><audio src="https://example.com/b.ogg"/></speak>'}])
    assert layout.simples[0].text == ""


# --- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["You can say it.", "Say {choices} or {other}.", "{choices} {choices}"])
def test_spoken_choices_template_needs_one_placeholder(template: str) -> None:
    with pytest.raises(ConfigError, match=r"bots\.languages\.en\.prompts\.spoken_choices="):
        load_settings(overrides={"bots.languages.en.prompts.spoken_choices": template}, env={})


def test_memory_key_is_a_secret_of_some_length() -> None:
    with pytest.raises(ConfigError, match=r"google\.memory_key: too short"):
        load_settings(overrides={"google.memory_key": "short"}, env={})
    settings = load_settings(overrides={"google.memory_key": "k" * 20}, env={})
    assert "k" * 20 not in repr(settings)
    assert chips.key_of(settings.google.memory_key) == b"k" * 20
    assert chips.key_of(None) == chips.key_of(None) != chips.key_of("k" * 20)


def test_recall_keeps_the_turn_otherwise() -> None:
    turn = Turn(TurnKind.MESSAGE, "s-1", "de-DE", text="Reservierung für vier", echo={"memory": sealed()})
    assert chips.recall(turn, KEY) == replace(turn, payload='/inform{"people": "4"}')


def test_several_processes_without_a_shared_key_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    shared = {"server.workers": 2, "redis.url": "redis://127.0.0.1:1"}
    with caplog.at_level("WARNING", logger="gateway.channels.registry"):
        enabled_channels(load_settings(overrides=shared, env={}))
        assert "google.memory_key is not set" in caplog.text
        caplog.clear()
        enabled_channels(load_settings(overrides={**shared, "google.memory_key": "k" * 16}, env={}))
        enabled_channels(load_settings(env={}))
    assert "memory_key" not in caplog.text


def test_dialogflow_session_that_is_no_path_gets_no_memory_context() -> None:
    turn = DF.decode(dialogflow_request("hilfe", "de", "plain-session-id"))
    answer = DF.encode(turn, prepared(turn))
    assert "outputContexts" not in answer
    assert schema_errors("dialogflow", answer) == []
