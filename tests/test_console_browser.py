"""The console in a real browser: Playwright drives the system's Chromium (`make browser` installs it)
against real gateway processes (two replicas sharing one Redis) with real models. One world and one
browser for the module; each test gets a fresh page and fails on any console error or failed request.

The second English model greets with a picture at https://example.com/... (an image host on the
internet, as a bot's images are). This machine has no internet, so the page's context answers for that
one URL with a small local SVG (Playwright routing): the browser still requests it under the console's
CSP, decodes and lays it out, which a card rendered without loading, or an image served by the gateway
(not https, not another origin), would not show."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, expect, sync_playwright

from gateway.settings import ROOT
from tests.console_world import AUTH, GREETING_IMAGE, NEW_GREETING, TOKEN, ConsoleWorld, console_world
from tests.support import builder_request, post_json, responses

# The README's screenshots are refreshed only on request, so a test run leaves the checkout clean.
SCREENSHOTS = ROOT / "docs" / "console" if os.environ.get("GATEWAY_CONSOLE_SCREENSHOTS") == "1" else None
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in containers/CI has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-background-networking",  # no update, safe-browsing or field-trial traffic
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000  # a safety net for a slow, shared machine; waits end on the page's state
PICTURE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="90">'
    b'<rect width="160" height="90" fill="#e8f0fe"/><circle cx="80" cy="45" r="30" fill="#1a73e8"/></svg>'
)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium on PATH: run `make browser` (Debian/Ubuntu) or install Chromium or Chrome")


@pytest.fixture(scope="module")
def world(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    with console_world(model_paths, tmp_path_factory.mktemp("browser-models"), replicas=2) as world:
        yield world


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/console/ with GATEWAY_CONSOLE_SCREENSHOTS=1, else a temporary folder."""
    return SCREENSHOTS or tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Problems:
    """Console errors and failed requests seen by a page; `allowed` are expected for this test."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.seen.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.seen.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Request) -> None:
        self.seen.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def unexpected(self) -> list[str]:
        return [p for p in self.seen if not any(a.search(p) for a in self.allowed)]


@pytest.fixture
def page(browser: Browser, world: ConsoleWorld) -> Iterator[Page]:
    context = browser.new_context(base_url=world.management, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    context.route(GREETING_IMAGE, _picture)  # the one foreign URL the bots use (see the module's doc)
    page = context.new_page()
    problems = Problems(page)
    page.problems = problems  # type: ignore[attr-defined]
    try:
        yield page
        assert problems.unexpected() == []
    finally:
        context.close()


def _picture(route: Route) -> None:
    route.fulfill(status=200, content_type="image/svg+xml", body=PICTURE)


def sign_in(page: Page, token: str = TOKEN) -> None:
    page.goto("/console/")
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def open_view(page: Page, name: str) -> None:
    page.click(f"#nav button[data-view={name}]")
    expect(page.locator(f"#view-{name}")).to_be_visible()


def new_conversation(page: Page, locale: str) -> str:
    """Start a conversation in `locale`; returns its session id (from the raw request shown)."""
    chat = page.locator("#sim-chat")
    expect(page.locator("#view-simulator")).to_be_visible()
    expect(chat).to_have_attribute("data-session", re.compile(r"^console-"))
    before = chat.get_attribute("data-session")  # the conversation started on entering the view
    page.fill("#sim-locale", locale)
    page.click("#sim-new")
    expect(chat).not_to_have_attribute("data-session", before or "")
    expect(chat.locator(".bubble.bot")).to_have_count(1)
    session = chat.get_attribute("data-session")
    assert session and session.startswith("console-")
    return session


def say(page: Page, text: str) -> None:
    bots = page.locator("#sim-chat .bubble.bot").count()
    page.fill("#sim-text", text)
    page.press("#sim-text", "Enter")
    expect(page.locator("#sim-chat .bubble.bot")).to_have_count(bots + 1)


def last_bot(page: Page) -> str:
    return page.locator("#sim-chat .bubble.bot").last.inner_text().strip()


def tracker_events(world: ConsoleWorld, sender: str) -> list[dict[str, Any]]:
    """The events Redis holds for one conversation (the tracker's stored blob)."""
    client = redis.Redis.from_url(world.redis.url)
    try:
        keys = list(client.scan_iter(match=f"*{{{sender}}}:tracker"))
        assert len(keys) == 1, keys
        blob = client.get(keys[0])
    finally:
        client.close()
    assert isinstance(blob, bytes)
    events: list[dict[str, Any]] = json.loads(blob)["events"]
    return events


def tracker_keys(world: ConsoleWorld) -> list[str]:
    client = redis.Redis.from_url(world.redis.url)
    try:
        return [key.decode() for key in client.scan_iter(match="*:tracker")]
    finally:
        client.close()


def test_simulator_holds_a_polish_and_a_german_conversation(page: Page, shots: Path) -> None:
    sign_in(page)
    expect(page.locator("#view-simulator")).to_be_visible()
    for locale, lang, help_text, chip, answer, bye in (
        ("pl-PL", "pl", "pomoc", "Godziny otwarcia", "utter_hours", "pa pa"),
        ("de-DE", "de", "hilfe", "Öffnungszeiten", "utter_hours", "tschüss"),
    ):
        new_conversation(page, locale)
        expect(page.locator("#sim-meta")).to_contain_text(f"bot {lang}")
        expect(page.locator("#sim-meta")).to_contain_text(re.compile(r"model \S+\.tar\.gz"))
        expect(page.locator("#sim-meta")).to_contain_text(re.compile(r"request [0-9a-f]{32}"))
        say(page, help_text)
        assert last_bot(page) in responses(lang, "utter_help")
        expect(page.locator("#sim-response")).to_contain_text('"suggestions"')
        bots = page.locator("#sim-chat .bubble.bot").count()
        page.get_by_role("button", name=chip).click()
        expect(page.locator("#sim-chat .bubble.bot")).to_have_count(bots + 1)
        assert last_bot(page) in responses(lang, answer)
        expect(page.locator("#sim-chat .bubble.user").last).to_have_text(chip)
        say(page, bye)
        expect(page.locator("#sim-chat .bubble.end")).to_have_text("End of conversation")
        expect(page.locator("#sim-response")).to_contain_text("actions.scene.END_CONVERSATION")
        expect(page.locator("#sim-text")).to_be_disabled()
    page.screenshot(path=str(shots / "simulator.png"), full_page=True)


def test_models_activate_another_model_until_live_then_roll_back(
    page: Page, world: ConsoleWorld, shots: Path
) -> None:
    sign_in(page)
    open_view(page, "models")
    en = page.locator("article.lang[data-lang=en]")
    expect(en.locator(f"tr[data-model='{world.v1}'] .badge.live")).to_have_text("answering")
    expect(en.locator(f"tr[data-model='{world.v1}'] td.tests")).to_have_text("failed")
    expect(en.locator(f"tr[data-model='{world.v2}'] td.tests")).to_have_text("passed")
    both = re.compile(r"^answering on 2 of 2: console-a:\d+, console-b:\d+$")
    expect(en.locator(f"tr[data-model='{world.v1}'] td.replicas")).to_have_text(both)
    replicas = en.locator("ul.replicas li")
    expect(replicas).to_have_count(2)
    expect(replicas.first).to_contain_text("(this one)")
    en.locator(f"tr[data-model='{world.v2}'] button", has_text="Activate").click()
    progress = page.locator("#progress-en")
    expect(progress).to_have_text(f"live: {world.v2}")
    expect(en.locator(f"tr[data-model='{world.v2}'] .badge.live")).to_have_text("answering")
    expect(en.locator(f"tr[data-model='{world.v2}'] .badge.active")).to_have_text("active")
    # Without a reload: this replica moved with the activation, the other follows the announcement.
    for n in range(2):
        expect(replicas.nth(n)).to_have_attribute("data-model", world.v2)
    expect(en.locator(f"tr[data-model='{world.v2}'] td.replicas")).to_have_text(both)
    expect(en.locator(f"tr[data-model='{world.v1}'] td.replicas")).to_have_text("")
    expect(page.locator("#replicas-note")).to_have_text("replicas sharing this Redis: 2")
    page.screenshot(path=str(shots / "models.png"), full_page=True)

    open_view(page, "simulator")
    new_conversation(page, "en-US")
    say(page, "hello")
    assert last_bot(page) == NEW_GREETING
    expect(page.locator("#sim-meta")).to_contain_text(f"model {world.v2}")

    open_view(page, "models")
    page.locator("article.lang[data-lang=en] > button", has_text="Roll back").click()
    expect(page.locator("#progress-en")).to_have_text(f"live: {world.v1}")
    en = page.locator("article.lang[data-lang=en]")
    expect(en.locator(f"tr[data-model='{world.v1}'] .badge.live")).to_be_visible()
    expect(en.locator(f"tr[data-model='{world.v1}'] td.replicas")).to_have_text(both)

    # A model that cannot load: the page says why, the answering model stays.
    page.problems.allowed.append(re.compile(r"status of 422"))  # type: ignore[attr-defined]
    en.locator(f"tr[data-model='{world.corrupt}'] button", has_text="Activate").click()
    expect(page.locator("#progress-en")).to_contain_text(
        "refused: POST /admin/models/en/activate failed with 422"
    )
    expect(page.locator("#error")).to_contain_text(world.corrupt)
    expect(en.locator(f"tr[data-model='{world.v1}'] .badge.live")).to_have_text("answering")


def test_a_conversation_shows_its_intents_and_can_be_deleted(
    page: Page, world: ConsoleWorld, shots: Path
) -> None:
    sign_in(page)
    session = new_conversation(page, "pl-PL")
    say(page, "pomoc")
    sender = f"pl:{session}"
    open_view(page, "conversations")
    page.select_option("#conv-lang", "pl")
    row = page.locator(f"#conv-list tr[data-sender='{sender}']")
    expect(row).to_be_visible()
    row.get_by_role("button").click()
    transcript = page.locator("#conv-transcript")
    expect(transcript.locator(".t-user q", has_text="pomoc")).to_be_visible()
    expect(transcript.locator(".t-user .intent", has_text="help")).to_contain_text("%")
    expect(transcript.locator(".t-session").first).to_be_visible()
    expect(transcript.locator(".t-bot").first).to_be_visible()
    page.screenshot(path=str(shots / "conversations.png"), full_page=True)

    assert any(sender in key for key in tracker_keys(world))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#conv-delete")
    expect(page.locator("#notice")).to_have_text(f"Deleted conversation {sender}.")
    expect(row).to_have_count(0)
    assert not any(sender in key for key in tracker_keys(world))  # gone from Redis


def test_html_in_a_transcript_is_shown_as_text(page: Page) -> None:
    sign_in(page)
    hostile = (
        '<img src="/console/x.png" onerror="document.title=1"><b>bold</b><script>window.owned=1</script>'
    )
    session = new_conversation(page, "de-DE")
    say(page, hostile)
    expect(page.locator("#sim-chat .bubble.user").last).to_have_text(hostile)
    open_view(page, "conversations")
    page.select_option("#conv-lang", "de")
    page.locator(f"#conv-list tr[data-sender='de:{session}'] button").click()
    expect(page.locator("#conv-transcript .t-user q").last).to_have_text(hostile)
    assert page.locator("#conv-transcript b, #conv-transcript img, #conv-transcript script").count() == 0
    assert page.locator("#sim-chat b, #sim-chat img, #sim-chat script").count() == 0
    assert page.evaluate("window.owned") is None and page.title() == "Gateway console"


def test_a_wrong_token_shows_a_readable_error(page: Page) -> None:
    # Chromium logs the refused call itself; that is the one error this test expects.
    page.problems.allowed.append(re.compile(r"status of 401"))  # type: ignore[attr-defined]
    sign_in(page, "not-the-admin-token-at-all")
    expect(page.locator("#error")).to_contain_text("401: wrong bearer token (check the admin token)")
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_health_shows_bots_swaps_and_a_request_chart(page: Page, world: ConsoleWorld, shots: Path) -> None:
    sign_in(page)
    open_view(page, "health")
    for lang in ("en", "pl", "de"):
        expect(page.locator(f"#health-bots tr[data-lang={lang}] .badge")).to_have_text("ready")
    expect(page.locator("#health-swaps tbody .badge.live").first).to_be_visible()  # the initial loads
    expect(page.locator("#health-legend")).to_contain_text(re.compile(r"pl: peak [0-9.]+ req/s"))
    # Traffic between two samples of /metrics shows as a rate above zero (the legend keeps the peak).
    for n in range(3):
        answer = page.request.post(
            world.management + "/admin/simulate",
            data=builder_request("cześć", "pl-PL", f"health-{n}"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.ok, answer.text()
    expect(page.locator("#health-legend")).to_contain_text(
        re.compile(r"pl: peak (?!0\.00)[0-9.]+ req/s, p99 \d+ ms")
    )
    page.screenshot(path=str(shots / "health.png"), full_page=True)


def test_restart_forgets_the_conversation_and_new_conversation_starts_another(
    page: Page, world: ConsoleWorld, shots: Path
) -> None:
    sign_in(page)
    session = new_conversation(page, "en-US")
    chat = page.locator("#sim-chat")
    say(page, "I want to book a table")
    assert last_bot(page) in responses("en", "utter_ask_people")  # the booking form asks
    bots = chat.locator(".bubble.bot").count()
    page.click("#sim-restart")
    expect(chat.locator(".bubble.restart")).to_have_text("Conversation restarted")
    expect(chat.locator(".bubble.bot")).to_have_count(bots + 1)
    # Rasa's restart says nothing (no utter_restart): Google would hear the language's empty prompt.
    config = yaml.safe_load((ROOT / "config" / "gateway.yml").read_text(encoding="utf-8"))
    assert last_bot(page) == config["bots"]["languages"]["en"]["prompts"]["empty"]
    expect(chat).to_have_attribute("data-session", session)  # the same conversation, forgotten
    expect(page.locator("#sim-request")).to_contain_text('"query": "/restart"')
    expect(page.locator("#sim-text")).to_be_enabled()
    page.screenshot(path=str(shots / "simulator-restart.png"), full_page=True)

    events = tracker_events(world, f"en:{session}")
    kinds = [event["event"] for event in events]
    assert "restart" in kinds, kinds  # Rasa's Restarted event, not the text "restart" understood as chat
    before = events[: kinds.index("restart")]
    assert any(e["event"] == "active_loop" and e.get("name") == "booking_form" for e in before)
    assert any(e["event"] == "action" and e.get("name") == "action_restart" for e in events)

    # New conversation: another id and another tracker; the restarted one stays stored as it was.
    page.click("#sim-new")
    expect(chat).not_to_have_attribute("data-session", session)
    expect(chat.locator(".bubble.bot")).to_have_count(1)
    expect(chat.locator(".bubble.restart")).to_have_count(0)
    fresh = chat.get_attribute("data-session")
    assert fresh and fresh != session
    fresh_kinds = [event["event"] for event in tracker_events(world, f"en:{fresh}")]
    assert "session_started" in fresh_kinds and "restart" not in fresh_kinds
    assert "restart" in [event["event"] for event in tracker_events(world, f"en:{session}")]


def test_a_bot_reply_with_an_image_shows_an_image_card(page: Page, world: ConsoleWorld, shots: Path) -> None:
    # The second model greets with a picture; it answers on this replica once activated here.
    status, body = post_json(world.management + "/admin/models/en/activate", {"model": world.v2}, AUTH)
    assert status == 200, body
    try:
        sign_in(page)
        new_conversation(page, "en-US")  # the welcome turn: utter_greet, with the picture
        bubble = page.locator("#sim-chat .bubble.bot").last
        expect(bubble.locator("p")).to_have_text(NEW_GREETING)
        picture = bubble.locator(".card.image-card img")
        expect(picture).to_have_attribute("src", GREETING_IMAGE)
        expect(picture).to_have_attribute("alt", NEW_GREETING)
        # Loaded and decoded under the console's CSP (a blocked or failed load fails the test too).
        page.wait_for_function(
            "img => img.complete && img.naturalWidth === 160", arg=picture.element_handle()
        )
        expect(page.locator("#sim-response")).to_contain_text(f'"url": "{GREETING_IMAGE}"')
        page.screenshot(path=str(shots / "simulator-image.png"), full_page=True)
    finally:
        status, body = post_json(world.management + "/admin/models/en/rollback", {}, AUTH)
        assert status == 200, body
