"""Mapping Rasa bot messages onto Google's rich-response rules, shared by every webhook codec.

The rules (Google's documented limits):
- texts: the first becomes the first simple response, every further text is merged into a second
  (last) one, because a prompt holds at most two simple responses;
- a chat bubble shows at most 640 characters: longer display text is cut at the last word break
  before the limit (as Google itself does) and marked with an ellipsis; the speech keeps every word;
- buttons and quick replies become suggestion chips: at most 8, unique, titles shortened to 25
  characters at a word boundary (gateway/channels/chips.py, which also remembers their payloads);
- the first image becomes the one rich item (v3 `content.image`, legacy `basicCard`);
- a caller without a screen (capabilities listed, no RICH_RESPONSE / SCREEN_OUTPUT) gets no chips and no
  image: its choices are spoken instead (chips.prepare);
- every bubble has display text: SSML shows its text, an `<audio>` its `<desc>` or fallback text, and
  speech with nothing displayable (`<speak><audio src="..."/></speak>`) the language's `silent_display`
  (Google's SSML guide: even a response that is only an `<audio>` needs text "for display purposes");
- a `custom` payload's `google` objects are merged in order (objects merge, lists append) and passed
  through per shape by gateway/channels/passthrough.py: written for one shape (v3 or legacy), translated
  field by field into each response shape, appended to what the gateway built (simple response first,
  one rich item), what a shape cannot express dropped with one warning;
  `expectUserResponse: false` or `scene.next` END_CONVERSATION also ends the conversation.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.channels import chips as chip_memory
from gateway.channels.protocol import JSON

SIMPLE_MAX_CHARS = 640
CHIP_MAX_CHARS = chip_memory.CHIP_MAX_CHARS
MAX_CHIPS = chip_memory.MAX_CHIPS
ALT_MAX_CHARS = 100
ELLIPSIS = "…"

_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")
_SPEAK_RE = re.compile(r"^\s*<speak(\s[^>]*)?>(?P<inner>.*)</speak>\s*$", re.DOTALL)
# An <audio> element, empty or with content: its <desc> (or else its fallback text) is what a screen shows.
_AUDIO_RE = re.compile(r"<audio\b[^>]*?(/>|>(?P<inner>.*?)</audio\s*>)", re.DOTALL)
_DESC_RE = re.compile(r"<desc\b[^>]*>(?P<desc>.*?)</desc\s*>", re.DOTALL)


@dataclass(frozen=True)
class Simple:
    """One chat bubble: what is spoken (plain text or SSML) and what is shown."""

    speech: str
    text: str

    @property
    def is_ssml(self) -> bool:
        return self.speech.lstrip().startswith("<speak")


@dataclass(frozen=True)
class Image:
    url: str
    alt: str


@dataclass(frozen=True)
class Rich:
    """A reply laid out by Google's rules, ready for any codec to serialise."""

    simples: tuple[Simple, ...]
    chips: tuple[str, ...] = ()
    image: Image | None = None
    google: JSON = field(default_factory=dict)

    @property
    def display_text(self) -> str:
        """Every bubble's text, for channels that want one plain string (Dialogflow's fulfillmentText)."""
        return " ".join(s.text for s in self.simples if s.text)


def texts(messages: Iterable[JSON]) -> list[str]:
    """The non-blank texts of `messages`, in order."""
    return [m["text"].strip() for m in messages if isinstance(m.get("text"), str) and m["text"].strip()]


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at the last word break and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - len(ELLIPSIS)]
    space = head.rfind(" ")
    if space > limit // 2:  # a word break not too far back; else cut mid-word rather than lose half
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def display(speech: str) -> str:
    """What a bubble shows for `speech`: SSML tags stripped, whitespace collapsed."""
    match = _SPEAK_RE.match(speech)
    if match is None:
        return _SPACE_RE.sub(" ", speech).strip()
    inner = _AUDIO_RE.sub(_audio_display, match["inner"])
    return _SPACE_RE.sub(" ", html.unescape(_TAG_RE.sub(" ", inner))).strip()


def _audio_display(audio: re.Match[str]) -> str:
    inner = audio["inner"] or ""
    desc = _DESC_RE.search(inner)
    return f" {desc['desc']} " if desc else f" {inner} "


