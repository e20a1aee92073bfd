"""bots/<lang>/endpoints.yml read like `rasa run --endpoints`, merged with the per-language overrides."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.agents.endpoints import bot_endpoints
from gateway.agents.pool import AgentPool
from gateway.errors import ConfigError
from gateway.settings import BotSettings, load_settings
from gateway.storage.trackers import tracker_stores_for
from tests.support import free_port


def bot(tmp_path: Path, endpoints_yml: str | None, overrides: dict[str, Any] | None = None) -> BotSettings:
    lang = f"x{uuid.uuid4().hex[:8]}"  # a fresh bot: warnings are once per bot
    folder = tmp_path / lang
    folder.mkdir()
    if endpoints_yml is not None:
        (folder / "endpoints.yml").write_text(endpoints_yml, encoding="utf-8")
    en = load_settings().bots["en"]
    return BotSettings(
        lang,
        ("en",),
        folder,
        "/greet",
        "hello",
        en.prompts,
        action_timeout_seconds=5.0,
        endpoints=overrides or {},
    )


def test_the_file_is_read_by_rasa_with_env_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ACTIONS_HOST", "actions.internal")
    endpoints = bot_endpoints(
        bot(tmp_path, "action_endpoint:\n  url: http://${TEST_ACTIONS_HOST}:5055/webhook\n  token: abc\n")
    )
    assert endpoints.action.url == "http://actions.internal:5055/webhook"
    assert endpoints.action.token == "abc"
    assert endpoints.nlg is None


def test_overrides_replace_whole_keys_and_null_removes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_NLG_URL", "http://nlg.internal/nlg")
    endpoints = bot_endpoints(
        bot(
            tmp_path,
            "action_endpoint:\n  actions_module: actions\nnlg:\n  url: http://old/nlg\n",
            {"action_endpoint": {"url": "http://server:5055/webhook"}, "nlg": {"url": "${TEST_NLG_URL}"}},
        )
    )
    assert endpoints.action.url == "http://server:5055/webhook"
    assert "actions_module" not in endpoints.action.kwargs  # replaced whole, not merged
    assert endpoints.nlg.url == "http://nlg.internal/nlg"
    removed = bot_endpoints(
        bot(tmp_path, "action_endpoint:\n  actions_module: actions\n", {"action_endpoint": None})
    )
    assert removed.action is None


def test_a_bot_without_endpoints_has_none(tmp_path: Path) -> None:
    endpoints = bot_endpoints(bot(tmp_path, None))
    assert (endpoints.action, endpoints.nlg) == (None, None)


@pytest.mark.parametrize(
    ("endpoints_yml", "overrides", "message"),
    [
        ("action_endpoint:\n  url: ${TEST_SURELY_UNSET_VAR}\n", None, "TEST_SURELY_UNSET_VAR"),
        (None, {"action_endpoint": {"url": "${TEST_SURELY_UNSET_VAR}"}}, "TEST_SURELY_UNSET_VAR"),
        (None, {"actions": {"url": "x"}}, "endpoints.actions: unknown endpoints key"),
        (None, {"nlg": "http://x"}, "endpoints.nlg: expected a mapping"),
    ],
)
def test_bad_endpoints_are_config_errors_naming_the_culprit(
    tmp_path: Path, endpoints_yml: str | None, overrides: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        bot_endpoints(bot(tmp_path, endpoints_yml, overrides))


def test_tracker_and_lock_stores_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = bot(tmp_path, "tracker_store:\n  type: redis\nlock_store:\n  type: redis\n")
    with caplog.at_level(logging.WARNING, logger="gateway.agents.endpoints"):
        bot_endpoints(settings)
        bot_endpoints(settings)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert any("tracker_store is ignored" in m for m in warned)
    assert any("lock_store is ignored" in m for m in warned)


async def test_an_nlg_server_is_used_the_way_rasa_run_uses_it(
    models_dir: Path, model_paths: dict[str, Path]
) -> None:
    asked: list[str] = []

    async def nlg(request: web.Request) -> web.Response:
        body = await request.json()
        asked.append(body["response"])
        return web.json_response({"text": f"From the NLG server: {body['response']}"})

    app = web.Application()
    app.router.add_post("/nlg", nlg)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = load_settings(
            overrides={
                "bots.models_dir": str(models_dir),
                "bots.languages.en.endpoints": {"nlg": {"url": f"http://127.0.0.1:{port}/nlg"}},
            }
        )
        pool = AgentPool({"en": settings.bots["en"]}, tracker_stores_for(settings))
        await pool.load("en", model_paths["en"])
        answer = await pool.respond("en", f"nlg-{uuid.uuid4().hex}", "hello")
    finally:
        await runner.cleanup()
    assert [m.get("text") for m in answer] == ["From the NLG server: utter_greet"]
    assert "utter_greet" in asked
