"""A turn gives the event loop back between its stages: after NLU and after each action it runs.

A light turn is 5-15 ms of pure-Python CPU (NLU ~40%, each policy prediction ~20%) that never waits on
anything once its tracker is read, so everything else on the loop (a /healthz probe, a metrics scrape,
the next request's bytes) waits for the whole turn. Yielding at the stage boundaries bounds that wait by
the longest stage instead. Turn slots still hold: the yielding turn keeps its slot, so no other turn
runs in the gap, only I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any

# One yielding subclass per processor class (models load in threads; a duplicate made in a race is harmless).
_CLASSES: dict[type, type] = {}


def _yielding_class(base: type) -> type:
    known = _CLASSES.get(base)
    if known is not None:
        return known

    class YieldingProcessor(base):  # type: ignore[misc, valid-type]
        async def parse_message(self, *args: Any, **kwargs: Any) -> Any:
            parsed = await super().parse_message(*args, **kwargs)
            await asyncio.sleep(0)
            return parsed

        async def _run_action(self, *args: Any, **kwargs: Any) -> Any:
            another = await super()._run_action(*args, **kwargs)
            await asyncio.sleep(0)
            return another

    YieldingProcessor.__name__ = YieldingProcessor.__qualname__ = f"Yielding{base.__name__}"
    return _CLASSES.setdefault(base, YieldingProcessor)


def yield_between_stages(processor: Any) -> None:
    """Make `processor` (a Rasa MessageProcessor) yield after NLU and after each action; idempotent.

    The class is swapped rather than methods patched on the instance, so shallow copies (the probe's
    throwaway processor) yield too and run with their own `self`.
    """
    base = type(processor)
    if base.__name__.startswith("Yielding"):
        return
    processor.__class__ = _yielding_class(base)