def simple(parts: list[str], silent_display: str = "") -> Simple:
    """One bubble from one or more texts; SSML parts are kept as SSML, plain parts escaped into it."""
    ssml = [_SPEAK_RE.match(part) for part in parts]
    if not any(ssml):
        speech = " ".join(parts)
    else:
        inner = [
            m["inner"].strip() if m else html.escape(p, quote=False) for p, m in zip(parts, ssml, strict=True)
        ]
        speech = "<speak>" + " ".join(inner) + "</speak>"
    # A bubble must show something (Google refuses an empty one): audio alone shows the fallback.
    return Simple(speech=speech, text=cut(display(speech) or silent_display, SIMPLE_MAX_CHARS))


def simples(all_texts: list[str], silent_display: str = "") -> tuple[Simple, ...]:
    """At most two bubbles: the first text, then every other text merged."""
    if not all_texts:
        return ()
    if len(all_texts) == 1:
        return (simple(all_texts, silent_display),)
    return simple(all_texts[:1], silent_display), simple(all_texts[1:], silent_display)


def chip_title(raw: object) -> str:
    """A title as a chip shows it: text, whitespace collapsed, shortened at a word boundary (chips.py)."""
    return chip_memory.chip_title(raw)


def chips(messages: Iterable[JSON]) -> tuple[str, ...]:
    """Suggestion chips from buttons and quick replies: at most 8, unique, short (chips.collect)."""
    return tuple(chip.title for chip in chip_memory.collect(messages))


def image(messages: list[JSON]) -> Image | None:
    """The first http(s) image, described by the text said just before it (or the first text)."""
    alt = ""
    for message in messages:
        text = message.get("text")
        if isinstance(text, str) and text.strip():
            alt = text
        url = message.get("image")
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return Image(url=url, alt=cut(display(alt or _first_text(messages)), ALT_MAX_CHARS))
    return None


def _first_text(messages: list[JSON]) -> str:
    found = texts(messages)
    return found[0] if found else ""


def google_payload(messages: Iterable[JSON]) -> JSON:
    """Every `custom.google` object of `messages`, merged in order (later keys win)."""
    out: JSON = {}
    for message in messages:
        custom = message.get("custom")
        if isinstance(custom, dict) and isinstance(custom.get("google"), dict):
            out = merge(out, custom["google"])
    return out


def merge(base: JSON, extra: JSON) -> JSON:
    """`extra` deep-merged over `base` (objects merge, lists append, anything else is replaced)."""
    out = dict(base)
    for key, value in extra.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            out[key] = current + value
        else:
            out[key] = value
    return out


def render(messages: list[JSON], *, screen: bool = True, silent_display: str = "") -> Rich:
    """Lay out a reply's messages by Google's rules; without a `screen`, no chips and no image."""
    return Rich(
        simples=simples(texts(messages), silent_display),
        chips=chips(messages) if screen else (),
        image=image(messages) if screen else None,
        google=google_payload(messages),
    )


def legacy_items(rich: Rich, *, max_chars: int = SIMPLE_MAX_CHARS) -> list[JSON]:
    """Rich-response items of the legacy generation (v2 and Dialogflow): bubbles first, then the card."""
    items: list[JSON] = []
    for bubble in rich.simples:
        response: JSON = {"ssml" if bubble.is_ssml else "textToSpeech": bubble.speech}
        text = cut(bubble.text, max_chars)
        if text:
            response["displayText"] = text
        items.append({"simpleResponse": response})
    if rich.image is not None:
        items.append(
            {
                "basicCard": {
                    "image": {"url": rich.image.url, "accessibilityText": rich.image.alt},
                    "imageDisplayOptions": "DEFAULT",
                }
            }
        )
    return items


def legacy_rich_response(rich: Rich, *, with_chips: bool, max_chars: int = SIMPLE_MAX_CHARS) -> JSON:
    """A legacy RichResponse: items, plus suggestion chips while the conversation goes on."""
    out: JSON = {"items": legacy_items(rich, max_chars=max_chars)}
    if with_chips and rich.chips:
        out["suggestions"] = [{"title": title} for title in rich.chips]
    return out
