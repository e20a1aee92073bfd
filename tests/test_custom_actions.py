"""The bots' custom actions run in the gateway process, end to end over the webhook, in every language."""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import appkeys
from gateway.agents.action_endpoints import InProcessActions
from gateway.agents.pool import AgentPool
from gateway.app import create_app
from gateway.errors import ActionModuleError, ModelProbeFailed
from gateway.settings import ROOT, Settings, load_settings
from gateway.storage.trackers import tracker_stores_for
from tests.inprocess import post, running_gateway
from tests.support import GatewayProcess, builder_request, responses

BOOKING = {
    "en": ("book a table", "fifty"),
    "pl": ("zarezerwuj stolik", "pięćdziesiąt"),
    "de": ("ich möchte einen Tisch reservieren", "fünfzig"),
}
LOCALES = {"en": "en-US", "pl": "pl-PL", "de": "de-DE"}


def simples(answer: dict[str, Any]) -> list[str]:
    """What the user hears: the first and (when there is one) the last simple prompt."""
    prompt = answer["prompt"]
    return [prompt[key]["speech"] for key in ("firstSimple", "lastSimple") if key in prompt]


def filled(lang: str, response: str, **values: str) -> list[str]:
    texts = responses(lang, response)
    for key, value in values.items():
        texts = [text.replace("{" + key + "}", value) for text in texts]
    return texts


async def say(url: str, lang: str, text: str, session: str, zone: str | None = None) -> list[str]:
    body = builder_request(text, LOCALES[lang], session)
    if zone is not None:
        body["device"]["timeZone"] = {"id": zone, "version": ""}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/webhook/google", json=body) as resp:
        assert resp.status == 200
        return simples(await resp.json())


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_booking_form_validation_rejects_out_of_range_sizes_with_a_reason(
    gateway: GatewayProcess, lang: str
) -> None:
    ask, fifty = BOOKING[lang]
    session = f"validate-{uuid.uuid4().hex}"
    ask_people = responses(lang, "utter_ask_people")
    first = await say(gateway.url, lang, ask, session)
    assert len(first) == 1 and first[0] in ask_people
    # Zero: the reason, then the same question again.
    reason, again = await say(gateway.url, lang, "0", session)
    assert (reason in filled(lang, "utter_people_too_few", low="1"), again in ask_people) == (True, True)
    # A number word beyond the limit.
    reason, again = await say(gateway.url, lang, fifty, session)
    assert (reason in filled(lang, "utter_people_too_many", high="20"), again in ask_people) == (True, True)
    done = await say(gateway.url, lang, "4", session)
    assert done == [done[0]] and done[0] in filled(lang, "utter_booked", people="4")


# (lang, instant, caller's zone, what the restaurant says, the caller's time or None)
WED_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
WED_LATE = datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc)
FRI_LATE = datetime(2026, 11, 27, 22, 30, tzinfo=timezone.utc)
SAT_MORNING = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)
OPENING_CASES = [
    ("en", WED_NOON, None, "We're open now until 22:00.", None),
    ("en", WED_NOON, "America/New_York", "We're open now until 22:00.", "That's 17:00 your time."),
    ("en", WED_NOON, "Europe/London", "We're open now until 22:00.", None),  # same zone: no second time
    ("en", SAT_MORNING, None, "We're closed right now. We open today at 12:00.", None),
    ("en", WED_LATE, "Asia/Tokyo", "We're closed right now. We open tomorrow at 11:00.",
     "That's 20:00 your time."),
    ("pl", WED_LATE, None, "Teraz jest zamknięte. Otwieramy dziś o 11:00.", None),
    ("pl", WED_NOON, "Europe/London", "Teraz jesteśmy otwarci, do 22:00.", "U Ciebie to godzina 21:00."),
    ("de", SAT_MORNING, "America/New_York", "Wir haben gerade geschlossen. Wir öffnen heute um 12:00 Uhr.",
     "Bei Ihnen ist das 06:00 Uhr."),
    ("de", FRI_LATE, "Europe/Berlin", "Wir haben gerade geschlossen. Wir öffnen morgen um 12:00 Uhr.", None),
]  # fmt: skip
ASK_OPEN = {
    "en": "are you open right now?",
    "pl": "czy jesteście teraz otwarci?",
    "de": "habt ihr jetzt offen?",
}


