"""Locale routing: normalisation, exact match, language subtag, default bot."""

from __future__ import annotations

import pytest

from gateway.routing.locale import LocaleRouter, normalise_locale
from gateway.settings import load_settings


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en-US", "en-US"),
        ("EN_us", "en-US"),
        ("de_at", "de-AT"),
        (" pl-pl ", "pl-PL"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de", "de"),
    ],
)
def test_normalise(tag: str, expected: str) -> None:
    assert normalise_locale(tag) == expected


@pytest.mark.parametrize("tag", ["", "-", "en--US", "e n", "en-US!", "123", "toolongtag-US"])
def test_normalise_rejects_garbage(tag: str) -> None:
    with pytest.raises(ValueError, match="BCP-47"):
        normalise_locale(tag)


@pytest.fixture
def router() -> LocaleRouter:
    settings = load_settings()
    return LocaleRouter({lang: bot.locales for lang, bot in settings.bots.items()}, settings.default_bot)


@pytest.mark.parametrize(
    ("tag", "lang", "matched"),
    [
        ("en-US", "en", "exact"),
        ("en-GB", "en", "exact"),
        ("en_gb", "en", "exact"),
        ("pl-PL", "pl", "exact"),
        ("PL_pl", "pl", "exact"),
        ("de-DE", "de", "exact"),
        ("de-AT", "de", "exact"),
        ("de-CH", "de", "exact"),
        ("en-NZ", "en", "language"),
        ("de-BE", "de", "language"),
        ("pl", "pl", "exact"),
        ("ja-JP", "en", "default"),
        ("fr-FR", "en", "default"),
        ("", "en", "default"),
        (None, "en", "default"),
        ("not a locale", "en", "default"),
    ],
)
def test_route(router: LocaleRouter, tag: str | None, lang: str, matched: str) -> None:
    route = router.route(tag)
    assert (route.lang, route.matched) == (lang, matched)
    assert route.is_fallback == (matched == "default")


def test_configured_locale_wins_over_language_subtag() -> None:
    # A table may send a regional variant to another bot than its language subtag would.
    router = LocaleRouter({"en": ["en-US"], "de": ["de-DE"], "gsw": ["de-CH"]}, "en")
    assert router.route("de-CH").lang == "gsw"
    assert router.route("de-AT").lang == "de"


def test_default_must_be_configured() -> None:
    with pytest.raises(ValueError, match="default bot"):
        LocaleRouter({"en": ["en-US"]}, "pl")
