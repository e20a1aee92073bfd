"""MicroBatcher: lone items at once, batches of what queued meanwhile, per-item failures, lent turn slots."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from gateway.agents.batching import COMPANY_DECAY, INLINE_BELOW, PROBE_EVERY, MicroBatcher
from gateway.agents.slots import HELD, TurnSlots


class Model:
    """Ten times each input; blocks its first call of several items until `release` is set."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.threads: list[int] = []
        self.release = threading.Event()
        self.running = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.calls.append(list(items))
        self.threads.append(threading.get_ident())
        if len(items) > 1 and len(self.calls) == 1:
            self.running.set()
            assert self.release.wait(60)
        if 13 in items:
            raise ValueError("unlucky input")
        return [item * 10 for item in items]


async def test_a_lone_item_runs_at_once_alone() -> None:
    model, sizes = Model(), []
    batcher = MicroBatcher(model, 16, sizes.append)
    assert await batcher.submit(1) == 10
    assert await batcher.submit(2) == 20
    assert model.calls == [[1], [2]] and sizes == [1, 1]


async def test_items_arriving_while_a_batch_runs_form_the_next_batches_of_at_most_max_batch() -> None:
    model, sizes = Model(), []
    batcher = MicroBatcher(model, 16, sizes.append)
    first = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]  # same loop pass: one batch
    await asyncio.get_running_loop().run_in_executor(None, model.running.wait, 60)
    later = [asyncio.ensure_future(batcher.submit(n)) for n in range(100, 120)]
    await asyncio.sleep(0)
    model.release.set()
    assert await asyncio.gather(*first, *later) == [10, 20, *(n * 10 for n in range(100, 120))]
    assert sizes == [2, 16, 4]
    assert model.calls[1] == list(range(100, 116))
    assert batcher.largest == 16 and batcher.batches == 3


async def test_a_failing_batch_fails_only_the_item_at_fault() -> None:
    model = Model()
    model.release.set()
    batcher = MicroBatcher(model, 16)
    results = await asyncio.gather(*(batcher.submit(n) for n in (12, 13, 14)), return_exceptions=True)
    assert results[0] == 120 and results[2] == 140
    assert isinstance(results[1], ValueError) and "unlucky" in str(results[1])
    assert model.calls == [[12, 13, 14], [12], [13], [14]]


async def test_lone_items_run_inline_while_batches_have_no_company_but_every_eighth_in_a_thread() -> None:
    model = Model()
    batcher = MicroBatcher(model, 16)
    for n in range(1, 17):
        assert await batcher.submit(100 + n) == (100 + n) * 10
    loop_thread = threading.get_ident()
    threaded = [n for n, thread in zip(range(1, 17), model.threads, strict=True) if thread != loop_thread]
    assert threaded == [PROBE_EVERY, 2 * PROBE_EVERY]
    assert batcher.inline == 14 and batcher.batches == 16 and batcher.company == 0


async def test_batches_with_company_send_lone_items_to_a_thread_until_they_stop() -> None:
    model = Model()
    model.release.set()
    batcher = MicroBatcher(model, 16)
    for group in range(5):  # three items in one loop pass: a batch of three, five times
        assert await asyncio.gather(*(batcher.submit(20 + group * 3 + n) for n in range(3)))
    assert [len(call) for call in model.calls] == [3] * 5
    assert batcher.company == pytest.approx(1 - COMPANY_DECAY**5) and batcher.company >= INLINE_BELOW
    for n in range(100, 106):
        await batcher.submit(n)
    loop_thread = threading.get_ident()
    lone = [thread == loop_thread for thread in model.threads[5:]]
    # Each lone batch counts in the share before it is placed: 0.37 and 0.33 (threads), then 0.299 (inline).
    share = 1 - COMPANY_DECAY**5
    assert share * COMPANY_DECAY**2 >= INLINE_BELOW > share * COMPANY_DECAY**3
    assert lone == [False, False, True, True, True, True]
    assert batcher.inline == 4


def test_max_batch_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MicroBatcher(Model(), 0)


async def test_a_turn_waiting_for_its_batch_lends_its_slot() -> None:
    model = Model()
    model.release.set()
    sizes: list[int] = []
    batcher = MicroBatcher(model, 16, sizes.append)
    slots = TurnSlots(1)

    async def turn(number: int) -> int:
        async with slots:
            HELD.set(slots)
            return await batcher.submit(number)

    # One slot, yet both turns reach the model: the first lends its slot while its batch runs.
    assert await asyncio.gather(turn(1), turn(2), turn(3)) == [10, 20, 30]
    assert max(sizes) > 1
    assert slots._free == 1 and slots.waiting == 0  # every lent slot came back, none was made up


async def test_a_turn_cancelled_while_its_slot_is_lent_leaves_the_slot_count_right() -> None:
    model = Model()
    batcher = MicroBatcher(model, 16)
    slots = TurnSlots(1)

    async def turn(number: int) -> int:
        async with slots:
            HELD.set(slots)
            return await batcher.submit(number)

    turns = [asyncio.ensure_future(turn(n)) for n in (1, 2)]
    await asyncio.get_running_loop().run_in_executor(None, model.running.wait, 60)
    turns[0].cancel()
    model.release.set()
    assert await turns[1] == 20
    with pytest.raises(asyncio.CancelledError):
        await turns[0]
    assert slots._free == 1 and slots.waiting == 0
    async with slots:  # still usable
        pass
