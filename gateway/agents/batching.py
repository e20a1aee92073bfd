"""Micro-batching: turns that need the same model at about the same time share one call of it.

A DIET/TED inference costs nearly as much for one message as for sixteen (TensorFlow's per-call overhead
dominates such small inputs), so sixteen concurrent conversations running sixteen batch-of-one calls
waste most of the CPU. A `MicroBatcher` runs its function over a list of items in a worker thread:

- idle, an item runs at once, alone (no fixed wait for company: the batch takes what became ready in
  the same loop pass);
- while a batch runs, the items that arrive queue; the next batch is whatever queued meanwhile, at most
  `max_batch` items. Under load the batch size adapts to the arrival rate times the batch's duration.

A batch runs in a worker thread so the loop keeps taking turns up to their model call meanwhile
(TensorFlow releases the GIL while it computes); a turn waiting for its batch lends its turn slot
(slots.py) to the next turn, since it holds no loop CPU. If a batch fails, its items run again one by
one, so one bad message fails its own turn only.

A lone item runs in a thread only while batching pays. With three languages over two workers most
batches were of one: each paid two thread hand-overs and the GIL contention of a second busy thread
(w2, c=16: 24 CPU ms a request batched against 21-23 unbatched, /healthz p99 106-121 ms against 42 ms;
docs/performance.md). So the batcher keeps a decaying share of recent batches that had company; below
`INLINE_BELOW` a lone item runs inline, at once, on the calling loop, as an unbatched model would. Items
that reach the batcher in the same loop pass still share a batch, and every `PROBE_EVERY`-th lone item
still goes through a thread, so turns can queue behind it: when load builds up, batches with company
come back, the share rises and the batcher returns to threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.agents.slots import HELD

logger = logging.getLogger(__name__)

# Weight of the past in the share of batches with company, per batch (~10 batches of memory).
COMPANY_DECAY = 0.9
# Below this share of recent batches with company, a lone item runs inline (see the module's docstring).
INLINE_BELOW = 0.3
# Even then, every PROBE_EVERY-th lone item runs in a thread, so a build-up of load is noticed.
PROBE_EVERY = 8

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Runs `run(items) -> outputs` (same length and order) over items submitted concurrently."""

    def __init__(
        self,
        run: Callable[[Sequence[In]], Sequence[Out]],
        max_batch: int,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self.max_batch = max_batch
        self._observe = observe  # called with each batch's size (the metrics histogram)
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._draining = False
        self._drainer: asyncio.Task[None] | None = None  # referenced, so it is not collected mid-run
        self.batches = 0
        self.largest = 0
        self.inline = 0  # lone items run on the calling loop
        self.company = 0.0  # decaying share of recent batches of two or more
        self._lone = 0

    async def submit(self, item: In) -> Out:
        """`run([item])[0]`, computed in a batch with whatever else is submitted meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, future))
        if not self._draining:
            self._draining = True
            self._drainer = loop.create_task(self._drain())
        slots = HELD.get()
        if slots is None:
            return await future
        async with slots.lent():
            # Shielded: a cancelled turn still lets its batch finish for the others.
            return await asyncio.shield(future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # One loop pass (not a timed wait): turns made ready in the same pass join this batch.
            await asyncio.sleep(0)
            while self._queue:
                batch = [entry for entry in self._queue[: self.max_batch] if not entry[1].done()]
                del self._queue[: self.max_batch]
                if not batch:
                    continue
                self.batches += 1
                self.largest = max(self.largest, len(batch))
                if self._observe is not None:
                    self._observe(len(batch))
                items = [item for item, _ in batch]
                self.company = COMPANY_DECAY * self.company + (1 - COMPANY_DECAY) * (len(batch) > 1)
                try:
                    if self._inline(len(batch)):
                        self.inline += 1
                        outputs = self._run(items)
                    else:
                        # In a worker thread: the loop meanwhile takes other turns through their tracker
                        # reads up to this call, so they queue for the next batch.
                        outputs = await loop.run_in_executor(None, self._run, items)
                    if len(outputs) != len(items):
                        raise RuntimeError(f"a batch of {len(items)} gave {len(outputs)} results")
                except Exception as exc:  # noqa: BLE001 - handed to the turns: each gets its own answer
                    if len(batch) == 1:
                        _settle(batch[0][1], exc=exc)
                        continue
                    logger.warning("a batch of %d failed (%s); running its items one by one", len(batch), exc)
                    for item, future in batch:
                        try:
                            (output,) = await loop.run_in_executor(None, self._run, [item])
                        except Exception as one:  # noqa: BLE001 - this item's own failure, for its own turn
                            _settle(future, exc=one)
                        else:
                            _settle(future, output)
                    continue
                for (_, future), output in zip(batch, outputs, strict=True):
                    _settle(future, output)
        finally:
            self._draining = False
            for _, future in self._queue:  # only when the drain itself is cancelled (loop shutdown)
                future.cancel()
            self._queue.clear()

    def _inline(self, size: int) -> bool:
        if size > 1 or self.company >= INLINE_BELOW:
            return False
        self._lone += 1
        return self._lone % PROBE_EVERY != 0


def _settle(future: asyncio.Future[Out], output: Out | None = None, exc: BaseException | None = None) -> None:
    if future.done():  # its turn was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(output)  # type: ignore[arg-type]
