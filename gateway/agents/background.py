"""Blocking work that must not compete with turns: a fresh thread at a lower OS priority.

A model load is seconds of CPU (DIET/TED: Python graph tracing that holds the GIL in 5 ms slices) next to a
serving loop that needs the GIL and a core for every turn. On Linux a thread has its own nice value, so the
loading thread is reniced (`os.setpriority` on its native id): when both are runnable the kernel runs
the turn first, and threads the loader starts inherit its niceness. A loader that waits for a core
also asks for the GIL less often, so the loop gets it back sooner (docs/performance.md "Model swap under
load").

While any load runs, the collector makes no full collection (`young_collections_only`); what was imported
before the first load is frozen for it (`freeze_imports`), so the full collections it makes are short.

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

from gateway.agents.patches import install_once

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


class _YoungCollectionsOnly:
    """While at least one load runs, the collector makes only young (generation 0 and 1) collections.

    A load allocates hundreds of thousands of objects, which trigger full collections that walk the whole
    heap holding the GIL: a stall of every turn. Young collections still free the load's short-lived
    cycles; the thresholds are restored when the last load ends, and the next full collection frees the
    replaced model's cycles (a walk of what is not frozen, see `freeze_imports`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads = 0
        self._thresholds = gc.get_threshold()

    def __enter__(self) -> None:
        with self._lock:
            if self._loads == 0:
                self._thresholds = gc.get_threshold()
                young, middle, _ = self._thresholds
                gc.set_threshold(young, middle, NO_FULL_COLLECTIONS)
            self._loads += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._loads -= 1
            if self._loads == 0:
                gc.set_threshold(*self._thresholds)


# A generation-2 threshold no load reaches: a full collection only after 2**30 middle-aged collections.
NO_FULL_COLLECTIONS = 1 << 30

young_collections_only = _YoungCollectionsOnly()


@install_once
def freeze_imports() -> None:
    """Hide everything that exists now (the imported modules, classes and functions) from the collector.

    Called once, just before the first model load, after Rasa and TensorFlow are imported: about 80% of
    a gateway's tracked objects (477k of 578k with one DIET/TED model) are the imports, which live as long
    as the process. Every full collection walked them (0.25 s of the 0.3 s one takes); frozen, a full
    collection walks the models and conversations only, so the one that frees a replaced model is short.
    """
    gc.collect()
    gc.freeze()
    logger.info("froze %d imported objects for the collector", gc.get_freeze_count())


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
            with young_collections_only:
                outcome = (work(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which raises it
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=main, name=name, daemon=True).start()
    return await done
