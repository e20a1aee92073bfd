"""Turn slots: how many bot turns may start per pass of the loop that runs them, first come, first served.

A Rasa turn is several milliseconds of CPU on the event loop and, with an in-memory tracker store, it
never yields. Without a cap every turn whose request arrived during one loop pass runs in the next pass,
so a pass can take 16 turns x 5 ms and /healthz waits behind all of them. With `size` slots at most
`size` turns start per pass: each holder is resumed by the loop (never run inline by the task that
freed the slot), so health checks and metrics scrapes get a pass in between.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from collections.abc import AsyncIterator
from types import TracebackType

# The slots the running turn holds, so code deep inside the turn can lend its slot while it only waits.
HELD: contextvars.ContextVar[TurnSlots | None] = contextvars.ContextVar("held_turn_slots", default=None)


class TurnSlots:
    """A FIFO semaphore whose holders always start on a fresh loop pass."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"turn slots must be at least 1, got {size}")
        self.size = size
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Turns queued for a slot."""
        return len(self._waiters)

    async def __aenter__(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._hand_out()
        try:
            if waiter.done():
                # Granted at once: still yield, so turns that arrived in the same pass queue behind us
                # instead of all running inline one after another.
                await asyncio.sleep(0)
            else:
                await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted, then cancelled before using it: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    @contextlib.asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """Give the held slot to the next turn while this one waits on something that is not loop CPU
        (a micro-batch running in a worker thread); take it back first in line, ahead of new turns."""
        self._release()
        try:
            yield
        finally:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.appendleft(waiter)
            self._hand_out()
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.done() or waiter.cancelled():
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    self._free -= 1  # the turn's own `async with` exit gives back the slot it lent
                raise

    def _release(self) -> None:
        self._free += 1
        self._hand_out()

    def _hand_out(self) -> None:
        while self._free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter gives its turn to the next one
                self._free -= 1
                waiter.set_result(None)
