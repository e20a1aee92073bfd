"""Micro-batching: turns that need the same model at about the same time share one call of it.

A DIET/TED inference costs nearly as much for one message as for sixteen (TensorFlow's per-call overhead
dominates such small inputs), so sixteen concurrent conversations running sixteen batch-of-one calls
waste most of the CPU. A `MicroBatcher` runs its function over a list of items in a worker thread:

- idle, an item runs at once, alone (no fixed wait for company: the batch takes what became ready in
  the same loop pass);
- while a batch runs, the items that arrive queue; the next batch is whatever queued meanwhile, at most
  `max_batch` items. Under load the batch size adapts to the arrival rate times the batch's duration.

A batch, even of one, runs in a worker thread so the loop keeps taking turns up to their model call
meanwhile (TensorFlow releases the GIL while it computes); a turn waiting for its batch lends its turn
slot (slots.py) to the next turn, since it holds no loop CPU. If a batch fails, its items run again one
by one, so one bad message fails its own turn only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.agents.slots import HELD

logger = logging.getLogger(__name__)

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
                try:
                    # Even alone, in a worker thread: the loop meanwhile takes other turns through their
                    # tracker reads up to this call, so they queue for the next batch. Run inline, a lone
                    # call blocked them, and on an inference thread or with Redis no batch ever formed.
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


def _settle(future: asyncio.Future[Out], output: Out | None = None, exc: BaseException | None = None) -> None:
    if future.done():  # its turn was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(output)  # type: ignore[arg-type]
