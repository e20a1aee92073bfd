"""Locale routing: BCP-47 tag -> bot language (exact tag, then language subtag, then the default bot)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# language[-script][-region][-variant...]; extensions and private use are accepted and kept.
_TAG_RE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")


def normalise_locale(tag: str) -> str:
    """Canonical case for a BCP-47 tag: `EN_us` -> `en-US`, `zh-hant-tw` -> `zh-Hant-TW`."""
    text = tag.strip().replace("_", "-")
    if not text or not _TAG_RE.match(text):
        raise ValueError(f"not a BCP-47 language tag: {tag!r}")
    parts = text.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())  # region
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())  # script
        else:
            out.append(part.lower())
    return "-".join(out)


@dataclass(frozen=True)
class Route:
    """Where a locale goes and how it was matched: 'exact', 'language' or 'default'."""

    lang: str
    locale: str
    matched: str

    @property
    def is_fallback(self) -> bool:
        return self.matched == "default"


class LocaleRouter:
    """Routes locales to bot languages using the configured table; lookups are dict hits."""

    def __init__(self, table: Mapping[str, Iterable[str]], default: str) -> None:
        if default not in table:
            raise ValueError(f"default bot {default!r} is not one of {sorted(table)}")
        self.default = default
        self._exact: dict[str, str] = {}
        for lang, locales in table.items():
            for loc in (*locales, lang):
                self._exact.setdefault(normalise_locale(loc), lang)
        self._languages = frozenset(table)

    def route(self, tag: str | None) -> Route:
        """Pick the bot for `tag`; invalid or unknown tags go to the default bot."""
        if not tag:
            return Route(self.default, "", "default")
        try:
            locale = normalise_locale(tag)
        except ValueError:
            return Route(self.default, tag[:35], "default")
        lang = self._exact.get(locale)
        if lang is not None:
            return Route(lang, locale, "exact")
        primary = locale.split("-", 1)[0]
        if primary in self._languages:
            return Route(primary, locale, "language")
        lang = self._exact.get(primary)
        if lang is not None:
            return Route(lang, locale, "language")
        return Route(self.default, locale, "default")
