"""Tracker reads and writes of the turns this process holds, carried by the lock's own Redis round trips.

A Redis-backed turn used to cost four round trips: take the conversation's lock, read the tracker, write
it, release the lock. With a TurnBuffer shared by the locks and the tracker stores, the lock is taken
together with the read (one pipeline) and the write travels with the release (one script that writes
only while the lock is still ours), so a turn costs two. While a process holds a conversation's lock
nobody else writes its tracker, so the blob read with the lock stays the truth until this turn writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class HeldTurn:
    """What one held turn read with its lock, and what it wants written when it releases it."""

    stored: bytes | None
    pending: bytes | None = None
    # Called, in order, once the release wrote `pending` (e.g. publishing the new events to a broker).
    on_stored: list[Callable[[], None]] = field(default_factory=list)


class TurnBuffer:
    """Per tracker key: the turn this process holds, if any (event-loop confined, no locking needed)."""

    def __init__(self) -> None:
        self._turns: dict[str, HeldTurn] = {}

    def begin(self, tracker_key: str, stored: bytes | None) -> None:
        """The lock of `tracker_key`'s conversation was taken; `stored` is its blob read at that moment."""
        self._turns[tracker_key] = HeldTurn(stored)

    def end(self, tracker_key: str) -> HeldTurn | None:
        """Forget the turn (its lock is being released); returns it with any write still pending."""
        return self._turns.pop(tracker_key, None)

    def read(self, tracker_key: str) -> tuple[bool, bytes | None]:
        """(True, blob) when a held turn knows the blob (pending write, else its read), else (False, None)."""
        turn = self._turns.get(tracker_key)
        if turn is None:
            return False, None
        return True, turn.pending if turn.pending is not None else turn.stored

    def write(self, tracker_key: str, blob: bytes, stored: Callable[[], None] | None = None) -> bool:
        """Keep `blob` (and `stored`, run once it is written) for the release when a turn is held (True);
        False means "write it yourself"."""
        turn = self._turns.get(tracker_key)
        if turn is None:
            return False
        turn.pending = blob
        if stored is not None:
            turn.on_stored.append(stored)
        return True

    def __len__(self) -> int:
        return len(self._turns)