async def test_opening_status_follows_the_injected_clock_and_the_callers_zone(settings: Settings) -> None:
    async with running_gateway(settings) as client:
        pool = client.server.app[appkeys.POOL]
        url = str(client.make_url("")).rstrip("/")
        for lang, instant, zone, status, caller in OPENING_CASES:
            endpoint = pool.get(lang).require_model().agent.processor.action_endpoint
            assert isinstance(endpoint, InProcessActions)
            endpoint.code.module.ActionOpeningStatus.clock = staticmethod(lambda at=instant: at)
            heard = await say(url, lang, ASK_OPEN[lang], f"open-{uuid.uuid4().hex}", zone)
            assert heard == [status, *([caller] if caller else [])], (lang, instant, zone)


async def test_request_context_reaches_the_bot_as_message_metadata(settings: Settings) -> None:
    async with running_gateway(settings) as client:
        session = f"meta-{uuid.uuid4().hex}"
        body = builder_request("hallo", "de-AT", session)
        body["device"]["timeZone"] = {"id": "Europe/Vienna", "version": "2024a"}
        status, _ = await post(client, body)
        assert status == 200
        store = client.server.app[appkeys.POOL].get("de").tracker_store
        tracker = await store.retrieve(f"de:{session}")
        assert tracker is not None
        metadata = tracker.latest_message.metadata  # Rasa adds its own keys (model_id, assistant_id)
        assert {key: metadata.get(key) for key in CONTEXT_KEYS} == {
            "intent": "actions.intent.TEXT",
            "channel": "actions_builder",
            "locale": "de-AT",
            "time_zone": "Europe/Vienna",
            "capabilities": ["long_form_audio", "rich_response", "speech"],
            "user_verification": "verified",
        }


CONTEXT_KEYS = ("intent", "channel", "locale", "time_zone", "capabilities", "user_verification")


def copied_bot(tmp_path: Path, lang: str = "en") -> Path:
    bots = tmp_path / "bots"
    shutil.copytree(ROOT / "bots" / lang, bots / lang, ignore=shutil.ignore_patterns("tests", "results"))
    return bots


def only(lang: str, bots: Path, models_dir: Path) -> Settings:
    en = load_settings().bots[lang]
    return load_settings(
        overrides={
            "bots.dir": str(bots),
            "bots.models_dir": str(models_dir),
            "bots.default": lang,
            "monitor.interval_seconds": 0,
            "bots.languages": {lang: {"locales": list(en.locales), "prompts": vars(en.prompts)}},
        }
    )


@pytest.mark.parametrize(
    ("code", "line", "error"),
    [
        ("import os\n\ndef broken(:\n", 3, "SyntaxError"),
        ("import os\n\nx = 1\nraise RuntimeError('no database')\n", 4, "RuntimeError: no database"),
    ],
)
def test_action_code_that_fails_to_import_stops_start_up_naming_file_and_line(
    tmp_path: Path, models_dir: Path, code: str, line: int, error: str
) -> None:
    bots = copied_bot(tmp_path)
    (bots / "en" / "actions.py").write_text(code, encoding="utf-8")
    with pytest.raises(ActionModuleError) as caught:
        create_app(only("en", bots, models_dir))
    assert f"{bots / 'en' / 'actions.py'}:{line}: " in str(caught.value)
    assert error in str(caught.value)


async def test_a_swap_to_broken_action_code_is_refused_and_the_old_model_keeps_answering(
    tmp_path: Path, models_dir: Path, model_paths: dict[str, Path]
) -> None:
    bots = copied_bot(tmp_path)
    settings = only("en", bots, models_dir)
    pool = AgentPool(settings.bots, tracker_stores_for(settings))
    await pool.load("en", model_paths["en"])
    actions = bots / "en" / "actions.py"
    actions.write_text("from rasa_sdk import Action\n\nclass Broken(Action:\n", encoding="utf-8")
    with pytest.raises(ActionModuleError, match=f"{actions}:3: SyntaxError"):
        await pool.load("en", model_paths["en"])
    answer = await pool.respond("en", f"s-{uuid.uuid4().hex}", "are you open right now?")
    assert answer and answer[0].get("utter_action") in {"utter_open_now", "utter_closed_now"}
    assert pool.get("en").last_error is not None and "SyntaxError" in pool.get("en").last_error


