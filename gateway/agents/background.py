"""Blocking work that must not compete with turns: a fresh thread at a lower OS priority.

A model load is seconds of CPU (DIET/TED: Python graph tracing that holds the GIL in 5 ms slices) next to a
serving loop that needs the GIL and a core for every turn. On Linux a thread has its own nice value, so the
loading thread is reniced (`os.setpriority` on its native id): when both are runnable the kernel runs
the turn first, and threads the loader starts inherit its niceness. A loader that waits for a core
also asks for the GIL less often, so the loop gets it back sooner (docs/performance.md "Model swap under
load").

While any load runs, the collector skips the heap that existed before the load (`frozen_heap`, below).

The thread is new for every call and ends with it: an unprivileged process cannot lower a nice value
again, so a reniced pool thread would stay slow for whatever it ran next. TensorFlow's own thread pools
are process-wide and created on its first use; they are created here, before renicing, so turns never
run on pools that inherited the loader's niceness.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Added to the process's nice value for the loading thread: 10 is half way to the lowest priority (19),
# low enough that turns win every contended core, high enough that the load still finishes on a busy host.
LOAD_NICENESS = 10


def lower_priority(niceness: int = LOAD_NICENESS) -> bool:
    """Renice the calling thread by `niceness`; False where threads cannot be reniced (not Linux)."""
    if not hasattr(os, "setpriority") or niceness <= 0:
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except OSError as exc:  # e.g. a sandbox without setpriority: load at normal priority
        logger.warning("cannot lower the model loader's priority: %s", exc)
        return False
    return True


class _FrozenHeap:
    """While at least one load runs, the heap that existed before it is frozen for the collector.

    A load allocates hundreds of thousands of objects, which trigger full collections
    that walk the whole heap (the answering model's included) holding the GIL: 0.5 s each on a quiet
    machine, a stall of every turn. With the heap that existed before the load frozen, the
    collections the load triggers walk only what it allocated. Unfrozen when the last load ends, so the
    replaced model's cycles are collected again (once, by the next full collection).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads = 0

    def __enter__(self) -> None:
        with self._lock:
            if self._loads == 0:
                gc.freeze()
            self._loads += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._loads -= 1
            if self._loads == 0:
                gc.unfreeze()


frozen_heap = _FrozenHeap()


def thread_niceness() -> int:
    """The calling thread's nice value (Linux: per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def run_in_background(
    work: Callable[[], T],
    *,
    name: str,
    niceness: int = LOAD_NICENESS,
    before: Callable[[], None] | None = None,
) -> T:
    """Run `work` in a new thread reniced by `niceness` (after `before`, at normal priority); await it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def main() -> None:
        outcome: tuple[T | None, BaseException | None]
        try:
            if before is not None:
                before()
            lower_priority(niceness)
            with frozen_heap:
                outcome = (work(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which raises it
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=main, name=name, daemon=True).start()
    return await done
