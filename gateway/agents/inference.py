"""Where bot turns run: a dedicated inference thread with its own event loop, so HTTP never waits on NLU.

A Rasa turn is milliseconds (light) to tens of milliseconds (DIET/TED) of CPU that never yields. On the
server's loop it delays every other request, /healthz included. On the inference thread the server's loop
only parses HTTP and hands turns over; the GIL still has to be shared, but CPython hands it over every
switch interval (5 ms) and TensorFlow releases it while it computes.

The tracker store stays on the server's loop (its Redis connections belong to that loop): the processor
on the inference thread gets an `OwnerLoopTrackerStore` that runs each store call there.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The TrackerStore coroutine methods a MessageProcessor uses (and a few neighbours).
_STORE_COROUTINES = frozenset(
    {
        "retrieve",
        "retrieve_full_tracker",
        "save",
        "get_or_create_tracker",
        "get_or_create_full_tracker",
        "create_tracker",
        "exists",
        "keys",
        "stream_events",
    }
)


class InferenceThread:
    """One thread running its own event loop; `run()` awaits a coroutine executed there."""

    def __init__(self, name: str = "inference") -> None:
        self.name = name
        self.owner: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> None:
        """Start the thread; call from the server's loop, which becomes the owner of the stores."""
        self.owner = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the inference thread; cancelling the caller cancels it there too."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise RuntimeError("the inference thread is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs there, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(_cancel_all(), loop)
        await asyncio.wrap_future(done)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, timeout)
        if thread.is_alive():
            logger.error("inference thread did not stop within %.0fs", timeout)


async def _cancel_all() -> None:
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class OwnerLoopTrackerStore:
    """A tracker store seen from the inference thread: every coroutine method runs on the owner loop.

    Plain attributes (`domain`, `event_broker`, ...) are the wrapped store's own. Called from the owner
    loop itself it still works (the call is scheduled there and awaited).
    """

    def __init__(self, inner: Any, owner: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_owner", owner)

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name in _STORE_COROUTINES:
            return functools.partial(self._on_owner, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)

    async def _on_owner(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(method(*args, **kwargs), self._owner)
        return await asyncio.wrap_future(future)
