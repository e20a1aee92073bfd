"""Request params reach the bot as metadata, and what a bot writes to user params comes back next turn.

Real gateway in process, real trained models, real turns through /webhook/google; the bot's own
action_opening_status is replaced for the round trip by one that counts visits in the user params.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway import appkeys
from gateway.agents.action_endpoints import InProcessActions
from gateway.settings import Settings
from tests.inprocess import post, running_gateway
from tests.shapes import dialogflow_request, schema_errors, v2_request
from tests.support import builder_request

PARAM_KEYS = ("session_params", "intent_params", "user_params", "home_params")
ASK_OPEN = "are you open right now?"  # answered by action_opening_status


async def metadata_of(client: TestClient, sender: str) -> dict[str, Any]:
    tracker = await client.server.app[appkeys.POOL].get("en").tracker_store.retrieve(sender)
    assert tracker is not None
    metadata: dict[str, Any] = tracker.latest_message.metadata
    return {key: metadata[key] for key in PARAM_KEYS if key in metadata}


async def test_v3_session_intent_user_and_home_params_reach_the_bot(settings: Settings) -> None:
    async with running_gateway(settings) as client:
        session = f"params-{uuid.uuid4().hex}"
        body = builder_request(
            "hello", "en-US", session, params={"_gateway": {"chips": {}}, "cart": ["soup"]}
        )
        body["intent"]["params"] = {
            "size": {"original": "big", "resolved": "LARGE"},
            "raw": {"original": "x"},
        }
        body["user"]["params"] = {"visits": 3}
        body["home"]["params"] = {"lamp": "on"}
        status, answer = await post(client, body)
        assert status == 200, answer
        assert await metadata_of(client, f"en:{session}") == {
            "session_params": {"cart": ["soup"]},  # the gateway's own key is not the bot's
            "intent_params": {"size": "LARGE", "raw": "x"},
            "user_params": {"visits": 3},
            "home_params": {"lamp": "on"},
        }
        # The greeting has no chips: the request's (unsealed) chip memory is deleted (channels/chips.py).
        assert answer["session"]["params"] == {"_gateway": None, "cart": ["soup"]}


async def test_legacy_user_storage_and_dialogflow_parameters_reach_the_bot(settings: Settings) -> None:
    async with running_gateway(settings) as client:
        conversation = f"v2-{uuid.uuid4().hex}"
        body = v2_request("hello", "en-US", conversation)
        body["user"]["userStorage"] = json.dumps({"data": {"visits": 4}})
        status, _ = await post(client, body)
        assert status == 200
        assert await metadata_of(client, f"en:{conversation}") == {"user_params": {"visits": 4}}

        payload = v2_request("hello", None)
        payload["user"]["userStorage"] = "opaque"
        body = dialogflow_request("hello", "en", payload=payload)
        body["queryResult"]["parameters"] = {"size": "LARGE"}
        status, _ = await post(client, body)
        assert status == 200
        assert await metadata_of(client, f"en:{body['session']}") == {
            "user_params": {"userStorage": "opaque"},
            "intent_params": {"size": "LARGE"},
        }


@pytest.mark.parametrize(
    ("shape", "field", "value", "reason"),
    [
        ("v3", "intent.params", {"size": "LARGE"}, "field intent.params.size must be an object"),
        ("v3", "user.params", [1], "field user.params must be an object"),
        ("v3", "home.params", {"blob": "x" * 20_000}, "field home.params is larger than 16384 bytes"),
        ("v2", "user.userStorage", {"data": {}}, "field user.userStorage must be a string"),
        ("df", "queryResult.parameters", "LARGE", "field queryResult.parameters must be an object"),
    ],
)
async def test_params_of_the_wrong_type_or_size_are_refused_naming_the_field(
    settings: Settings, shape: str, field: str, value: Any, reason: str
) -> None:
    body: dict[str, Any] = {
        "v3": lambda: builder_request("hello", "en-US"),
        "v2": lambda: v2_request("hello", "en-US"),
        "df": lambda: dialogflow_request("hello", "en"),
    }[shape]()
    parent, key = field.rsplit(".", 1)
    body[parent][key] = value
    async with running_gateway(settings) as client:
        status, answer = await post(client, body)
    assert status == 400
    assert schema_errors("error", answer) == []
    assert reason in answer["error"]


def counting_visits(shape: str) -> Any:
    """An action run() that counts visits in the user params, written in one Google shape."""

    async def run(dispatcher: Any, tracker: Any, domain: Any) -> list[Any]:
        seen = tracker.latest_message.get("metadata", {}).get("user_params", {})
        visits = int(seen.get("visits", 0)) + 1
        if shape == "v3":
            google: dict[str, Any] = {"user": {"params": {"visits": visits}}}
        else:
            google = {"userStorage": json.dumps({"data": {"visits": visits}})}
        dispatcher.utter_message(text=f"visit {visits}", json_message={"google": google})
        return []

    return run


def next_request(generation: str, session: str, answer: dict[str, Any] | None) -> dict[str, Any]:
    """The request Google sends next, carrying back what the last answer stored for the user."""
    if generation == "actions_builder":
        body = builder_request(ASK_OPEN, "en-US", session)
        body["user"]["params"] = answer["user"]["params"] if answer else {}
        return body
    storage = None
    if answer is not None:
        storage = (answer["payload"]["google"] if "payload" in answer else answer)["userStorage"]
    app_request = v2_request(ASK_OPEN, "en-US" if generation == "conversation_v2" else None, session)
    if storage is not None:
        app_request["user"]["userStorage"] = storage
    if generation == "conversation_v2":
        return app_request
    return dialogflow_request(ASK_OPEN, "en", f"projects/p/agent/sessions/{session}", payload=app_request)


def heard(answer: dict[str, Any]) -> str:
    """The first thing said, in any of the three shapes."""
    if "prompt" in answer:
        return str(answer["prompt"]["firstSimple"]["speech"])
    if "payload" in answer:
        response = answer["payload"]["google"]["richResponse"]
    else:
        response = answer["expectedInputs"][0]["inputPrompt"]["richInitialPrompt"]
    return str(response["items"][0]["simpleResponse"]["textToSpeech"])


@pytest.mark.parametrize("bot_shape", ["v3", "legacy"])
@pytest.mark.parametrize("generation", ["actions_builder", "conversation_v2", "dialogflow"])
async def test_what_a_bot_stores_for_the_user_comes_back_on_the_next_request(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, generation: str, bot_shape: str
) -> None:
    async with running_gateway(settings) as client:
        endpoint = client.server.app[appkeys.POOL].get("en").require_model().agent.processor.action_endpoint
        assert isinstance(endpoint, InProcessActions)
        actions = endpoint.code.executor.actions  # rasa-sdk's registry: name -> the action's bound run()
        monkeypatch.setitem(actions, "action_opening_status", counting_visits(bot_shape))
        session = f"visits-{uuid.uuid4().hex}"
        answer = None
        for visit in (1, 2):
            status, answer = await post(client, next_request(generation, session, answer))
            assert status == 200, answer
            assert schema_errors(generation, answer) == []
            assert heard(answer) == f"visit {visit}"


async def test_v3_session_params_a_bot_writes_come_back_merged_with_the_requests(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run(dispatcher: Any, tracker: Any, domain: Any) -> list[Any]:
        seen = tracker.latest_message.get("metadata", {}).get("session_params", {})
        assert "_gateway" not in seen  # the gateway's own key is never the bot's
        turns = int(seen.get("turns", 0)) + 1
        written = {"google": {"session": {"params": {"turns": turns}}}}
        dispatcher.utter_message(text=f"turn {turns}", json_message=written)
        return []

    async with running_gateway(settings) as client:
        endpoint = client.server.app[appkeys.POOL].get("en").require_model().agent.processor.action_endpoint
        assert isinstance(endpoint, InProcessActions)
        monkeypatch.setitem(endpoint.code.executor.actions, "action_opening_status", run)
        session, carried = f"turns-{uuid.uuid4().hex}", {"_gateway": {"kept": True}, "cart": ["soup"]}
        for turn in (1, 2):
            status, answer = await post(client, builder_request(ASK_OPEN, "en-US", session, params=carried))
            assert status == 200, answer
            assert heard(answer) == f"turn {turn}"
            carried = answer["session"]["params"]
            assert {k: carried[k] for k in ("cart", "turns")} == {"cart": ["soup"], "turns": turn}
            assert "_gateway" in carried  # the request's own key travels on untouched by the bot