@pytest.mark.parametrize(
    ("change", "reason", "on_swap"),
    [
        (
            lambda bot: (bot / "actions.py").write_text(
                (bot / "actions.py").read_text().replace('"action_opening_status"', '"action_renamed"')
            ),
            "action_opening_status are not defined in {bot}/actions.py",
            True,
        ),
        (
            lambda bot: (bot / "endpoints.yml").unlink(),
            "action_opening_status, validate_booking_form are not runnable: bot en has no action_endpoint",
            False,  # endpoints.yml is read at start-up only: a running gateway keeps its endpoints
        ),
    ],
)
async def test_a_model_naming_actions_the_bot_cannot_run_is_refused_at_warm_up(
    tmp_path: Path, models_dir: Path, model_paths: dict[str, Path], change: Any, reason: str, on_swap: bool
) -> None:
    bots = copied_bot(tmp_path)
    settings = only("en", bots, models_dir)
    good = AgentPool(settings.bots, tracker_stores_for(settings))
    await good.load("en", model_paths["en"])
    change(bots / "en")
    pool = AgentPool(settings.bots, tracker_stores_for(settings))
    for target in (pool, good) if on_swap else (pool,):  # a first load, and a swap
        with pytest.raises(ModelProbeFailed) as refused:
            await target.load("en", model_paths["en"])
        assert reason.format(bot=bots / "en") in str(refused.value)
    assert pool.get("en").model is None
    answer = await good.respond("en", f"s-{uuid.uuid4().hex}", "are you open right now?")
    assert answer and answer[0].get("utter_action") in {"utter_open_now", "utter_closed_now"}


def test_action_results_are_checked_against_rasas_schema_with_one_validator() -> None:
    import jsonschema
    from rasa.core.actions.action import RemoteAction

    from gateway.agents import speedups

    speedups.install()
    action = RemoteAction("action_opening_status", None)
    assert action._validate_action_result({"events": [{"event": "slot", "name": "people", "value": "4"}]})
    with pytest.raises(jsonschema.ValidationError, match="Failed to validate Action server response"):
        action._validate_action_result({"events": "not a list"})
    assert speedups.action_result_validator() is speedups.action_result_validator()


async def test_a_synchronous_run_goes_to_a_worker_thread_and_an_async_one_stays_on_the_loop(
    tmp_path: Path,
) -> None:
    import threading

    from gateway.agents.action_modules import import_actions

    source = tmp_path / "actions.py"
    source.write_text(
        "import threading\n"
        "from rasa_sdk import Action\n\n"
        "class Blocking(Action):\n"
        "    def name(self):\n"
        "        return 'action_blocking'\n\n"
        "    def run(self, dispatcher, tracker, domain):\n"
        "        dispatcher.utter_message(text=threading.current_thread().name)\n"
        "        return []\n\n"
        "class Awaiting(Action):\n"
        "    def name(self):\n"
        "        return 'action_awaiting'\n\n"
        "    async def run(self, dispatcher, tracker, domain):\n"
        "        dispatcher.utter_message(text=threading.current_thread().name)\n"
        "        return []\n",
        encoding="utf-8",
    )
    code = import_actions("xx", source)
    assert code.names == {"action_blocking", "action_awaiting"}
    tracker = {"sender_id": "s", "slots": {}, "latest_message": {}, "events": [], "active_loop": {}}
    ran_in = {}
    for name in code.names:
        result = await code.executor.run({"next_action": name, "tracker": tracker, "domain": {}})
        ran_in[name] = result["responses"][0]["text"]
    assert ran_in["action_awaiting"] == threading.current_thread().name
    assert ran_in["action_blocking"] != threading.current_thread().name
