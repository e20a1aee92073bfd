"""The built-in health monitor: a bot whose model fails goes down (gateway_bot_up 0), and up again when fixed.

Two real failures, no stubs:
- a truncated model archive (an interrupted upload): the bot never gets a model, every probe fails;
- a *mute* model: the en bot trained from a domain that lost its responses (e.g. moved to a file the
  training does not read). Rasa trains and loads it without complaint and it answers nothing at all, so
  its warm-up probe refuses it (`probe_failed`): swapped in, the good model keeps answering and the bot
  never goes down; as the only model at start-up, the bot stays not ready with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import appkeys
from gateway.agents.monitor import Monitor
from gateway.app import create_app
from gateway.errors import ModelProbeFailed
from gateway.settings import ROOT, Settings
from gateway.training import train_bot
from tests.scrape import scrape_client

MONITOR_LOGGER = "gateway.agents.monitor"


def monitored(settings: Settings, *langs: str) -> Settings:
    """Only `langs`, probed every 0.1 s."""
    return dataclasses.replace(
        settings,
        bots={lang: settings.bots[lang] for lang in langs},
        default_bot=langs[0],
        monitor=dataclasses.replace(settings.monitor, interval_seconds=0.1, timeout_seconds=10.0),
    )


async def rounds(monitor: Monitor, count: int) -> None:
    """Wait until the monitor has completed `count` more probe rounds (bounded, not a timing assert)."""
    target = monitor.rounds + count
    deadline = time.monotonic() + 60
    while monitor.rounds < target:
        assert time.monotonic() < deadline, f"monitor stuck at round {monitor.rounds}"
        await asyncio.sleep(0.02)


def changes(caplog: pytest.LogCaptureFixture, lang: str) -> list[str]:
    """The monitor's up/down log lines for `lang`, in order."""
    prefix = f"bot {lang} is "
    return [
        r.getMessage()[len(prefix) :].split(":")[0]
        for r in caplog.records
        if r.name == MONITOR_LOGGER and r.getMessage().startswith(prefix)
    ]


@pytest.fixture(scope="module")
def mute_model(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The en bot trained without its responses (cached by content hash like the real bots)."""
    project = tmp_path_factory.mktemp("mute") / "en"
    shutil.copytree(ROOT / "bots" / "en", project, ignore=shutil.ignore_patterns("tests"))
    domain = yaml.safe_load((project / "domain.yml").read_text(encoding="utf-8"))
    # Rules still name utter_* and the custom actions: keep them valid.
    domain["actions"] = sorted([*domain.get("actions", []), *domain.pop("responses")])
    (project / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False), encoding="utf-8")
    return train_bot("en", project, models_dir / "mute-en").path


async def test_a_bot_whose_model_is_broken_is_down_until_a_good_model_loads(
    aiohttp_client: Any,
    settings: Settings,
    model_paths: Mapping[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    truncated = tmp_path / model_paths["de"].name
    truncated.write_bytes(model_paths["de"].read_bytes()[:4096])  # an interrupted upload
    app = create_app(monitored(settings, "en", "de"), lambda _: {"en": model_paths["en"], "de": truncated})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    monitor = app[appkeys.MONITOR]
    await rounds(monitor, 3)

    down = await scrape_client(client)
    assert down.value("gateway_bot_up", lang="de") == 0
    assert down.value("gateway_bot_up", lang="en") == 1
    assert down.value("gateway_probes_total", lang="de", result="failed") >= 3
    assert changes(caplog, "de") == ["down"]  # logged once, not once per round
    assert changes(caplog, "en") == ["up"]
    bots = {b["lang"]: b for b in (await (await client.get("/bots")).json())["bots"]}
    assert bots["de"]["last_probe"]["ok"] is False
    assert "no model loaded yet (failed)" in bots["de"]["last_probe"]["error"]

    await app[appkeys.POOL].load("de", model_paths["de"])  # the fix: a good archive
    await rounds(monitor, 3)

    up = await scrape_client(client)
    assert up.value("gateway_bot_up", lang="de") == 1
    assert up.delta(down, "gateway_probes_total", lang="de", result="ok") >= 3
    assert changes(caplog, "de") == ["down", "up"]
    assert changes(caplog, "en") == ["up"]
    ping = await client.get("/bots/de/ping")
    assert ping.status == 200


async def test_a_mute_model_is_refused_and_the_bot_stays_up_with_the_good_one(
    aiohttp_client: Any,
    settings: Settings,
    model_paths: Mapping[str, Path],
    mute_model: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=MONITOR_LOGGER)
    app = create_app(monitored(settings, "en"), lambda _: {"en": model_paths["en"]})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    monitor, swapper = app[appkeys.MONITOR], app[appkeys.SWAPPER]
    await rounds(monitor, 2)
    before = await scrape_client(client)
    assert before.value("gateway_bot_up", lang="en") == 1

    # Rasa loads the mute model without complaint; its warm-up probe gets no reply, so it never answers.
    with pytest.raises(ModelProbeFailed, match="answered nothing to its probe 'hello'"):
        await swapper.load_local("en", mute_model)
    await rounds(monitor, 3)
    after = await scrape_client(client)
    assert after.value("gateway_bot_up", lang="en") == 1
    assert after.delta(before, "gateway_model_swaps_total", lang="en", result="probe_failed") == 1
    good = hashlib.sha256(await asyncio.to_thread(model_paths["en"].read_bytes)).hexdigest()
    assert after.value("gateway_model_info", lang="en", model=model_paths["en"].name, sha256=good) == 1
    assert changes(caplog, "en") == ["up"]  # never down: the language kept answering
    ready = await client.get("/readyz")
    assert ready.status == 200
    en = (await ready.json())["bots"]["en"]
    assert en["model"] == model_paths["en"].name
    assert f"swap to {mute_model.name} failed (probe_failed)" in en["last_error"]
    assert (await client.get("/bots/en/ping")).status == 200


async def test_a_mute_model_at_start_up_leaves_its_bot_not_ready_with_the_reason(
    aiohttp_client: Any, settings: Settings, mute_model: Path
) -> None:
    app = create_app(monitored(settings, "en"), lambda _: {"en": mute_model})
    client = await aiohttp_client(app)
    await app[appkeys.STARTUP]
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["waiting"] == ["en"]
    assert body["bots"]["en"]["state"] == "failed"
    assert body["bots"]["en"]["model"] is None
    assert f"model {mute_model.name} answered nothing to its probe" in body["bots"]["en"]["last_error"]


async def test_monitor_interval_zero_turns_it_off(aiohttp_client: Any, settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, bots={"en": settings.bots["en"]}, default_bot="en"))
    await aiohttp_client(app)
    assert settings.monitor.interval_seconds == 0
    assert appkeys.MONITOR not in app
    await app[appkeys.STARTUP]
