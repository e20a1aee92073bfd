"""Where each language's model swap stands (loading → warming → live, or refused), for the console.

The swapper and the pool report phases here as they go; the admin API reads them while an activation
runs, so a page can show progress without waiting for the activation's own answer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

LOADING, WARMING, LIVE, REFUSED = "loading", "warming", "live", "refused"
RECENT = 20  # swaps remembered per process, newest first (the health view shows them)


@dataclass
class Swap:
    lang: str
    model: str
    phase: str = LOADING
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SwapProgress:
    """The latest swap per language and the recent ones (event-loop confined, no locking needed)."""

    def __init__(self) -> None:
        self._current: dict[str, Swap] = {}
        self._recent: deque[Swap] = deque(maxlen=RECENT)
        self._watchers: list[Callable[[], None]] = []

    def watch(self, changed: Callable[[], None]) -> None:
        """Call `changed` after every phase change (the replica heartbeat republishes at once)."""
        self._watchers.append(changed)

    def _changed(self) -> None:
        for changed in self._watchers:
            changed()

    def begin(self, lang: str, model: str) -> None:
        """A swap of `lang` to `model` starts (a second report of the same running swap changes nothing)."""
        current = self._current.get(lang)
        if current is not None and current.model == model and current.finished is None:
            return
        self._current[lang] = Swap(lang, model)
        self._changed()

    def warming(self, lang: str, model: str) -> None:
        """`model` is loaded and answers its probe turn next."""
        self.begin(lang, model)
        self._current[lang].phase = WARMING
        self._changed()

    def finish(self, lang: str, model: str, error: str | None = None) -> None:
        """The swap ended: live, or refused with `error` (reported once; later reports are ignored)."""
        self.begin(lang, model)
        swap = self._current[lang]
        if swap.finished is not None:
            return
        swap.phase, swap.error, swap.finished = (
            (REFUSED, error, time.time()) if error else (LIVE, None, time.time())
        )
        self._recent.appendleft(swap)
        self._changed()

    def current(self, lang: str) -> dict[str, Any] | None:
        swap = self._current.get(lang)
        return swap.to_json() if swap is not None else None

    def recent(self) -> list[dict[str, Any]]:
        return [swap.to_json() for swap in self._recent]
