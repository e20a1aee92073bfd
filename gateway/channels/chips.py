"""Suggestion chips that post back what the bot expects, and replies laid out for the caller's surface.

Google posts a tapped chip back as the user's query: its title, nothing else. So when a reply carries
buttons (or quick replies) the gateway remembers, for that conversation only, which title stands for which
button payload, and a later query equal to a remembered title (ignoring case and whitespace) reaches the
bot as that payload (`Turn.payload`). The memory travels with the conversation, so any replica can read it:
v3 `session.params["_gateway"]`, the v2 `conversationToken` (wrapped, see conversation_v2.py), a
Dialogflow output context `<session>/contexts/_gateway_chips` living one turn.

The memory comes back to us through the caller, so it is untrusted: a user who could rewrite it would
otherwise send any `/intent{"slot": ...}` to the bot, which typed text may never do (routing/webhook.py
strips it). Checking that a payload merely *looks* like a Rasa payload would not help (the forged one
looks exactly like that), and Dialogflow even copies matched-intent parameters into every active context.
So the map is sealed with an HMAC-SHA256 over the conversation id and the map, keyed by a server secret
(`google.memory_key`, shared by every replica; without it each process draws its own key and a chip tapped
on another process is taken as typed text, i.e. today's behaviour). Whatever fails the check (forged,
other conversation, other key, too big, wrong types) is ignored, never a 4xx or 5xx: a stale token after a
key rotation must not break a conversation.

Titles: Google shows at most 25 characters, so longer titles are shortened at a word boundary, never
mid-word (no ellipsis: a tapped chip is what the user "says"). A first word that alone exceeds 25
characters (German compounds) is cut to 24 characters plus "…", the only way to fit. Titles that become
equal are told apart by the words where they differ ("Reservierung für… Abend"), else by a number.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gateway.channels.params import GATEWAY_KEY
from gateway.channels.protocol import JSON, Reply, Turn, TurnKind
from gateway.settings import Prompts

logger = logging.getLogger(__name__)

MEMORY_KEY = GATEWAY_KEY  # the one session param (v3) / token key (v2) the gateway reserves
CONTEXT_ID = "_gateway_chips"  # the Dialogflow output context holding the memory
CHIP_MAX_CHARS = 25
MAX_CHIPS = 8
MAX_ENTRIES = 2 * MAX_CHIPS  # each chip by its shown title and by its full (spoken) title
MAX_TITLE_CHARS = 200
MAX_PAYLOAD_CHARS = 1000
ELLIPSIS = "…"
MEDIA = "long_form_audio"  # v3 LONG_FORM_AUDIO / v2 MEDIA_RESPONSE_AUDIO
SCREEN = "rich_response"  # gateway/channels/context.py's name for v3 RICH_RESPONSE / v2 SCREEN_OUTPUT

_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Chip:
    title: str  # what the chip shows (at most 25 characters)
    full: str  # the button's whole title (what a speaker says, and what a user may say)
    payload: str  # what the bot gets when the chip is chosen


def normal(text: str) -> str:
    """A title as compared: whitespace collapsed, case folded."""
    return _SPACE_RE.sub(" ", text).strip().casefold()


def shorten(title: str, limit: int = CHIP_MAX_CHARS) -> str:
    """`title` within `limit` characters, cut at a word boundary (see the module doc for one long word)."""
    if len(title) <= limit:
        return title
    words = title.split(" ")
    if len(words[0]) > limit:
        return words[0][: limit - len(ELLIPSIS)] + ELLIPSIS
    out = words[0]
    for word in words[1:]:
        if len(out) + 1 + len(word) > limit:
            break
        out += " " + word
    return out.rstrip(" ,;:-\u2013\u2014")


def _told_apart(fulls: list[str]) -> list[str]:
    """Short titles for `fulls`, whose plain shortenings are equal: the shared head (as many of its words
    as fit the group alike), "…", then the words from the first one that differs ("Reservierung für…
    Abend" / "… Mittag"). "" where that does not fit; the caller numbers what is still equal."""
    split = [full.split(" ") for full in fulls]
    differs = next(
        (i for i in range(min(map(len, split))) if len({normal(w[i]) for w in split}) > 1),
        min(map(len, split)) - 1,
    )
    widest = max(len(words[differs]) for words in split)
    head = shorten(" ".join(split[0][:differs]), CHIP_MAX_CHARS - widest - len(ELLIPSIS) - 1)
    if not head or head.endswith(ELLIPSIS) or len(head) + len(ELLIPSIS) + 1 + widest > CHIP_MAX_CHARS:
        return [""] * len(fulls)
    room = CHIP_MAX_CHARS - len(head) - len(ELLIPSIS) - 1
    return [f"{head}{ELLIPSIS} {shorten(' '.join(words[differs:]), room)}" for words in split]


def _numbered(title: str, taken: set[str]) -> str:
    for number in range(2, MAX_CHIPS + 2):
        candidate = f"{shorten(title, CHIP_MAX_CHARS - len(str(number)) - 1)} {number}"
        if normal(candidate) not in taken:
            return candidate
    return ""


def collect(messages: Iterable[JSON]) -> tuple[Chip, ...]:
    """The chips of `messages`' buttons and quick replies: at most 8, titles short and unique."""
    raw: list[tuple[str, str]] = []
    seen: set[str] = set()
    for message in messages:
        for key in ("buttons", "quick_replies"):
            buttons = message.get(key)
            for button in buttons if isinstance(buttons, list) else []:
                if not isinstance(button, dict):
                    continue
                full = _title(button.get("title"))
                if full and normal(full) not in seen:
                    seen.add(normal(full))
                    raw.append((full, _payload(button.get("payload"))))
    raw = raw[:MAX_CHIPS]
    titles = [shorten(full) for full, _ in raw]
    groups: dict[str, list[int]] = {}
    for index, title in enumerate(titles):
        groups.setdefault(normal(title), []).append(index)
    for members in (m for m in groups.values() if len(m) > 1):
        for index, title in zip(members, _told_apart([raw[i][0] for i in members]), strict=True):
            titles[index] = title
    out: list[Chip] = []
    taken: set[str] = set()
    for (full, payload), title in zip(raw, titles, strict=True):
        title = title or shorten(full)
        if normal(title) in taken:
            title = _numbered(title, taken)
        if title:
            taken.add(normal(title))
            out.append(Chip(title, full, payload))
    return tuple(out)


def chip_title(raw: object) -> str:
    """A title as a chip shows it on its own (a bot's custom.google suggestion): text, shortened."""
    return shorten(_title(raw))


def _title(raw: object) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return ""
    return _SPACE_RE.sub(" ", str(raw)).strip()[:MAX_TITLE_CHARS]


def _payload(raw: object) -> str:
    """The button's payload; "" for none (or an unusable one): the chip then posts its title as text."""
    if isinstance(raw, str) and raw.strip() and len(raw) <= MAX_PAYLOAD_CHARS:
        return raw
    return ""


def has_screen(context: JSON) -> bool:
    """False only when the request lists its capabilities and a screen is not among them."""
    capabilities = context.get("capabilities")
    return not isinstance(capabilities, list) or SCREEN in capabilities


def plays_media(context: JSON) -> bool:
    """False only when the request lists its capabilities and long-form audio is not among them."""
    capabilities = context.get("capabilities")
    return not isinstance(capabilities, list) or MEDIA in capabilities


# --- the memory ----------------------------------------------------------------------------------------


def key_of(configured: str | None) -> bytes:
    """The memory key: google.memory_key, else this process's own."""
    return configured.encode("utf-8") if configured is not None else _process_key()


@functools.cache
def _process_key() -> bytes:
    return secrets.token_bytes(32)


def _signature(key: bytes, session_id: str, chips: dict[str, str]) -> str:
    message = json.dumps([session_id, chips], sort_keys=True, separators=(",", ":"))
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def seal(chips: Iterable[Chip], session_id: str, key: bytes) -> JSON | None:
    """The memory of `chips` for `session_id`: {"chips": {title: payload}, "sig": ...}; None when empty."""
    remembered: dict[str, str] = {}
    for chip in (chip for chip in chips if chip.payload):
        for title in (chip.title, chip.full):
            remembered.setdefault(title, chip.payload)
    if not remembered:
        return None
    return {"chips": remembered, "sig": _signature(key, session_id, remembered)}


def unseal(raw: object, session_id: str, key: bytes) -> dict[str, str]:
    """The remembered {normalised title: payload}, or {} when `raw` is absent, malformed or not ours."""
    if not isinstance(raw, dict):
        return {}
    chips, sig = raw.get("chips"), raw.get("sig")
    if not isinstance(chips, dict) or not isinstance(sig, str) or len(chips) > MAX_ENTRIES:
        return {}
    if not all(_entry(title, payload) for title, payload in chips.items()):
        return {}
    if not hmac.compare_digest(sig.encode("utf-8", "replace"), _signature(key, session_id, chips).encode()):
        logger.info("chip memory of %s failed its check; ignored", session_id[:100])
        return {}
    return {normal(title): payload for title, payload in chips.items()}


def _entry(title: object, payload: object) -> bool:
    return (
        isinstance(title, str)
        and isinstance(payload, str)
        and len(title) <= MAX_TITLE_CHARS
        and 0 < len(payload) <= MAX_PAYLOAD_CHARS
    )


def recall(turn: Turn, key: bytes) -> Turn:
    """`turn` with the remembered payload of the chip its text names, if any (see the module doc)."""
    if turn.kind is not TurnKind.MESSAGE or turn.payload or not turn.text.strip():
        return turn
    payload = unseal(turn.echo.get("memory"), turn.session_id, key).get(normal(turn.text))
    return replace(turn, payload=payload) if payload else turn


# --- the reply -----------------------------------------------------------------------------------------


def spoken_choices(chips: tuple[Chip, ...], prompts: Prompts) -> str:
    """ "You can say A, B or C." in the bot's language, from the chips' whole titles."""
    titles = [chip.full for chip in chips]
    if len(titles) > 1:
        choices = ", ".join(titles[:-1]) + f" {prompts.choices_or} " + titles[-1]
    else:
        choices = titles[0]
    return prompts.spoken_choices.format(choices=choices)


def prepare(reply: Reply, turn: Turn, prompts: Prompts, key: bytes) -> Reply:
    """`reply` ready for `turn`'s caller: chips remembered (sealed), spoken on a speaker, and the text a
    bubble shows when its speech has nothing to display."""
    chips = () if reply.end_conversation else collect(reply.messages)
    messages = reply.messages
    if chips and not has_screen(turn.context):
        # Google's guidance for speakers: say the choices instead of showing them.
        messages = [*messages, {"text": spoken_choices(chips, prompts)}]
    return replace(
        reply,
        messages=messages,
        memory=seal(chips, turn.session_id, key),
        silent_display=prompts.silent_display,
    )
