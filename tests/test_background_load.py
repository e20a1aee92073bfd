"""Model loads run in a fresh thread at a lower OS priority than turns; results and errors come back."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import weakref
from pathlib import Path

import pytest
from rasa.core.tracker_store import InMemoryTrackerStore

from gateway.agents import background
from gateway.agents.loader import load_model
from gateway.errors import ModelError

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


@linux_only
async def test_the_work_runs_reniced_in_its_own_thread_and_nothing_else_is() -> None:
    caller = background.thread_niceness()
    thresholds = gc.get_threshold()
    seen: dict[str, int | str] = {}

    def before() -> None:
        seen["before"] = background.thread_niceness()

    def work() -> str:
        seen["work"] = background.thread_niceness()
        seen["full"] = gc.get_threshold()[2]
        seen["thread"] = threading.current_thread().name
        child: dict[str, int] = {}
        # A thread the loader starts (as TensorFlow does) inherits the loader's niceness.
        spawned = threading.Thread(target=lambda: child.setdefault("nice", background.thread_niceness()))
        spawned.start()
        spawned.join()
        seen["child"] = child["nice"]
        return "loaded"

    assert await background.run_in_background(work, name="load-test", before=before) == "loaded"
    assert seen["thread"] == "load-test"
    assert seen["before"] == caller  # before() runs at normal priority (TensorFlow's pools start there)
    assert seen["work"] == min(caller + background.LOAD_NICENESS, 19)
    assert seen["child"] == seen["work"]
    # No full collection (a walk of the whole heap, holding the GIL) while the load runs; afterwards the
    # collector's thresholds are what they were (so a replaced model's cycles are collected).
    assert seen["full"] == background.NO_FULL_COLLECTIONS
    assert gc.get_threshold() == thresholds
    # The serving thread and the default executor's threads keep their priority.
    assert background.thread_niceness() == caller
    pooled = await asyncio.get_running_loop().run_in_executor(None, background.thread_niceness)
    assert pooled == caller


async def test_an_error_in_the_work_reaches_the_caller() -> None:
    def work() -> None:
        raise ModelError("cannot load model broken.tar.gz: KeyError")

    thresholds = gc.get_threshold()
    with pytest.raises(ModelError, match=r"broken\.tar\.gz"):
        await background.run_in_background(work, name="load-broken")
    assert gc.get_threshold() == thresholds


async def test_no_renicing_when_asked_for_none() -> None:
    caller = background.thread_niceness()
    assert (
        await background.run_in_background(background.thread_niceness, name="load-plain", niceness=0)
        == caller
    )


async def test_imports_are_frozen_once_and_a_replaced_model_is_still_collected(
    model_paths: dict[str, Path],
) -> None:
    """The first load freezes what was imported; models loaded later stay collectable (no leak per swap)."""
    first = await load_model(model_paths["en"], InMemoryTrackerStore(None))
    frozen = gc.get_freeze_count()
    assert frozen > 0  # Rasa, TensorFlow and the gateway's modules at least
    gone = weakref.ref(first.agent)
    second = await load_model(model_paths["en"], InMemoryTrackerStore(None))
    assert gc.get_freeze_count() <= frozen  # frozen once per process (frozen objects can still be freed)
    del first
    gc.collect()
    assert gone() is None
    assert second.agent.domain is not None
